"""What a comparison found (`ComparisonResult`) and which way each known metric is better."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Hashable

from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult

if TYPE_CHECKING:
    import pandas

__all__ = ["DEFAULT_METRICS", "ComparisonResult", "metric_direction"]


#: Final metrics tabulated by default; those no selected run has are left out.
DEFAULT_METRICS: tuple[str, ...] = (
    "test_accuracy_mean",
    "active_percent",
    "active_fraction",
    "params",
    "flops",
    "hypervolume",
    "wall_seconds",
)


# Which way is better for the metrics the runs log; anything else must be told.
_KNOWN_DIRECTIONS: dict[str, bool] = {
    "test_accuracy_mean": True,
    "test_accuracy": True,
    "val_accuracy": True,
    "accuracy": True,
    "hypervolume": True,
    "auroc": True,
    "active_percent": False,
    "active_fraction": False,
    "params": False,
    "flops": False,
    "macs": False,
    "wall_seconds": False,
    "loss": False,
    "test_loss": False,
}


@dataclass
class ComparisonResult:
    """What `compare` found.

    Attributes:
        experiment: Experiment name.
        filter_string: The MLflow filter the runs were selected with.
        group_by: Tags that define the groups.
        metric: The metric the tests ran on.
        higher_is_better: Its direction.
        groups: Group names, best mean on ``metric`` first.
        run_ids: Group name -> ids of its selected runs.
        values: Group name -> (seed -> ``metric``) over the runs that logged it.
        seeds: The seeds every group has (the pairs of the tests).
        table: One row per group (order of ``groups``): the group tags, ``n_runs``, and
            ``<m>_mean``, ``<m>_std``, ``<m>_n`` per tabulated metric.
        test: Wilcoxon (2 groups) or Friedman (>= 3 groups) result; None for 1 group.
        pair: For 2 groups, the ``(a, b)`` order of the Wilcoxon test (``a`` = best mean).
        files: Output name (``markdown``, ``csv``, ``values``, ``pairwise``,
            ``cd_diagram``, ``convergence``) -> path written.
        run_id: Id of the logged comparison run, or None.
        alpha: Significance level.
    """

    experiment: str
    filter_string: str
    group_by: tuple[str, ...]
    metric: str
    higher_is_better: bool
    groups: list[str]
    run_ids: dict[str, list[str]]
    values: dict[str, dict[Hashable, float]]
    seeds: list[Hashable]
    table: "pandas.DataFrame"
    test: WilcoxonResult | FriedmanResult | None
    pair: tuple[str, str] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    run_id: str | None = None
    alpha: float = 0.05


def metric_direction(metric: str, higher_is_better: bool | None = None) -> bool:
    """Whether higher values of ``metric`` are better.

    Args:
        metric: Metric name.
        higher_is_better: An explicit answer, returned as is when given.

    Returns:
        True for higher-is-better metrics (accuracy, hypervolume), False for
        lower-is-better ones (active share, params, FLOPs, wall time, loss).

    Raises:
        ValueError: For a metric of unknown direction when none is given.
    """
    if higher_is_better is not None:
        return bool(higher_is_better)
    if metric in _KNOWN_DIRECTIONS:
        return _KNOWN_DIRECTIONS[metric]
    raise ValueError(
        f"metric {metric!r} has no known direction; pass higher_is_better=True or False "
        "(--higher-is-better / --lower-is-better)"
    )
