"""Evolution loops with DEAP's contracts, plus callbacks, hall of fame and resume.

Every loop takes a `deap.base.Toolbox` (``mate``, ``mutate``, ``select``, ``evaluate``,
``map``, ``clone``; ``survive`` for NSGA), evaluates only individuals whose fitness is
invalid, always through ``toolbox.map``, and returns ``(population, logbook)`` like
`deap.algorithms`. What DEAP's loops lack is added: callbacks each generation
(tracking, checkpoint, progress, early stop), a hall of fame, and ``state=`` to resume
from a checkpointed `EvolutionState`. The loops know nothing of Keras or MLflow.

Randomness comes from Python's `random` (DEAP's convention); seed it (and NumPy) once
per run and checkpoint its state to reproduce or resume a run exactly.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np
from deap import base, tools

from evoprune_tf.search.callbacks import Callback, CallbackList, EvolutionState
from evoprune_tf.search.statistics import default_record

__all__ = [
    "steady_state_ga",
    "ea_simple",
    "mu_plus_lambda",
    "nsga2",
    "ALGORITHMS",
    "MULTI_OBJECTIVE",
    "random_search",
    "deep_pruning_es",
    "evaluate_genomes",
    "default_record",
    "new_halloffame",
    "replace_worst",
]

RecordFn = Callable[[list, object], dict]
#: How a steady-state step's children enter the population: ``replacement(state, children)``.
Replacement = Callable[[EvolutionState, list], None]


def new_halloffame(multi_objective: bool, size: int = 5):
    """A hall of fame for NumPy individuals (`ParetoFront` when multi-objective)."""
    if multi_objective:
        return tools.ParetoFront(similar=np.array_equal)
    return tools.HallOfFame(size, similar=np.array_equal)


def _evaluate(toolbox: base.Toolbox, individuals: Sequence) -> int:
    invalid = [ind for ind in individuals if not ind.fitness.valid]
    for ind, fit in zip(invalid, toolbox.map(toolbox.evaluate, invalid)):
        ind.fitness.values = fit
    return len(invalid)


def _breed(toolbox: base.Toolbox, parents: Sequence, cxpb: float, mutpb: float) -> list:
    """Clone parents, mate consecutive pairs with probability cxpb, mutate each with mutpb."""
    children = [toolbox.clone(p) for p in parents]
    for i in range(1, len(children), 2):
        if random.random() < cxpb:
            toolbox.mate(children[i - 1], children[i])
            del children[i - 1].fitness.values, children[i].fitness.values
    for child in children:
        if random.random() < mutpb:
            toolbox.mutate(child)
            del child.fitness.values
    return children


def _report(state: EvolutionState, callbacks: Callback, record: RecordFn, nevals: int) -> None:
    state.halloffame.update(state.population)
    state.logbook.record(gen=state.generation, nevals=nevals, evaluations=state.evaluations,
                         **record(state.population, state.halloffame))
    callbacks.on_generation(state)


def _next_generation(state: EvolutionState, toolbox: base.Toolbox, new: list, survivors: Callable[[], list],
                     callbacks: Callback, record: RecordFn) -> None:
    """End a generation: evaluate ``new``, count it, replace the population with ``survivors()``, report.

    ``survivors`` is called after ``new`` is evaluated, so it may select on fitness.
    """
    nevals = _evaluate(toolbox, new)
    state.evaluations += len(new)
    state.population[:] = survivors()
    state.generation += 1
    _report(state, callbacks, record, nevals)


def _run(loop, state: EvolutionState, callbacks: Callback) -> tuple[list, tools.Logbook]:
    """Runs ``loop(state)`` between on_start and on_end, reporting errors to callbacks."""
    try:
        loop(state)
    except BaseException as error:
        callbacks.on_end(state, error)
        raise
    callbacks.on_end(state, None)
    return state.population, state.logbook


def _start(population, toolbox, halloffame, budget, unit, callbacks, record, state) -> EvolutionState:
    """A fresh state with the initial population evaluated (generation 0), or the given one."""
    if state is not None:
        state.budget = budget  # a resumed run may have been given a larger budget
        callbacks.on_start(state)
        return state
    state = EvolutionState(
        population=list(population),
        halloffame=halloffame if halloffame is not None else new_halloffame(len(population[0].fitness.weights) > 1),
        logbook=tools.Logbook(),
        budget=budget,
        budget_unit=unit,
    )
    state.logbook.header = ["gen", "nevals", "evaluations", "best", "mean", "best_active"]
    callbacks.on_start(state)
    nevals = _evaluate(toolbox, state.population)
    state.evaluations += len(state.population)
    _report(state, callbacks, record, nevals)
    return state


def steady_state_ga(
    population: list,
    toolbox: base.Toolbox,
    *,
    evaluations: int,
    children_per_step: int = 2,
    cxpb: float = 1.0,
    mutpb: float = 1.0,
    report_every: int | None = None,
    halloffame=None,
    callbacks: Sequence[Callback] = (),
    record: RecordFn = default_record,
    state: EvolutionState | None = None,
    replacement: Replacement | None = None,
) -> tuple[list, tools.Logbook]:
    """EvoPruneDeepTL's steady-state GA.

    Each step selects ``children_per_step`` parents with ``toolbox.select``, clones
    them, mates consecutive pairs with probability ``cxpb`` (the reference always
    crosses), mutates each child with probability ``mutpb`` (the reference's
    ``flip_one`` carries its own 0.07), evaluates them and lets each child replace the
    current worst individual when it is strictly better (elitism: the best is never
    replaced; ties lose, and the fitness already prefers fewer active bits). A child
    equal to a member of the population is not inserted twice.

    Args:
        population: initial individuals (fitness may be invalid).
        toolbox: with ``select``, ``mate``, ``mutate``, ``evaluate``, ``map``, ``clone``.
        evaluations: budget of fitness evaluations, the initial population included
            (cache hits count too: repeated genomes cost nothing but still use budget).
        children_per_step: children per step (reference: 2).
        cxpb: crossover probability per pair.
        mutpb: mutation probability per child.
        report_every: evaluations between generation reports (default: population size).
        halloffame: kept up to date (default: 5 best, NumPy-aware).
        callbacks: called each generation.
        record: statistics of a generation for the logbook.
        state: resume from this state instead of starting.
        replacement: how the children enter the population (default `replace_worst`;
            `nsga2` passes its ``toolbox.survive`` replacement).

    Returns:
        ``(population, logbook)``.
    """
    replace = replacement or replace_worst
    if evaluations < 1:
        raise ValueError(f"evaluations={evaluations}; expected a positive integer")
    cbs = CallbackList(callbacks)
    report_every = report_every or len(population or state.population)

    def loop(state: EvolutionState) -> None:
        next_report = state.info.get("next_report", state.evaluations + report_every)
        while state.evaluations < evaluations and not state.stop:
            children = _breed(toolbox, toolbox.select(state.population, children_per_step), cxpb, mutpb)
            nevals = _evaluate(toolbox, children)
            state.evaluations += len(children)
            state.info["steady_nevals"] = state.info.get("steady_nevals", 0) + nevals
            replace(state, children)
            if state.evaluations >= next_report or state.evaluations >= evaluations:
                state.generation += 1
                next_report += report_every
                state.info["next_report"] = next_report
                _report(state, cbs, record, state.info.pop("steady_nevals", 0))

    state = _start(population, toolbox, halloffame, evaluations, "evaluations", cbs, record, state)
    return _run(loop, state, cbs)


def replace_worst(state: EvolutionState, children: list) -> None:
    """Each child replaces the current worst member when strictly better and not already in.

    Args:
        state: the run's state (its population is changed in place).
        children: the evaluated children of one step.
    """
    pop = state.population
    for child in children:
        worst = min(range(len(pop)), key=lambda i: pop[i].fitness)
        if child.fitness > pop[worst].fitness and not any(np.array_equal(child, p) for p in pop):
            pop[worst] = child


def _generational(population, toolbox, ngen, make_offspring, survivors, halloffame, callbacks, record, state):
    if ngen < 1:
        raise ValueError(f"ngen={ngen}; expected a positive integer")
    cbs = CallbackList(callbacks)

    def loop(state: EvolutionState) -> None:
        while state.generation < ngen and not state.stop:
            offspring = make_offspring(state.population)
            _next_generation(state, toolbox, offspring, lambda: survivors(state.population, offspring), cbs, record)

    state = _start(population, toolbox, halloffame, ngen, "generations", cbs, record, state)
    return _run(loop, state, cbs)


def ea_simple(
    population: list,
    toolbox: base.Toolbox,
    cxpb: float,
    mutpb: float,
    ngen: int,
    *,
    halloffame=None,
    callbacks: Sequence[Callback] = (),
    record: RecordFn = default_record,
    state: EvolutionState | None = None,
) -> tuple[list, tools.Logbook]:
    """`deap.algorithms.eaSimple` with callbacks and resume: select, `varAnd`, replace all."""
    from deap.algorithms import varAnd

    def offspring(pop):
        return varAnd(toolbox.select(pop, len(pop)), toolbox, cxpb, mutpb)

    return _generational(population, toolbox, ngen, offspring, lambda pop, off: off, halloffame, callbacks, record, state)


def mu_plus_lambda(
    population: list,
    toolbox: base.Toolbox,
    mu: int,
    lambda_: int,
    cxpb: float,
    mutpb: float,
    ngen: int,
    *,
    halloffame=None,
    callbacks: Sequence[Callback] = (),
    record: RecordFn = default_record,
    state: EvolutionState | None = None,
) -> tuple[list, tools.Logbook]:
    """`deap.algorithms.eaMuPlusLambda` with callbacks and resume: `varOr`, select mu of parents + offspring."""
    from deap.algorithms import varOr

    if cxpb + mutpb > 1.0:
        raise ValueError(f"cxpb + mutpb = {cxpb + mutpb}; expected at most 1 (varOr applies one of them)")

    def offspring(pop):
        return varOr(pop, toolbox, lambda_, cxpb, mutpb)

    return _generational(
        population, toolbox, ngen, offspring, lambda pop, off: toolbox.select(pop + off, mu),
        halloffame, callbacks, record, state,
    )


def nsga2(
    population: list,
    toolbox: base.Toolbox,
    *,
    halloffame=None,
    state: EvolutionState | None = None,
    **options: Any,
) -> tuple[list, tools.Logbook]:
    """Steady-state NSGA-II / NSGA-III (MO-EvoPruneDeepTL: 2 offspring per step).

    `steady_state_ga` with another replacement: parents come from ``toolbox.select``;
    the children join the population and ``toolbox.survive`` (``selNSGA2`` or
    ``selNSGA3``) keeps ``len(population)`` of them.

    Args:
        population: initial individuals (fitness may be invalid).
        toolbox: as for `steady_state_ga`, plus ``survive``.
        halloffame: kept up to date (default: a NumPy-aware `deap.tools.ParetoFront`).
        state: resume from this state instead of starting.
        **options: `steady_state_ga`'s budget, variation, reporting and callback options
            (``evaluations`` is required).

    Returns:
        ``(population, logbook)``.
    """
    mu = len(population or state.population)

    def survive(state: EvolutionState, children: list) -> None:
        fresh = [c for c in children if not any(np.array_equal(c, p) for p in state.population)]
        state.population[:] = toolbox.survive(state.population + fresh, mu)

    if halloffame is None:
        halloffame = new_halloffame(True)
    return steady_state_ga(population, toolbox, halloffame=halloffame, state=state, replacement=survive, **options)


def random_search(
    population: list,
    toolbox: base.Toolbox,
    *,
    evaluations: int,
    halloffame=None,
    callbacks: Sequence[Callback] = (),
    record: RecordFn = default_record,
    state: EvolutionState | None = None,
) -> tuple[list, tools.Logbook]:
    """The best of ``evaluations`` genomes drawn by ``toolbox.population``: the bar evolution must clear.

    Each generation draws a fresh batch of ``len(population)`` genomes from the same
    initialiser the GA starts from and evaluates it (the last batch is cut to the
    budget); nothing is bred, so any gain of a GA over this loop at the same budget is
    the work of selection and variation. The hall of fame keeps the best of all.

    Args:
        population: the first batch (its size is the batch size).
        toolbox: with ``population``, ``evaluate`` and ``map``.
        evaluations: budget of fitness evaluations, the first batch included.
        halloffame: kept up to date (default: 5 best, NumPy-aware).
        callbacks: called each generation.
        record: statistics of a generation for the logbook.
        state: resume from this state instead of starting.

    Returns:
        ``(last batch, logbook)``.
    """
    if evaluations < 1:
        raise ValueError(f"evaluations={evaluations}; expected a positive integer")
    cbs = CallbackList(callbacks)
    batch = len(population or state.population)

    def loop(state: EvolutionState) -> None:
        while state.evaluations < evaluations and not state.stop:
            fresh = toolbox.population(n=min(batch, evaluations - state.evaluations))
            _next_generation(state, toolbox, fresh, lambda: fresh, cbs, record)

    state = _start(population[:evaluations] if population else population, toolbox, halloffame, evaluations,
                   "evaluations", cbs, record, state)
    return _run(loop, state, cbs)


def evaluate_genomes(
    population: list,
    toolbox: base.Toolbox,
    *,
    halloffame=None,
    callbacks: Sequence[Callback] = (),
    record: RecordFn = default_record,
    state: EvolutionState | None = None,
) -> tuple[list, tools.Logbook]:
    """Evaluate given genomes as one generation: the loop of the fixed-mask baselines.

    A baseline (``unpruned``, ``random_mask``, ``magnitude``, ``l1_selection``) decides
    its genome without search; running it through this loop gives it the same
    callbacks (tracking, checkpoint, progress) and the same report as an evolved run.
    """
    cbs = CallbackList(callbacks)
    state = _start(population, toolbox, halloffame, len(population or state.population), "evaluations", cbs,
                   record, state)
    return _run(lambda state: None, state, cbs)


def _distinct(individuals: Sequence) -> list:
    """The individuals without repeats (same object or equal genes), first occurrence kept."""
    out: list = []
    for ind in individuals:
        if not any(ind is o or np.array_equal(ind, o) for o in out):
            out.append(ind)
    return out


def deep_pruning_es(
    population: list,
    toolbox: base.Toolbox,
    *,
    generations: int,
    population_size: int = 30,
    halloffame=None,
    callbacks: Sequence[Callback] = (),
    record: RecordFn = default_record,
    state: EvolutionState | None = None,
) -> tuple[list, tools.Logbook]:
    """DeepPruningES' evolution strategy: three parents and their mutated copies, no crossover.

    Generation 0 is ``population`` as given (DeepPruningES: the unpruned, all-ones
    genome alone). Each generation ``toolbox.select(population, 3)`` picks the parents
    (operator ``heavy_knee_light``: the most accurate, the knee and the lightest members
    of the non-dominated set); repeats among them are dropped; the next population is
    copies of the parents (fitness kept, not evaluated again) plus
    ``population_size - len(parents)`` mutated copies of them, parent ``i % len(parents)``
    for the ``i``-th child (``toolbox.mutate``: ``flip_bit`` with ``indpb=0.2``). Only the
    children are evaluated, through ``toolbox.map``. The reference runs 11 generations
    of 30.

    Args:
        population: Generation 0 (fitness may be invalid).
        toolbox: With ``select``, ``mutate``, ``evaluate``, ``map`` and ``clone``.
        generations: Generations after generation 0.
        population_size: Size of every later generation (at least 3).
        halloffame: Kept up to date (default: a NumPy-aware `deap.tools.ParetoFront`).
        callbacks: Called each generation.
        record: Statistics of a generation (`make_front_record` for hypervolume and front).
        state: Resume from this state instead of starting.

    Returns:
        ``(population, logbook)``.
    """
    if generations < 1:
        raise ValueError(f"generations={generations}; expected a positive integer")
    if population_size < 3:
        raise ValueError(f"population_size={population_size}; expected at least 3 (three parents)")
    cbs = CallbackList(callbacks)

    def loop(state: EvolutionState) -> None:
        while state.generation < generations and not state.stop:
            parents = [toolbox.clone(p) for p in _distinct(toolbox.select(state.population, 3))]
            children = []
            for i in range(population_size - len(parents)):
                child = toolbox.clone(parents[i % len(parents)])
                toolbox.mutate(child)
                del child.fitness.values
                children.append(child)
            _next_generation(state, toolbox, children, lambda: parents + children, cbs, record)

    if halloffame is None:
        halloffame = new_halloffame(True)
    state = _start(population, toolbox, halloffame, generations, "generations", cbs, record, state)
    return _run(loop, state, cbs)


#: Algorithms by config name.
ALGORITHMS = {
    "steady_state": steady_state_ga,
    "ea_simple": ea_simple,
    "mu_plus_lambda": mu_plus_lambda,
    "nsga2": nsga2,
    "nsga3": nsga2,  # same loop; the toolbox's ``survive`` is selNSGA3
    "random_search": random_search,
    "deep_pruning_es": deep_pruning_es,
}

#: The algorithms whose fitness has several objectives and whose archive is a Pareto front.
MULTI_OBJECTIVE = frozenset({"nsga2", "nsga3"})
