"""Plots: each function draws a real PNG (content checked, not only its size) and rejects malformed input with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deap import tools

from evoprune_tf.plots import convergence_plot, mask_heatmap, overlay_heatmaps, pareto_plots

from conftest import assert_real_plot


def _is_png(path: Path) -> bool:
    """A real plot (raises with the reason otherwise): PNG, not blank, several colours."""
    assert_real_plot(path)
    return True


def _logbook(n: int = 6) -> tools.Logbook:
    logbook = tools.Logbook()
    for g in range(n):
        logbook.record(gen=g, nevals=8, evaluations=8 * (g + 1), best=0.5 + 0.05 * g, mean=0.4 + 0.04 * g,
                       min=0.2 + 0.02 * g, max=0.5 + 0.05 * g, std=0.1, best_active=1.0 - 0.1 * g,
                       mean_active=0.9 - 0.05 * g)
    return logbook


def test_convergence_plot(tmp_path):
    path = convergence_plot(_logbook(), tmp_path / "sub" / "convergence.png", title="demo")
    assert path == tmp_path / "sub" / "convergence.png" and _is_png(path)
    # a bare logbook (no evaluations, no active fractions) and a single generation still draw
    assert _is_png(convergence_plot([{"gen": 0, "best": 1.0, "mean": 0.5}], tmp_path / "one.png"))
    with pytest.raises(ValueError, match="logbook is empty"):
        convergence_plot([], tmp_path / "empty.png")


@pytest.mark.parametrize("k", [2, 3, 4])
def test_pareto_plots(tmp_path, k):
    rng = np.random.default_rng(k)
    points = rng.random((12, k))
    names = [f"objective {i}" for i in range(k)]
    path = pareto_plots(points, names, tmp_path / f"pareto{k}.png", knee_index=3, highlight=[0, 5])
    assert _is_png(path)
    mask = np.zeros(12, dtype=bool)
    mask[[1, 2]] = True
    assert _is_png(pareto_plots(points, names, tmp_path / f"mask{k}.png", highlight=mask))


def test_pareto_plots_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        pareto_plots(np.zeros(5), ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="expected 2 names"):
        pareto_plots(np.zeros((3, 2)), ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="knee_index=7"):
        pareto_plots(np.zeros((3, 2)), ["a", "b"], tmp_path / "x.png", knee_index=7)


def test_mask_heatmap(tmp_path):
    genomes = np.random.default_rng(0).integers(0, 2, size=(20, 150), dtype=np.int8)
    assert _is_png(mask_heatmap(genomes, tmp_path / "masks.png", title="population"))
    assert _is_png(mask_heatmap(genomes[:1].astype(bool), tmp_path / "single.png"))
    with pytest.raises(ValueError, match="expected a non-empty"):
        mask_heatmap(np.zeros(10), tmp_path / "x.png")


def test_overlay_heatmaps(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 48, 40, 3), dtype=np.uint8)
    heatmaps = rng.random((5, 6, 5))
    heatmaps[4] = 0.0  # a flat map must not divide by zero
    path = overlay_heatmaps(images, heatmaps, tmp_path / "overlay.png", titles=[f"img {i}" for i in range(5)])
    assert _is_png(path)
    grey = rng.random((2, 32, 32))  # float grey images in [0, 1] are accepted too
    assert _is_png(overlay_heatmaps(grey, rng.random((2, 4, 4)), tmp_path / "grey.png"))
    with pytest.raises(ValueError, match=r"expected \(5, h, w\)"):
        overlay_heatmaps(images, heatmaps[:3], tmp_path / "x.png")
    with pytest.raises(ValueError, match="expected 5, one per image"):
        overlay_heatmaps(images, heatmaps, tmp_path / "x.png", titles=["a"])


def test_the_convergence_plot_draws_the_curves_it_is_given(tmp_path):
    from PIL import Image

    flat = convergence_plot([{"gen": g, "best": 0.5, "mean": 0.5} for g in range(6)], tmp_path / "flat.png")
    rising = convergence_plot(_logbook(), tmp_path / "rising.png")
    with Image.open(flat) as a, Image.open(rising) as b:
        a_px, b_px = np.asarray(a.convert("L"), np.float32), np.asarray(b.convert("L"), np.float32)
    # different data must give a different picture (a plot that ignores its data would not)
    assert a_px.shape == b_px.shape and np.abs(a_px - b_px).mean() > 0.5
