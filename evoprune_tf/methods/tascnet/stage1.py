"""TASCNet stage 1: evolutionary search of the deeper layers' configuration.

The authors use Bayesian optimisation (AutoTune); here the integer genome of
`evoprune_tf.methods.tascnet.models.SearchSpace` is searched with the suite's own DEAP-contract
operators (`operators`): ``uniform_int`` initialisation, gene-wise ``uniform``
crossover, ``mutate_categorical`` (or ``mutate_step``) mutation and tournament
selection, in a (mu + lambda) loop with a budget of *distinct trained configurations*.
The fitness, minimised, is the validation loss of the candidate fine-tuned for a few
epochs (`CandidateEvaluator`). Genomes that decode to an already-trained configuration
reuse its fitness and cost no budget.

Every evaluation goes through ``toolbox.map`` and only individuals whose fitness is
invalid are evaluated, so the toolbox of `make_toolbox` also works with
``deap.algorithms.eaSimple``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import Any, Callable, Mapping

import numpy as np
from deap import base, creator

import operators
from evoprune_tf.methods.tascnet.models import (
    Configuration,
    PrefixFeatures,
    SearchSpace,
    TrainRecipe,
    build_candidate,
    evaluate_model,
    fine_tune,
)

__all__ = [
    "CandidateEvaluator",
    "CandidateRecord",
    "Stage1Result",
    "make_toolbox",
    "search_configuration",
]

# Created once at import so that individuals pickle (DEAP creator classes).
if not hasattr(creator, "TascnetFitness"):
    creator.create("TascnetFitness", base.Fitness, weights=(-1.0,))
if not hasattr(creator, "TascnetIndividual"):
    creator.create("TascnetIndividual", list, fitness=creator.TascnetFitness)


@dataclasses.dataclass
class CandidateRecord:
    """One trained stage-1 candidate.

    Attributes:
        index: 0-based order of training (the MLflow step).
        genome: the first genome that decoded to it.
        configuration: the decoded configuration.
        val_loss: the fitness (validation cross-entropy after fine-tuning).
        val_accuracy: validation accuracy.
        params: parameters of the trainable model (the searched layers).
        seconds: wall time of building + training + scoring.
    """

    index: int
    genome: list[int]
    configuration: Configuration
    val_loss: float
    val_accuracy: float
    params: int
    seconds: float

    def row(self) -> dict[str, Any]:
        """A flat CSV row."""
        return {
            "index": self.index, "val_loss": self.val_loss, "val_accuracy": self.val_accuracy,
            "params": self.params, "seconds": round(self.seconds, 3),
            "configuration": self.configuration.describe(), "genome": " ".join(map(str, self.genome)),
        }


@dataclasses.dataclass
class Stage1Result:
    """The outcome of `search_configuration`.

    Attributes:
        best: the record with the lowest validation loss.
        history: every trained candidate, in training order.
        population: the final population.
    """

    best: CandidateRecord
    history: list[CandidateRecord]
    population: list[Any]


class CandidateEvaluator:
    """Builds, fine-tunes and scores candidates of one backbone on cached prefix features.

    Args:
        base: the flat backbone (`build_base`).
        space: the search space.
        features: the `PrefixFeatures` of the dataset.
        labels: ``{"train": y, "val": y, ...}`` integer labels.
        n_classes: number of classes.
        epochs: fine-tuning epochs per candidate.
        recipe: the SGD recipe.
        seed: seeds each candidate's initialisation (the same for every candidate, so
            configurations are compared on equal terms).
    """

    def __init__(
        self,
        base: Any,
        space: SearchSpace,
        features: PrefixFeatures,
        labels: Mapping[str, np.ndarray],
        n_classes: int,
        *,
        epochs: int = 3,
        recipe: TrainRecipe = TrainRecipe(),
        seed: int = 0,
    ) -> None:
        self.base = base
        self.space = space
        self.features = features
        self.labels = dict(labels)
        self.n_classes = int(n_classes)
        self.epochs = int(epochs)
        self.recipe = recipe
        self.seed = int(seed)

    def train(self, configuration: Configuration, *, epochs: int | None = None):
        """Build and fine-tune one candidate.

        Args:
            configuration: what to build.
            epochs: epochs (default: the evaluator's).

        Returns:
            ``(candidate, {split: activations})``: the trained `Candidate` and its features.
        """
        import keras

        keras.utils.set_random_seed(self.seed)
        candidate = build_candidate(self.base, configuration, self.space, self.n_classes, seed=self.seed)
        feats = self.features.get(candidate)
        fine_tune(candidate.model, (feats["train"], self.labels["train"]), None,
                  epochs=self.epochs if epochs is None else int(epochs), recipe=self.recipe)
        return candidate, feats

    def __call__(self, configuration: Configuration) -> dict[str, float]:
        """Fine-tune a candidate and score it on validation.

        Args:
            configuration: the candidate's configuration.

        Returns:
            ``{"val_loss", "val_accuracy", "params", "seconds"}``.
        """
        started = time.perf_counter()
        candidate, feats = self.train(configuration)
        loss, accuracy = evaluate_model(candidate.model, (feats["val"], self.labels["val"]))
        if not math.isfinite(loss):
            loss = float("inf")  # a diverged candidate must lose, not poison the ranking
        return {"val_loss": loss, "val_accuracy": accuracy, "params": int(candidate.model.count_params()),
                "seconds": time.perf_counter() - started}


def make_toolbox(
    space: SearchSpace,
    evaluate: Callable[[list[int]], tuple[float]],
    *,
    mutation: str = "mutate_categorical",
    indpb: float | None = None,
    tournsize: int = 2,
) -> base.Toolbox:
    """A DEAP toolbox over the space's integer genome, from the operator registry.

    Args:
        space: the search space.
        evaluate: genome -> ``(validation loss,)``.
        mutation: ``"mutate_categorical"`` or ``"mutate_step"``.
        indpb: per-gene mutation probability (default ``1 / genome length``, at least one
            gene changes on average).
        tournsize: tournament size of the parent selection.

    Returns:
        The toolbox (``individual``, ``population``, ``mate``, ``mutate``, ``select``,
        ``evaluate``, ``map``).
    """
    from deap import tools

    choices = space.choices()
    toolbox = base.Toolbox()
    toolbox.register("individual", operators.get("init", "uniform_int"), creator.TascnetIndividual,
                     len(choices), choices)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("mate", operators.get("crossover", "uniform"), indpb=0.5)
    toolbox.register("mutate", operators.get("mutation", mutation), choices=choices,
                     indpb=1.0 / len(choices) if indpb is None else float(indpb))
    toolbox.register("select", operators.get("selection", "tournament"), tournsize=int(tournsize))
    toolbox.register("evaluate", evaluate)
    toolbox.register("map", map)
    return toolbox


def search_configuration(
    space: SearchSpace,
    evaluate: Callable[[Configuration], Mapping[str, float]],
    *,
    population: int = 6,
    evaluations: int = 12,
    cxpb: float = 0.5,
    mutpb: float = 0.5,
    mutation: str = "mutate_categorical",
    seed: int = 0,
    on_candidate: Callable[[CandidateRecord], None] | None = None,
    initial: Configuration | None = None,
) -> Stage1Result:
    """Search the configuration space by (mu + lambda) evolution on validation loss.

    Args:
        space: the search space.
        evaluate: configuration -> ``{"val_loss", "val_accuracy", "params", "seconds"}``
            (e.g. a `CandidateEvaluator`).
        population: mu = lambda.
        evaluations: distinct configurations to train (the budget), >= 1.
        cxpb: probability that a child comes from crossover of two tournament winners.
        mutpb: probability that a child is mutated (also after crossover).
        mutation: the registered mutation name.
        seed: seeds Python's `random` (the operators draw from it).
        on_candidate: called with each `CandidateRecord` as soon as it is trained.
        initial: a configuration to seed the first population with (e.g. the unpruned
            default), or None.

    Returns:
        The `Stage1Result`.

    Raises:
        ValueError: a population or budget below 1.
    """
    for name, value in (("population", population), ("evaluations", evaluations)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}={value!r}; expected a positive integer")
    rng_state = random.getstate()
    random.seed(int(seed))
    try:
        search = _Search(space, evaluate, population=int(population), evaluations=int(evaluations), cxpb=cxpb,
                         mutpb=mutpb, mutation=mutation, on_candidate=on_candidate)
        return search.run(initial)
    finally:
        random.setstate(rng_state)


class _Search:
    """The state of one `search_configuration`: trained candidates, the fitness cache, the toolbox."""

    def __init__(self, space: SearchSpace, evaluate: Callable[[Configuration], Mapping[str, float]], *,
                 population: int, evaluations: int, cxpb: float, mutpb: float, mutation: str,
                 on_candidate: Callable[[CandidateRecord], None] | None) -> None:
        self.space, self.evaluate = space, evaluate
        self.population, self.evaluations = population, evaluations
        self.cxpb, self.mutpb = cxpb, mutpb
        self.on_candidate = on_candidate
        self.history: list[CandidateRecord] = []
        self.cache: dict[Configuration, float] = {}
        self.toolbox = make_toolbox(space, self.fitness, mutation=mutation)

    def fitness(self, genome: list[int]) -> tuple[float]:
        """The validation loss of the genome's configuration, trained once (the budget counts it)."""
        configuration = self.space.decode(genome)
        if configuration not in self.cache:
            scores = self.evaluate(configuration)
            record = CandidateRecord(
                index=len(self.history), genome=[int(g) for g in genome], configuration=configuration,
                val_loss=float(scores["val_loss"]), val_accuracy=float(scores.get("val_accuracy", math.nan)),
                params=int(scores.get("params", 0)), seconds=float(scores.get("seconds", 0.0)),
            )
            self.history.append(record)
            self.cache[configuration] = record.val_loss
            if self.on_candidate:
                self.on_candidate(record)
        return (self.cache[configuration],)

    def new_configurations(self, individuals: list[Any]) -> int:
        return len({self.space.decode(ind) for ind in individuals} - set(self.cache))

    def evaluate_invalid(self, individuals: list[Any]) -> list[Any]:
        """Score the individuals; only what the budget still allows is trained, the rest is dropped."""
        kept, fresh = [], set()
        for ind in individuals:
            configuration = self.space.decode(ind)
            if configuration not in self.cache and configuration not in fresh:
                if len(self.history) + len(fresh) >= self.evaluations:
                    continue
                fresh.add(configuration)
            kept.append(ind)
        invalid = [ind for ind in kept if not ind.fitness.valid]
        for ind, fit in zip(invalid, self.toolbox.map(self.toolbox.evaluate, invalid)):
            ind.fitness.values = fit
        return kept

    def offspring(self, pop: list[Any]) -> list[Any]:
        """``population`` children by crossover and/or mutation of tournament winners (fitness invalid)."""
        toolbox, children = self.toolbox, []
        for _ in range(self.population):
            if random.random() < self.cxpb and len(pop) > 1:
                a, b = (toolbox.clone(i) for i in toolbox.select(pop, 2))
                child = toolbox.mate(a, b)[0]
            else:
                child = toolbox.clone(toolbox.select(pop, 1)[0])
            if random.random() < self.mutpb:
                child = toolbox.mutate(child)[0]
            del child.fitness.values
            children.append(child)
        # Children that only repeat known configurations cost nothing: force novelty.
        if self.new_configurations(children) == 0:
            children = [toolbox.mutate(toolbox.clone(c))[0] for c in children]
            for child in children:
                del child.fitness.values
        return children

    def run(self, initial: Configuration | None) -> Stage1Result:
        """The (mu + lambda) loop until the budget is spent or 20 generations in a row train nothing new."""
        pop = self.toolbox.population(n=self.population)
        if initial is not None:
            pop[0] = creator.TascnetIndividual(_encode(self.space, initial))
        pop = self.evaluate_invalid(pop)
        stale = 0
        while len(self.history) < self.evaluations and stale < 20:
            before = len(self.history)
            offspring = self.evaluate_invalid(self.offspring(pop))
            stale = stale + 1 if len(self.history) == before else 0
            pop = sorted(pop + offspring, key=lambda ind: ind.fitness.values[0])[: self.population]
        best = min(self.history, key=lambda r: r.val_loss)
        return Stage1Result(best=best, history=self.history, population=pop)


def _encode(space: SearchSpace, configuration: Configuration) -> list[int]:
    """A genome decoding to ``configuration`` (unused genes 0)."""
    genes = [0] * len(space.choices())
    genes[0], genes[1] = configuration.replace, configuration.unfreeze
    for i, (filters, kernel) in enumerate(configuration.convs):
        genes[2 + 2 * i] = space.filter_choices.index(filters)
        genes[3 + 2 * i] = space.kernel_choices.index(kernel)
    head = 2 + 2 * space.levels
    genes[head] = len(configuration.dense) - 1
    for j, (units, dropout) in enumerate(configuration.dense):
        genes[head + 1 + 2 * j] = space.units_choices.index(units)
        genes[head + 2 + 2 * j] = list(space.dropout_choices).index(round(dropout, 1))
    return genes
