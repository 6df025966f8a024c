"""Plots of a comparison along an axis: the metric against the axis, and the test fronts against the sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evoprune_tf.search.pareto import non_dominated
from evoprune_tf.studies.fronts import FRONT_WEIGHTS

if TYPE_CHECKING:  # pragma: no cover
    from evoprune_tf.studies.axis import AxisComparison
    from evoprune_tf.studies.fronts import FrontComparison

__all__ = ["axis_curve_plot", "fronts_plot"]


def axis_curve_plot(result: "AxisComparison", path: Path) -> Path:
    """The metric against the axis: one line per group, mean ± std band over seeds; ``*`` where the test is significant.

    The x axis is logarithmic when every value is positive and they span a factor of 10
    or more (a density sweep 1%...25%).

    Args:
        result: The comparison.
        path: The PNG to write.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    table = result.table
    for name in result.groups:
        rows = table[table["group"] == name].sort_values(result.axis)
        x = rows[result.axis].to_numpy(dtype=float)
        mean = rows[f"{result.metric}_mean"].to_numpy(dtype=float)
        std = np.nan_to_num(rows[f"{result.metric}_std"].to_numpy(dtype=float))
        low, high = int(rows[f"{result.metric}_n"].min()), int(rows[f"{result.metric}_n"].max())
        seeds = f"n={low}" if low == high else f"n={low}-{high}"
        (line,) = ax.plot(x, mean, marker="o", lw=1.8, label=f"{name} ({seeds})")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    significant = [p.value for p in result.points if p.test is not None and p.test.p_value < result.alpha]
    for value in significant:
        ax.annotate("*", (value, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=14)
    values = np.asarray([p.value for p in result.points], dtype=float)
    if values.size and values.min() > 0 and values.max() / values.min() >= 10:
        ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.set_xlabel(result.axis)
    ax.set_ylabel(f"{result.metric} (mean ± std over seeds)")
    title = f"{result.metric} against {result.axis}"
    if significant:
        title += f"\n* paired test significant at alpha = {result.alpha}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def fronts_plot(fronts: "FrontComparison", path: Path) -> Path:
    """Every seed's test front per group as a staircase (active fraction vs test accuracy).

    Args:
        fronts: The front comparison.
        path: The PNG to write.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    for name in [*fronts.front_groups, *fronts.sweep_groups]:
        color = None
        hv = np.mean(list(fronts.hypervolumes[name].values()))
        for seed, points in fronts.points[name].items():
            kept = points[non_dominated(points, FRONT_WEIGHTS)]
            kept = kept[np.argsort(kept[:, 1], kind="stable")]
            label = f"{name} (hypervolume {hv:.4f})" if color is None else None
            (line,) = ax.step(kept[:, 1], kept[:, 0], where="post", marker="o", ms=3, lw=1.2, alpha=0.6,
                              color=color, label=label)
            color = line.get_color()
    ax.set_xlabel("active fraction")
    ax.set_ylabel("test accuracy")
    ax.set_title("test fronts, one staircase per seed (mean test hypervolume in the legend)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
