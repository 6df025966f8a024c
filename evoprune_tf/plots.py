"""Figures a researcher would rather look at than read: convergence, Pareto fronts, masks.

Every function draws on its own `matplotlib.figure.Figure` with the Agg canvas (no
pyplot, no global figure registry, no display needed), writes a PNG and returns its
path. matplotlib is imported inside the functions so that importing this module (and
`evoprune_tf.tracking`) stays cheap. It imports nothing of the package: the tracker
and the reports both draw with it.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["convergence_plot", "pareto_plots", "mask_heatmap", "overlay_heatmaps"]

_DPI = 110


def _new_figure(width: float, height: float, layout: str | None = None):
    """A figure on the Agg canvas, independent of pyplot's state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    fig.clear()
    return path


def _column(records: Sequence[Mapping[str, Any]], key: str) -> np.ndarray | None:
    """``record[key]`` for every record as floats, or None when some record lacks it."""
    if not records or not all(key in r for r in records):
        return None
    try:
        return np.array([float(r[key]) for r in records], dtype=np.float64)
    except (TypeError, ValueError):
        return None


def convergence_plot(logbook: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Best / mean / min fitness and the best individual's active fraction per generation.

    The population's min..max range is shaded; the active fractions (``best_active``,
    ``mean_active``) use a second y axis in [0, 1]. When the records hold a strictly
    increasing ``evaluations`` field, a top axis shows the evaluations spent.

    Args:
        logbook: the run's records (a `deap.tools.Logbook` or a list of dicts) with
            ``gen`` and any of ``best``, ``mean``, ``min``, ``max``, ``best_active``,
            ``mean_active``, ``evaluations``.
        path: where to write the PNG.
        title: figure title.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: the logbook is empty.
    """
    records = list(logbook)
    if not records:
        raise ValueError("logbook is empty; expected at least one generation record")
    gen = _column(records, "gen")
    if gen is None:
        gen = np.arange(len(records), dtype=np.float64)
    # constrained layout keeps the title clear of the top (evaluations) axis
    fig = _new_figure(7.5, 4.4, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = _column(records, "min"), _column(records, "max")
    if lo is not None and hi is not None:
        ax.fill_between(gen, lo, hi, color="tab:blue", alpha=0.12, label="min..max")
    styles = {"best": ("tab:blue", "-", 2.0), "mean": ("tab:orange", "-", 1.4), "min": ("tab:gray", ":", 1.2)}
    for key, (color, style, width) in styles.items():
        values = _column(records, key)
        if values is not None:
            ax.plot(gen, values, style, color=color, linewidth=width, marker="o" if len(gen) < 30 else None,
                    markersize=3, label=key)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (first objective)")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    active = {k: _column(records, k) for k in ("best_active", "mean_active")}
    if any(v is not None for v in active.values()):
        ax2 = ax.twinx()
        for key, style in (("best_active", "--"), ("mean_active", "-.")):
            if active[key] is not None:
                ax2.plot(gen, active[key], style, color="tab:green", linewidth=1.3, label=key.replace("_", " "))
        ax2.set_ylim(0.0, 1.05)
        ax2.set_ylabel("active fraction", color="tab:green")
        ax2.tick_params(axis="y", colors="tab:green")
        more_handles, more_labels = ax2.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    evaluations = _column(records, "evaluations")
    if evaluations is not None and len(gen) > 1 and np.all(np.diff(evaluations) > 0) and np.all(np.diff(gen) > 0):
        top = ax.secondary_xaxis(
            "top",
            functions=(lambda g: np.interp(g, gen, evaluations), lambda e: np.interp(e, evaluations, gen)),
        )
        top.set_xlabel("evaluations")
    ax.legend(handles, labels, loc="lower right", fontsize=8, framealpha=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def pareto_plots(
    points: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    knee_index: int | None = None,
    highlight: Sequence[int] | np.ndarray | None = None,
) -> Path:
    """Pairwise 2-D projections of objective vectors, plus a 3-D view for three or more.

    Args:
        points: ``(n, k)`` objective values, ``k >= 2`` (e.g. a Pareto front).
        names: the ``k`` objective names (axis labels).
        path: where to write the PNG.
        knee_index: row of the knee point, drawn as a red star.
        highlight: rows to emphasise (indices or a boolean mask), e.g. ensemble members.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: ``points`` is not ``(n, k)`` with ``n >= 1, k >= 2``, ``names`` does not
            have ``k`` entries, or ``knee_index`` is out of range.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 1 or pts.shape[1] < 2:
        raise ValueError(f"points have shape {pts.shape}; expected (n_points >= 1, n_objectives >= 2)")
    n, k = pts.shape
    names = list(names)
    if len(names) != k:
        raise ValueError(f"names={names}; expected {k} names, one per objective")
    if knee_index is not None and not 0 <= knee_index < n:
        raise ValueError(f"knee_index={knee_index}; expected an index in [0, {n})")
    marked = _highlight_mask(highlight, n)

    pairs = list(itertools.combinations(range(k), 2))
    panels = len(pairs) + (1 if k >= 3 else 0)
    cols = 2 if panels == 4 else min(3, panels)
    rows = math.ceil(panels / cols)
    fig = _new_figure(4.2 * cols, 3.8 * rows)
    for slot, (i, j) in enumerate(pairs, start=1):
        ax = fig.add_subplot(rows, cols, slot)
        ax.scatter(pts[:, i], pts[:, j], s=22, c="tab:blue", alpha=0.75, edgecolors="none", label="points")
        if marked.any():
            ax.scatter(pts[marked, i], pts[marked, j], s=60, facecolors="none", edgecolors="tab:orange",
                       linewidths=1.5, label="highlighted")
        if knee_index is not None:
            ax.scatter(pts[knee_index, i], pts[knee_index, j], s=180, marker="*", c="tab:red",
                       edgecolors="black", linewidths=0.6, zorder=5, label="knee")
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.grid(True, alpha=0.3)
        if slot == 1:
            ax.legend(fontsize=8, framealpha=0.8)
    if k >= 3:
        import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

        ax = fig.add_subplot(rows, cols, panels, projection="3d")
        # A fourth objective, if any, becomes the colour.
        colour = pts[:, 3] if k >= 4 else "tab:blue"
        sc = ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=colour, cmap="viridis" if k >= 4 else None, s=18)
        if marked.any():
            ax.scatter(pts[marked, 0], pts[marked, 1], pts[marked, 2], s=60, facecolors="none",
                       edgecolors="tab:orange", linewidths=1.5)
        if knee_index is not None:
            ax.scatter(*pts[knee_index, :3], s=180, marker="*", c="tab:red", edgecolors="black")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_zlabel(names[2])
        if k >= 4:
            fig.colorbar(sc, ax=ax, shrink=0.6, label=names[3])
    fig.suptitle(f"{n} point(s), {k} objectives")
    fig.tight_layout()
    return _save(fig, path)


def _highlight_mask(highlight: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    """``highlight`` (indices or a boolean mask) as a boolean mask over ``n`` points."""
    marked = np.zeros(n, dtype=bool)
    if highlight is not None:
        hl = np.asarray(highlight)
        if hl.dtype == bool:
            if hl.shape != (n,):
                raise ValueError(f"highlight mask has shape {hl.shape}; expected ({n},)")
            marked = hl
        elif hl.size:
            marked[hl.astype(int)] = True
    return marked


def mask_heatmap(genomes: np.ndarray, path: str | Path, title: str = "") -> Path:
    """The population as an image: one row per individual, one column per gene.

    A strip above shows each gene's fraction of active copies across the population.

    Args:
        genomes: ``(n, L)`` 0/1 genomes (any numeric dtype; non-zero = active).
        path: where to write the PNG.
        title: figure title.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: ``genomes`` is not a non-empty 2-D array.
    """
    from matplotlib.ticker import MaxNLocator

    g = np.asarray(genomes)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"genomes have shape {g.shape}; expected a non-empty (n_individuals, n_genes) array")
    active = (g != 0).astype(np.float32)
    n, length = active.shape
    fig = _new_figure(min(14.0, 4.0 + length / 60.0), min(10.0, 2.2 + n / 8.0))
    grid = fig.add_gridspec(2, 1, height_ratios=(1, 6), hspace=0.08)
    top = fig.add_subplot(grid[0])
    top.imshow(active.mean(axis=0, keepdims=True), aspect="auto", cmap="viridis", vmin=0, vmax=1,
               interpolation="nearest")
    top.set_yticks([])
    top.set_xticks([])
    top.set_ylabel("share", rotation=0, ha="right", va="center", fontsize=8)
    ax = fig.add_subplot(grid[1])
    ax.imshow(active, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"gene ({length})")
    ax.set_ylabel(f"individual ({n})")
    fig.suptitle(title or f"masks: {100 * active.mean():.1f}% active")
    return _save(fig, path)


def _upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float map to ``(height, width)``, then min-max scaled to [0, 1]."""
    from PIL import Image

    resized = np.asarray(
        Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32)).resize(
            (width, height), Image.Resampling.BILINEAR
        ),
        dtype=np.float64,
    )
    lo, hi = float(np.nanmin(resized)), float(np.nanmax(resized))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 0:
        return np.zeros((height, width))
    return np.nan_to_num((resized - lo) / (hi - lo))


def overlay_heatmaps(
    images: np.ndarray,
    heatmaps: np.ndarray,
    path: str | Path,
    titles: Sequence[str] | None = None,
    alpha: float = 0.45,
) -> Path:
    """A grid of images, each with its explanation heat map overlaid in the jet colormap.

    Each heat map is resized to its image with bilinear interpolation and scaled to its
    own [0, 1] range before blending.

    Args:
        images: ``(n, H, W, 3)`` uint8 RGB images (``(n, H, W)`` grey images are accepted).
        heatmaps: ``(n, h, w)`` float relevance maps (any resolution).
        path: where to write the PNG.
        titles: one title per image (e.g. true / predicted class).
        alpha: opacity of the heat map.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: shapes that do not match the above or a wrong number of titles.
    """
    import matplotlib

    imgs = np.asarray(images)
    if imgs.ndim == 3:
        imgs = np.repeat(imgs[..., None], 3, axis=-1)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = np.repeat(imgs, 3, axis=-1)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.shape[0] == 0:
        raise ValueError(f"images have shape {np.shape(images)}; expected (n >= 1, H, W, 3) uint8")
    maps = np.asarray(heatmaps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] != imgs.shape[0]:
        raise ValueError(f"heatmaps have shape {maps.shape}; expected ({imgs.shape[0]}, h, w)")
    n, height, width, _ = imgs.shape
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles; expected {n}, one per image")
    if imgs.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(imgs)) <= 1.0 else 1.0
        imgs = np.clip(imgs.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    jet = matplotlib.colormaps["jet"]
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = _new_figure(3.0 * cols, 3.1 * rows)
    for idx in range(n):
        heat = jet(_upsample(maps[idx], height, width))[..., :3]
        blend = (1.0 - alpha) * imgs[idx].astype(np.float64) / 255.0 + alpha * heat
        ax = fig.add_subplot(rows, cols, idx + 1)
        ax.imshow(np.clip(blend, 0.0, 1.0), interpolation="bilinear")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[idx]), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
