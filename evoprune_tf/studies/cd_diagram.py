"""Demšar-style critical-difference diagrams (matplotlib, Agg backend, no pyplot)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["critical_difference_diagram"]


def _cliques(sorted_ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs ``(first, last)`` of rank-sorted groups spanning less than ``cd``."""
    spans = []
    for start in range(len(sorted_ranks)):
        end = start
        while end + 1 < len(sorted_ranks) and sorted_ranks[end + 1] - sorted_ranks[start] < cd:
            end += 1
        if end > start and not any(s <= start and end <= e for s, e in spans):
            spans.append((start, end))
    return spans


def critical_difference_diagram(
    avg_ranks: Mapping[str, float],
    cd: float,
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Draw a Demšar-style critical-difference diagram and save it as an image.

    The axis shows average ranks from 1 (best, left) to k. Each group hangs from its
    average rank, the better half labelled on the left, the rest on the right; thick
    bars join groups whose ranks differ by less than the critical difference (not
    significantly different by the Nemenyi test), and a bar of length ``cd`` sits above
    the axis for scale.

    Args:
        avg_ranks: Group name -> average rank (1 = best), e.g. ``FriedmanResult.average_ranks``.
        cd: Critical difference in rank units (``FriedmanResult.critical_difference``).
        path: Where to save (the suffix picks the format, e.g. ``.png``); parents are created.
        title: Optional title above the diagram.

    Returns:
        The path written.
    """
    if len(avg_ranks) < 2:
        raise ValueError(f"a CD diagram needs at least 2 groups, got {len(avg_ranks)}")
    if not (math.isfinite(cd) and cd > 0):
        raise ValueError(f"cd={cd!r}; expected a positive critical difference")
    # A bare Figure renders through Agg without pyplot: no global backend switch, no
    # figure registry to leak, safe in worker processes and headless CI.
    from matplotlib.figure import Figure

    items = sorted(avg_ranks.items(), key=lambda item: item[1])
    names = [name for name, _ in items]
    ranks = [float(rank) for _, rank in items]
    k = len(items)
    low, high = 1.0, float(max(k, math.ceil(max(ranks))))
    n_left = (k + 1) // 2
    cliques = _cliques(ranks, cd)

    # Layout in data units: the axis at y=0, labels and bars below it (y grows down).
    row = 0.5
    label_rows = max(n_left, k - n_left)
    clique_top = 0.35
    first_label = clique_top + 0.25 * len(cliques) + row * 0.5
    height = first_label + row * label_rows
    fig = Figure(figsize=(max(6.0, 1.1 * k + 3.0), 0.5 * (height + 1.2) + 0.4))
    ax = fig.subplots()
    ax.set_xlim(low - 0.25 * (high - low) - 0.6, high + 0.25 * (high - low) + 0.6)
    ax.set_ylim(height, -1.2)
    ax.axis("off")

    _draw_scale(ax, low, high, cd)
    _draw_groups(ax, names, ranks, cliques, low, high, n_left, clique_top, first_label, row)
    if title:
        ax.set_title(title, fontsize=11)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out


def _draw_scale(ax: Any, low: float, high: float, cd: float) -> None:
    """The rank axis with its ticks, and the bar of length ``cd`` above it, starting at rank 1."""
    ax.plot([low, high], [0, 0], color="black", lw=1.5)
    for tick in range(int(low), int(high) + 1):
        ax.plot([tick, tick], [0, -0.12], color="black", lw=1.2)
        ax.text(tick, -0.2, str(tick), ha="center", va="bottom", fontsize=10)
    for half in np.arange(low + 0.5, high, 1.0):
        ax.plot([half, half], [0, -0.06], color="black", lw=0.8)

    # The CD scale bar, starting at rank 1.
    ax.plot([low, low + cd], [-0.75, -0.75], color="black", lw=2.0)
    for end in (low, low + cd):
        ax.plot([end, end], [-0.68, -0.82], color="black", lw=1.2)
    ax.text(low + cd / 2, -0.85, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=10)


def _draw_groups(ax: Any, names: Sequence[str], ranks: Sequence[float], cliques: Sequence[tuple[int, int]],
                 low: float, high: float, n_left: int, clique_top: float, first_label: float, row: float) -> None:
    """The clique bars under the axis and each group hanging from its rank, labelled left or right."""
    k = len(names)
    bars_y = [clique_top + 0.25 * i for i in range(len(cliques))]
    for (start, end), y in zip(cliques, bars_y):
        ax.plot([ranks[start] - 0.05, ranks[end] + 0.05], [y, y], color="tab:red", lw=4.0, solid_capstyle="round")

    left_x = low - 0.25 * (high - low) - 0.1
    right_x = high + 0.25 * (high - low) + 0.1
    for index, (name, rank) in enumerate(zip(names, ranks)):
        if index < n_left:
            y = first_label + row * index
            ax.plot([rank, rank, left_x], [0, y, y], color="tab:blue", lw=1.0)
            ax.text(left_x - 0.05, y, f"{name} ({rank:.2f})", ha="right", va="center", fontsize=10)
        else:
            y = first_label + row * (k - 1 - index)
            ax.plot([rank, rank, right_x], [0, y, y], color="tab:blue", lw=1.0)
            ax.text(right_x + 0.05, y, f"({rank:.2f}) {name}", ha="left", va="center", fontsize=10)
