"""The convergence plot of a comparison: mean ± std of a per-generation metric per group.

Only groups whose runs logged the metric at two or more generations have a curve. A
baseline (``unpruned``, ``random_mask``, ``magnitude``, ``l1_selection``) evaluates one
genome at generation 0: one point, no line. Such groups are left out of the legend, and
the plot's title names them and says why, so six entries never stand for two lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

__all__ = ["Curve", "convergence_curves", "convergence_figure", "convergence_plot"]


@dataclass(frozen=True)
class Curve:
    """One group's curve: generations, mean and std over its runs, and how many runs."""

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_runs: int


def convergence_curves(
    client: "MlflowClient", run_ids: Mapping[str, Sequence[str]], curve_metric: str
) -> tuple[dict[str, Curve], list[str]]:
    """The groups with a curve, and the groups without one (fewer than two generations logged).

    Args:
        client: a client of the store.
        run_ids: group name -> its runs' ids, in the order the plot lists them.
        curve_metric: the per-generation metric (``step`` = generation).

    Returns:
        ``(curves, left_out)``: group -> `Curve` for the groups with two or more
        generations; the names of the others, in order.
    """
    curves: dict[str, Curve] = {}
    left_out: list[str] = []
    for name, ids in run_ids.items():
        by_step: dict[int, list[float]] = {}
        for run_id in ids:
            for point in client.get_metric_history(run_id, curve_metric):
                by_step.setdefault(int(point.step), []).append(float(point.value))
        if len(by_step) < 2:
            left_out.append(name)
            continue
        steps = np.asarray(sorted(by_step))
        mean = np.asarray([np.mean(by_step[s]) for s in steps])
        std = np.asarray([np.std(by_step[s], ddof=1) if len(by_step[s]) > 1 else 0.0 for s in steps])
        curves[name] = Curve(steps, mean, std, len(ids))
    return curves, left_out


def convergence_figure(curves: Mapping[str, Curve], left_out: Sequence[str], curve_metric: str, title: str) -> "Figure":
    """The plot: one line and ± std band per curve; the title names the groups left out."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    for name, curve in curves.items():
        (line,) = ax.plot(curve.steps, curve.mean, lw=1.8, label=f"{name} (n={curve.n_runs})")
        ax.fill_between(curve.steps, curve.mean - curve.std, curve.mean + curve.std,
                        color=line.get_color(), alpha=0.2, lw=0)
    if left_out:
        title = f"{title}\nnot drawn (one generation, no curve): {', '.join(left_out)}"
    ax.set_xlabel("generation")
    ax.set_ylabel(f"{curve_metric} (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def convergence_plot(
    client: "MlflowClient",
    run_ids: Mapping[str, Sequence[str]],
    curve_metric: str,
    path: Path,
    title: str,
) -> Path | None:
    """Write the convergence plot to ``path``; None when no group has a curve."""
    curves, left_out = convergence_curves(client, run_ids, curve_metric)
    if not curves:
        return None
    fig = convergence_figure(curves, left_out, curve_metric, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
