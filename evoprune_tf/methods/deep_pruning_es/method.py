"""DeepPruningES registered as a method: ``algorithm.name = "deep_pruning_es"`` (encoding ``filters``)."""

from __future__ import annotations

from typing import Any

from evoprune_tf.methods.base import Method
from evoprune_tf.methods.registry import register

__all__ = ["DeepPruningES", "FILTER_DEFAULTS", "FILTER_ENCODING", "round_to_problems"]

#: The config name of the filter encoding (`evoprune_tf.methods.deep_pruning_es.encoding.FILTER_ENCODING`).
FILTER_ENCODING = "filters"
#: DeepPruningES' reference set-up when the config names none: the unpruned genome first,
#: heavy/knee/light parents, bit flips with p = 0.2, no crossover (``mate`` is unused).
FILTER_DEFAULTS = {
    "encoding": {"name": FILTER_ENCODING},
    "objectives": {"names": ["error", "flops"]},
    "operators": {"init": "ones", "select": "heavy_knee_light", "mutate": {"name": "flip_bit", "indpb": 0.2}},
    "train": {"epochs": 3},
    "algorithm": {"population": 30, "generations": 11},
}


def round_to_problems(config: Any) -> list[str]:
    """``encoding.round_to`` below 1 (or not an integer), as one line."""
    value = config.encoding.round_to
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [f"encoding.round_to={value!r}; expected an integer of at least 1 (1: no rounding, 8: the usual "
                "choice on hardware)"]
    return []


@register
class DeepPruningES(Method):
    """Evolution-strategy filter pruning inside the backbone (Pareto front of error and FLOPs)."""

    name = "deep_pruning_es"
    summary = "DeepPruningES: ES filter pruning inside the backbone, heavy/knee/light models (budget: algorithm.generations)"
    reads = ("data", "backbone", "encoding.name", "encoding.blocks", "encoding.round_to", "train", "algorithm.population",
             "algorithm.generations", "algorithm.early_stop", "operators", "objectives.names", "report.seeds",
             "report.epochs", "report.export_model", "report.litert", "report.dir", "cache_dir")
    defaults = FILTER_DEFAULTS
    fine_tunes_convolutions = True
    writes_report_files = True
    prunes_model_files = True

    def validate(self, config: Any) -> list[str]:
        """Encoding, blocks, objectives, population and report checks of a filter-pruning run."""
        from evoprune_tf.methods.deep_pruning_es.evaluation import validate_filter_objectives

        problems: list[str] = []
        if config.encoding.name != FILTER_ENCODING:
            problems.append(f"algorithm {config.algorithm.name!r} with encoding {config.encoding.name!r}; "
                            f"expected algorithm 'deep_pruning_es' with encoding '{FILTER_ENCODING}'")
        blocks = config.encoding.blocks
        if blocks != "all" and (not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1):
            problems.append(f"encoding.blocks={blocks!r}; expected a positive integer or 'all'")
        problems.extend(round_to_problems(config))
        try:
            validate_filter_objectives(config.objectives.names)
        except ValueError as error:
            problems.append(f"objectives.names: {error}")
        if config.algorithm.population < 3:
            problems.append(f"algorithm.population={config.algorithm.population}; deep_pruning_es needs at least 3")
        if config.report.epochs < 1:
            problems.append(f"report.epochs={config.report.epochs}; expected a positive integer")
        return problems

    def tags(self, config: Any) -> dict[str, str]:
        """Encoding and operators, as the head runs tag them."""
        from evoprune_tf.methods.inputs import head_tags

        return head_tags(config)

    def check(self, session: Any) -> None:
        """The method and encoding, and ImageNet weights that can be had (before any image is read)."""
        from evoprune_tf.features.extract import check_imagenet_weights
        from evoprune_tf.methods.inputs import image_size

        config = session.config
        if config.algorithm.name != self.name or config.encoding.name != FILTER_ENCODING:
            raise ValueError(f"algorithm {config.algorithm.name!r} / encoding {config.encoding.name!r}: expected "
                             "'deep_pruning_es' with encoding 'filters'")
        from evoprune_tf.model_files import is_model_file

        own_file = is_model_file(config.backbone.name)
        if session.inputs.get("network") is None and not own_file and config.backbone.weights == "imagenet":
            check_imagenet_weights(config.backbone.name, image_size=image_size(config), options=config.backbone.options)

    def run(self, session: Any) -> Any:
        """`evoprune_tf.methods.deep_pruning_es.run.run_deep_pruning_es`; returns a `FilterRunResult`."""
        from evoprune_tf.methods.deep_pruning_es.run import run_deep_pruning_es

        return run_deep_pruning_es(session)
