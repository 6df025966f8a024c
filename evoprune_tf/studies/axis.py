"""A metric against a numeric grid axis: per value, each group's mean ± std and paired tests over seeds.

A density sweep crosses methods with values of one config key (``encoding.active = k``)
and seeds. `evoprune grid` tags every run ``evoprune.grid.<axis> = <value>`` (JSON text),
so this module reads the axis from that tag, refuses an axis the study does not have or
whose values are not numbers (one line, before any test or plot), and then, for every
value of the axis on its own, pairs the groups by seed and runs the tests of
`evoprune_tf.studies.stats`: Wilcoxon signed-rank (with Vargha-Delaney A) for two
groups, Friedman with Holm-corrected pairwise Wilcoxon and A for three or more.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Sequence

from evoprune_tf.studies.runs import mean_std, missing, seed_order, seed_value
from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult, align_by_seed, friedman, wilcoxon_paired

if TYPE_CHECKING:
    import pandas

    from evoprune_tf.studies.fronts import FrontComparison

__all__ = [
    "GRID_AXIS_PREFIX",
    "AxisComparison",
    "AxisPoint",
    "axis_name",
    "axis_points",
    "axis_table",
    "axis_values",
    "curve_order",
]

#: Prefix of the tag `evoprune grid` gives every run per axis (`evoprune_tf.studies.grid_spec.AXIS_TAG_PREFIX`).
GRID_AXIS_PREFIX = "evoprune.grid."


@dataclass
class AxisPoint:
    """One value of the axis: the groups' per-seed values there and their paired test.

    Attributes:
        value: The axis value.
        values: Group name -> (seed -> metric) of the groups run at this value.
        seeds: The seeds the test paired.
        test: Wilcoxon (2 groups), Friedman (>= 3 groups) or None (one group).
        pair: For 2 groups, the ``(a, b)`` order of the Wilcoxon test (best mean first).
    """

    value: float
    values: dict[str, dict[Hashable, float]]
    seeds: list[Hashable]
    test: WilcoxonResult | FriedmanResult | None = None
    pair: tuple[str, str] | None = None


@dataclass
class AxisComparison:
    """What `evoprune_tf.studies.compare_axis.compare_over_axis` found.

    Attributes:
        experiment: Experiment name.
        filter_string: The MLflow filter the runs were selected with.
        group_by: Tags that define the groups.
        axis: The config key the curve runs along (e.g. ``encoding.active``).
        metric: The metric on the curve and in the tests.
        higher_is_better: Its direction.
        groups: The groups on the curve, best mean (over the axis values) first.
        points: One `AxisPoint` per axis value, in increasing order.
        table: Long table, one row per (value, group): ``<axis>``, ``group``,
            ``<metric>_mean``, ``<metric>_std``, ``<metric>_n``.
        run_ids: Group name -> ids of its runs on the curve.
        left_out: Group name -> number of its runs without the axis tag (not on the curve).
        alpha: Significance level.
        fronts: The front-against-sweep comparison (``--fronts``), or None.
        files: Output name -> path written.
        run_id: Id of the logged comparison run, or None.
    """

    experiment: str
    filter_string: str
    group_by: tuple[str, ...]
    axis: str
    metric: str
    higher_is_better: bool
    groups: list[str]
    points: list[AxisPoint]
    table: "pandas.DataFrame"
    run_ids: dict[str, list[str]]
    left_out: dict[str, int] = field(default_factory=dict)
    alpha: float = 0.05
    fronts: "FrontComparison | None" = None
    files: dict[str, Path] = field(default_factory=dict)
    run_id: str | None = None


def axis_name(axis: str) -> str:
    """The config key of an axis, given as ``encoding.active`` or as its tag ``evoprune.grid.encoding.active``."""
    axis = axis.strip()
    return axis[len(GRID_AXIS_PREFIX):] if axis.startswith(GRID_AXIS_PREFIX) else axis


def axis_values(frame: "pandas.DataFrame", axis: str, experiment: str) -> "pandas.Series":
    """The axis value of every run (NaN where a run has no such tag), refusing a missing or non-numeric axis.

    Args:
        frame: The selected runs (`evoprune_tf.studies.runs.read_runs`).
        axis: The config key (see `axis_name`).
        experiment: Named in errors.

    Returns:
        A float Series aligned with ``frame``.

    Raises:
        ValueError: When no selected run has the tag ``evoprune.grid.<axis>`` (naming the
            grid axes the runs have), or when a value is not a number (naming it, its run
            and what was expected).
    """
    import pandas as pd

    column = f"tags.{GRID_AXIS_PREFIX}{axis}"
    if column not in frame or frame[column].isna().all():
        axes = sorted(c[len("tags." + GRID_AXIS_PREFIX):] for c in frame.columns
                      if c.startswith("tags." + GRID_AXIS_PREFIX) and frame[c].notna().any())
        raise ValueError(
            f"axis {axis!r} is not in the study: no selected run of experiment {experiment!r} has the tag "
            f"'{GRID_AXIS_PREFIX}{axis}'; expected one of its grid axes: {', '.join(axes) or '(none: not a grid study)'}"
        )
    numbers = []
    for run_id, text in zip(frame["run_id"], frame[column]):
        numbers.append(math.nan if missing(text) else _number(text, axis, run_id))
    return pd.Series(numbers, index=frame.index, dtype=float)


def _number(text: object, axis: str, run_id: str) -> float:
    """A tag's value as a finite number, or a one-line ValueError naming it."""
    try:
        value = json.loads(str(text))
    except json.JSONDecodeError:
        value = str(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(
            f"axis {axis!r} is not numeric: run {run_id} has {axis} = {text!s}; expected numbers "
            f"(e.g. encoding.active = 0.05 or 64) to draw a curve"
        )
    return float(value)


def axis_points(frame: "pandas.DataFrame", on_curve: dict[str, list[int]], values: "pandas.Series", *,
                metric: str, axis: str, seed_tag: str, higher_is_better: bool, alpha: float,
                drop_incomplete: bool) -> list[AxisPoint]:
    """Per axis value, the groups' (seed -> metric) and their paired test.

    Args:
        frame: The selected runs.
        on_curve: Group name -> row indices of its runs with an axis value.
        values: `axis_values` of ``frame``.
        metric: The metric to test.
        axis: The axis name (for errors).
        seed_tag: The tag pairing runs.
        higher_is_better: The metric's direction.
        alpha: Significance level.
        drop_incomplete: Test on the seeds every group has at a value instead of raising.

    Returns:
        The points, in increasing axis value.

    Raises:
        ValueError: Two runs of one group with the same seed at one value, groups with
            different seeds at one value, or fewer than 2 seeds for a Friedman test; each
            naming the axis value.
    """
    points = []
    for value in sorted({values[i] for rows in on_curve.values() for i in rows}):
        per_group: dict[str, dict[Hashable, float]] = {}
        for name, rows in on_curve.items():
            per_seed: dict[Hashable, float] = {}
            for i in rows:
                result = frame.at[i, f"metrics.{metric}"] if f"metrics.{metric}" in frame else math.nan
                if values[i] != value or missing(result):
                    continue
                seed = seed_value(frame.at[i, f"tags.{seed_tag}"])
                if seed in per_seed:
                    raise ValueError(f"group {name!r} has several runs with seed {seed!r} at {axis} = {value:g}; "
                                     "add a tag to --group-by or narrow --filter")
                per_seed[seed] = float(result)
            if per_seed:
                per_group[name] = per_seed
        points.append(_point(value, per_group, axis, higher_is_better, alpha, drop_incomplete))
    return points


def _point(value: float, per_group: dict[str, dict[Hashable, float]], axis: str, higher: bool, alpha: float,
           drop_incomplete: bool) -> AxisPoint:
    """The paired test of the groups at one axis value."""
    seeds = sorted({s for v in per_group.values() for s in v}, key=seed_order)
    point = AxisPoint(value=value, values=per_group, seeds=seeds)
    if len(per_group) < 2:
        return point
    order = sorted(per_group, key=lambda n: _oriented_mean(per_group[n].values(), higher))
    try:
        point.seeds, aligned = align_by_seed({n: per_group[n] for n in order}, drop_incomplete=drop_incomplete)
        if len(order) == 2:
            point.pair = (order[0], order[1])
            point.test = wilcoxon_paired(aligned[order[0]], aligned[order[1]], higher_is_better=higher)
        else:
            point.test = friedman(aligned, higher_is_better=higher, alpha=alpha)
    except ValueError as error:
        raise ValueError(f"at {axis} = {value:g}: {error}") from None
    return point


def _oriented_mean(values: Sequence[float] | object, higher: bool) -> float:
    """Sort key: the best mean first (missing last)."""
    mean = mean_std(list(values))[0]  # type: ignore[arg-type]
    return math.inf if missing(mean) else (-mean if higher else mean)


def axis_table(points: Sequence[AxisPoint], groups: Sequence[str], axis: str, metric: str) -> "pandas.DataFrame":
    """One row per (value, group) with runs there: mean, sample std (ddof = 1) and n of the metric.

    Args:
        points: The `axis_points`.
        groups: The groups in table order.
        axis: The axis name (first column).
        metric: The metric (``<metric>_mean``, ``_std``, ``_n`` columns).

    Returns:
        The long table.
    """
    import pandas as pd

    rows = []
    for point in points:
        for name in groups:
            if name not in point.values:
                continue
            mean, std, n = mean_std(list(point.values[name].values()))
            rows.append({axis: point.value, "group": name, f"{metric}_mean": mean, f"{metric}_std": std,
                         f"{metric}_n": n})
    return pd.DataFrame(rows, columns=[axis, "group", f"{metric}_mean", f"{metric}_std", f"{metric}_n"])


def curve_order(points: Sequence[AxisPoint], higher: bool) -> list[str]:
    """The groups, best mean over every (value, seed) first; ties by name."""
    pooled: dict[str, list[float]] = {}
    for point in points:
        for name, per_seed in point.values.items():
            pooled.setdefault(name, []).extend(per_seed.values())
    return sorted(pooled, key=lambda n: (_oriented_mean(pooled[n], higher), n))
