"""The head methods, registered by name: EvoPruneDeepTL's loops, NSGA-II/III, random search, the baselines.

All of them prune the dense head on cached backbone features through one pipeline
(`evoprune_tf.methods.head.run.run_head`); they differ in the loop (`HeadMethod.loop`)
and in generation 0 (a baseline evaluates its one genome). They share the
``[algorithm]`` section, so a study grid can cross them over one config.
"""

from __future__ import annotations

from typing import Any

from evoprune_tf.encodings import ENCODINGS
from evoprune_tf.methods.base import Method
from evoprune_tf.methods.registry import register
from evoprune_tf.objectives import OBJECTIVES
from evoprune_tf.search import algorithms

__all__ = ["HeadMethod", "MO_OPERATOR_DEFAULTS"]

#: Operators of multi-objective runs when the config names none (MO-EvoPruneDeepTL):
#: random parents, uniform crossover, bit-flip mutation with indpb 1/L, NSGA survival.
MO_OPERATOR_DEFAULTS = {
    name: {"select": "random", "mate": {"name": "uniform", "indpb": 0.5},
           "mutate": {"name": "flip_bit", "indpb": "1/L"}, "survive": name}
    for name in ("nsga2", "nsga3")
}
_REPORT_KEYS = tuple(f"report.{k}" for k in ("seeds", "recipe", "export_model", "ensemble_band", "explain",
                                             "rescore_folds", "chance", "dir"))


class HeadMethod(Method):
    """A method that prunes the transfer-learning head (features, neurons or connections)."""

    reads = ("data", "backbone", "head", "encoding.name", "encoding.layers", "encoding.layer", "encoding.active",
             "train", "algorithm",
             "operators", "objectives", *_REPORT_KEYS, "cache_dir", "workers", "runner", "ray_address", "num_gpus")

    def loop(self, config: Any, toolbox: Any, population: list | None, halloffame: Any, callbacks: list,
             record: Any, state: Any) -> tuple[list, Any]:
        """Run the search loop (`evoprune_tf.search.algorithms`) and return ``(population, logbook)``."""
        raise NotImplementedError

    def tags(self, config: Any) -> dict[str, str]:
        """Encoding and operators (`evoprune_tf.methods.head.build.head_tags`)."""
        from evoprune_tf.methods.inputs import head_tags

        return head_tags(config)

    def validate(self, config: Any) -> list[str]:
        """Encoding, head, objectives and report checks of a head run."""
        problems: list[str] = []
        a, e, n_hidden = config.algorithm, config.encoding, len(config.head.hidden)
        if e.name == "filters":
            problems.append(f"algorithm {a.name!r} with encoding 'filters'; expected algorithm 'deep_pruning_es' "
                            "with encoding 'filters'")
        elif e.name not in ENCODINGS:
            problems.append(f"unknown encoding {e.name!r}; expected one of {sorted(ENCODINGS)}, "
                            "or 'filters' with algorithm 'deep_pruning_es'")
        if not config.head.hidden or not all(isinstance(h, int) and h > 0 for h in config.head.hidden):
            problems.append(f"head.hidden={config.head.hidden}; expected a non-empty list of positive integers")
        if e.name == "neuron_pruning" and e.layers and (
            not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_hidden for i in e.layers)
            or len(set(e.layers)) != len(e.layers)
        ):
            problems.append(f"encoding.layers={e.layers}; expected distinct hidden-layer indices in [0, {n_hidden - 1}]")
        if e.name == "connection_pruning" and not 0 <= e.layer <= n_hidden:
            problems.append(f"encoding.layer={e.layer}; expected a kernel index in [0, {n_hidden}]")
        names = config.objectives.names
        bad = [n for n in names if not isinstance(n, str) or n not in OBJECTIVES]
        if bad or not names or len(set(names)) != len(names):
            problems.append(f"objectives.names={names}; expected distinct names from {sorted(OBJECTIVES)}")
        if self.multi_objective and len(names) < 2:
            problems.append(f"algorithm {a.name!r} needs at least two objectives; got {names}")
        return problems

    def check(self, session: Any) -> None:
        """Inputs that cost little to check (datasets, OOD source, downloads, ImageNet weights)."""
        if session.inputs.get("features") is None:
            from evoprune_tf.methods.head.run import check_inputs

            check_inputs(session.config)

    def run(self, session: Any) -> Any:
        """The head pipeline (`evoprune_tf.methods.head.run.run_head`); returns a `RunResult`."""
        from evoprune_tf.methods.head.run import run_head

        return run_head(session)


def _budget(config: Any) -> dict[str, Any]:
    a = config.algorithm
    return dict(evaluations=a.evaluations, children_per_step=a.children_per_step, cxpb=a.cxpb, mutpb=a.mutpb,
                report_every=a.report_every or None)


@register
class SteadyState(HeadMethod):
    """EvoPruneDeepTL's steady-state GA."""

    name = "steady_state"
    summary = "EvoPruneDeepTL: steady-state GA on the head (budget: algorithm.evaluations)"

    def loop(self, config, toolbox, population, halloffame, callbacks, record, state):
        return algorithms.steady_state_ga(population, toolbox, **_budget(config), halloffame=halloffame,
                                          callbacks=callbacks, record=record, state=state)


@register
class Nsga2(HeadMethod):
    """MO-EvoPruneDeepTL: steady-state NSGA-II (Pareto front of the objectives)."""

    name = "nsga2"
    summary = "MO-EvoPruneDeepTL: steady-state NSGA-II, a Pareto front (budget: algorithm.evaluations)"
    multi_objective = True
    defaults = {"operators": MO_OPERATOR_DEFAULTS["nsga2"]}

    def loop(self, config, toolbox, population, halloffame, callbacks, record, state):
        return algorithms.nsga2(population, toolbox, **_budget(config), halloffame=halloffame, callbacks=callbacks,
                                record=record, state=state)


@register
class Nsga3(Nsga2):
    """The NSGA-II loop with NSGA-III survival (reference points)."""

    name = "nsga3"
    summary = "steady-state NSGA-III (reference-point survival), a Pareto front (budget: algorithm.evaluations)"
    defaults = {"operators": MO_OPERATOR_DEFAULTS["nsga3"]}


@register
class EaSimple(HeadMethod):
    """DEAP's eaSimple with callbacks."""

    name = "ea_simple"
    summary = "DEAP's eaSimple, generational (budget: algorithm.generations)"

    def loop(self, config, toolbox, population, halloffame, callbacks, record, state):
        a = config.algorithm
        return algorithms.ea_simple(population, toolbox, a.cxpb, a.mutpb, a.generations, halloffame=halloffame,
                                    callbacks=callbacks, record=record, state=state)


@register
class MuPlusLambda(HeadMethod):
    """DEAP's (mu + lambda) with callbacks."""

    name = "mu_plus_lambda"
    summary = "DEAP's (mu + lambda) (budget: algorithm.generations; mu, lambda_ default to the population)"

    def validate(self, config):
        problems = super().validate(config)
        a = config.algorithm
        if a.cxpb + a.mutpb > 1:
            problems.append(f"algorithm.cxpb + algorithm.mutpb = {a.cxpb + a.mutpb}; mu_plus_lambda needs at most 1")
        return problems

    def loop(self, config, toolbox, population, halloffame, callbacks, record, state):
        a = config.algorithm
        mu, lambda_ = a.mu or a.population, a.lambda_ or a.population
        return algorithms.mu_plus_lambda(population, toolbox, mu, lambda_, a.cxpb, a.mutpb, a.generations,
                                         halloffame=halloffame, callbacks=callbacks, record=record, state=state)


@register
class RandomSearch(HeadMethod):
    """The best of ``algorithm.evaluations`` random genomes: the bar evolution must clear."""

    name = "random_search"
    summary = "baseline: the best of algorithm.evaluations random genomes"

    def loop(self, config, toolbox, population, halloffame, callbacks, record, state):
        return algorithms.random_search(population, toolbox, evaluations=config.algorithm.evaluations,
                                        halloffame=halloffame, callbacks=callbacks, record=record, state=state)


class Baseline(HeadMethod):
    """A fixed genome decided without search (`evoprune_tf.methods.head.baselines`), evaluated as one generation."""

    def loop(self, config, toolbox, population, halloffame, callbacks, record, state):
        return algorithms.evaluate_genomes(population, toolbox, halloffame=halloffame, callbacks=callbacks,
                                           record=record, state=state)


@register
class Unpruned(Baseline):
    """The whole head."""

    name = "unpruned"
    summary = "baseline: the unpruned head"


class DensityBaseline(Baseline):
    """A baseline that keeps ``algorithm.density`` of the genes (or the density of another run's best)."""

    def validate(self, config):
        problems = super().validate(config)
        a = config.algorithm
        if not (0.0 < a.density <= 1.0) and not a.density_of and not config.encoding.active:
            problems.append(f"algorithm {a.name!r} needs algorithm.density in (0, 1], algorithm.density_of = a run id"
                            f" or encoding.active = a count or fraction of genes; got density={a.density}")
        return problems


@register
class RandomMask(DensityBaseline):
    """A random genome of the given density."""

    name = "random_mask"
    summary = "baseline: a random mask of algorithm.density"


@register
class Magnitude(DensityBaseline):
    """The largest-magnitude genes of a trained unpruned head."""

    name = "magnitude"
    summary = "baseline: the largest-magnitude genes of the trained head, at algorithm.density"


@register
class L1Selection(DensityBaseline):
    """Features picked by an L1-regularised linear model."""

    name = "l1_selection"
    summary = "baseline: features picked by L1-regularised selection, at algorithm.density"

    def validate(self, config):
        problems = super().validate(config)
        if config.encoding.name != "feature_selection":
            problems.append(f"algorithm 'l1_selection' selects features; encoding {config.encoding.name!r}"
                            " is not feature_selection")
        return problems


