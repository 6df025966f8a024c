"""`FilterBaseline`: the method contract shared by the filter-pruning baselines (one subclass per criterion).

A subclass sets its ``name``, ``summary``, the rankings it allows (``scopes``, the first
is its default) and implements `FilterBaseline.scores`; the pipeline
(`evoprune_tf.methods.filter_baselines.pipeline`) does the rest, on DeepPruningES'
network, evaluator and final report. Importing this module does not import Keras.
"""

from __future__ import annotations

from typing import Any, ClassVar

from evoprune_tf.methods.base import Method

__all__ = ["FILTER_BASELINE_DEFAULTS", "FilterBaseline", "knee_network_flops"]

#: Raw config values a filter baseline fills in under the user's (DeepPruningES' encoding and objectives).
FILTER_BASELINE_DEFAULTS = {"encoding": {"name": "filters"}, "objectives": {"names": ["error", "flops"]}}
_DEFAULT_REDUCTION = 0.5


class FilterBaseline(Method):
    """Prune the searched filters by a criterion to a FLOPs target, then retrain and report as DeepPruningES.

    Attributes:
        scopes: The rankings the criterion allows, its default first (``"global"``, ``"layer"``).
        normalize_global: A global ranking divides each group's scores by their mean first
            (criteria whose scale differs between layers: L1 norms, distances).
        needs_data: The scores need the training data and the warmed-up head (taylor).
    """

    scopes: ClassVar[tuple[str, ...]] = ("layer", "global")
    normalize_global: ClassVar[bool] = True
    needs_data: ClassVar[bool] = False
    reads = ("data", "backbone", "encoding.name", "encoding.blocks", "encoding.round_to", "train",
             "algorithm.flops_reduction", "algorithm.flops_of", "algorithm.ranking", "objectives.names",
             "report.seeds", "report.epochs", "report.export_model", "report.litert", "report.dir", "cache_dir")
    defaults = FILTER_BASELINE_DEFAULTS
    fine_tunes_convolutions = True
    writes_report_files = True
    checkpoints = False
    prunes_model_files = True

    def scores(self, model: Any, groups: list, *, config: Any, evaluator: Any = None) -> dict[str, Any]:
        """One score per filter of each group (higher is kept first).

        Args:
            model: The network the groups belong to (the evaluator's suffix when ``needs_data``).
            groups: The searched `FilterGroup`s.
            config: The run's config (``seed``; taylor: ``train.batch_size``, ``algorithm.taylor_batches``).
            evaluator: The `FilterEvaluator` (activations, recipe) when ``needs_data``.

        Returns:
            Group name -> array of ``group.size`` scores.
        """
        raise NotImplementedError

    def scope(self, config: Any) -> str:
        """The ranking of a run: ``algorithm.ranking``, or the criterion's default for ``"auto"``."""
        ranking = config.algorithm.ranking
        return self.scopes[0] if ranking == "auto" else ranking

    def validate(self, config: Any) -> list[str]:
        """Encoding, blocks, round_to, target, ranking and report checks (one line each)."""
        from evoprune_tf.methods.deep_pruning_es.method import round_to_problems

        problems: list[str] = []
        a = config.algorithm
        if config.encoding.name != "filters":
            problems.append(f"algorithm {a.name!r} with encoding {config.encoding.name!r}; expected encoding 'filters'")
        blocks = config.encoding.blocks
        if blocks != "all" and (not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1):
            problems.append(f"encoding.blocks={blocks!r}; expected a positive integer or 'all'")
        problems.extend(round_to_problems(config))
        reduction = a.flops_reduction
        if isinstance(reduction, bool) or not isinstance(reduction, (int, float)) or not 0.0 < reduction < 1.0:
            problems.append(f"algorithm.flops_reduction={reduction!r}; expected a fraction of the searched FLOPs "
                            "removed, in (0, 1)")
        elif a.flops_of and reduction != _DEFAULT_REDUCTION:
            problems.append(f"algorithm.flops_reduction={reduction!r} and algorithm.flops_of={a.flops_of!r}; "
                            "expected one target, not both")
        if a.ranking not in ("auto", *self.scopes):
            problems.append(f"algorithm.ranking={a.ranking!r}; {a.name} ranks {' or '.join(self.scopes)}: expected "
                            f"one of {['auto', *self.scopes]}")
        if config.report.epochs < 1:
            problems.append(f"report.epochs={config.report.epochs}; expected a positive integer")
        return problems

    def tags(self, config: Any) -> dict[str, str]:
        """The criterion's ranking and the target."""
        target = f"flops_of={config.algorithm.flops_of}" if config.algorithm.flops_of else \
            f"flops_reduction={config.algorithm.flops_reduction}"
        return {"evoprune.encoding": "filters", "evoprune.ranking": self.scope(config), "evoprune.target": target}

    def check(self, session: Any) -> None:
        """ImageNet weights that can be had, and the other run's FLOPs for ``flops_of`` (before any image)."""
        from evoprune_tf.model_files import is_model_file

        config = session.config
        if (session.inputs.get("network") is None and not is_model_file(config.backbone.name)
                and config.backbone.weights == "imagenet"):
            from evoprune_tf.features.extract import check_imagenet_weights
            from evoprune_tf.methods.inputs import image_size

            check_imagenet_weights(config.backbone.name, image_size=image_size(config), options=config.backbone.options)
        if config.algorithm.flops_of:
            session.inputs["flops_of_network"] = knee_network_flops(flops_of_run(config), config.tracking.uri)

    def run(self, session: Any) -> Any:
        """`evoprune_tf.methods.filter_baselines.pipeline.run_filter_baseline`."""
        from evoprune_tf.methods.filter_baselines.pipeline import run_filter_baseline

        return run_filter_baseline(session, self)


#: ``algorithm.flops_of = "seed:<method>"``: that method's run of the same seed, in the same experiment.
SAME_SEED = "seed:"


def flops_of_run(config: Any) -> str:
    """The run id ``algorithm.flops_of`` names: the id (or prefix) itself, or ``seed:<method>`` resolved.

    ``seed:deep_pruning_es`` is the one finished DeepPruningES run whose seed is this run's
    seed in this run's experiment (`evoprune_tf.tracking.store.same_seed_run`), so that
    one grid over seeds pairs every baseline with the knee of its own seed.

    Raises:
        ValueError: the method is unknown, or not exactly one such run (one line).
    """
    value = config.algorithm.flops_of
    if not value.startswith(SAME_SEED):
        return value
    from evoprune_tf.methods.filter_baselines import FILTER_BASELINES
    from evoprune_tf.tracking.store import same_seed_run

    method, known = value[len(SAME_SEED):], ("deep_pruning_es", "tascnet", *FILTER_BASELINES)
    if method not in known:
        raise ValueError(f"algorithm.flops_of={value!r}; expected seed:<method> with a method from {', '.join(known)}")
    try:
        return same_seed_run(method, config.seed, config.tracking.experiment, config.tracking.uri)
    except ValueError as error:
        raise ValueError(f"algorithm.flops_of={value!r}: {error}") from None


def knee_network_flops(run_id: str, uri: str = "") -> float:
    """The network FLOPs of a run's recommended model, from its ``report.json``.

    DeepPruningES: the knee; a filter baseline: its pruned model; TASCNet: its pruned model
    as its latency table counts it (the whole deployable network: frozen prefix, searched
    layers and head), not ``pruned.flops``, which counts the searched layers only.

    Raises:
        ValueError: The run is unknown or its report has no such model (one line).
    """
    import json

    from evoprune_tf.tracking.store import run_artifact

    try:
        with run_artifact(run_id, "report.json", uri) as (run, path):
            if path is None or not path.is_file():
                raise ValueError(f"run {run.info.run_id} has no report.json; expected a finished deep_pruning_es, "
                                 "filter-baseline or tascnet run")
            report = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"algorithm.flops_of={run_id!r}: {error}") from None
    from evoprune_tf.methods.deep_pruning_es.report import recommended_row

    chosen = recommended_row([r for r in report.get("table", []) if isinstance(r, dict) and "flops_network" in r])
    if chosen is not None:
        return float(chosen["flops_network"])
    pruned = (report.get("latency") or {}).get("pruned")
    if isinstance(pruned, dict) and "flops" in pruned:
        return float(pruned["flops"])
    raise ValueError(f"algorithm.flops_of={run_id!r}: its report.json names no pruned model's FLOPs; expected a "
                     "deep_pruning_es, filter-baseline or tascnet run")
