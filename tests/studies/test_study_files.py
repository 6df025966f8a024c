"""The study grids in experiments/studies/ are valid grids over the shared assets."""

import pathlib

import pytest

from evoprune_tf.studies.grid import load_grid

STUDIES = sorted((pathlib.Path(__file__).resolve().parents[2] / "experiments" / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_study_grid_loads_and_has_paired_seeds(path, assets, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    grid = load_grid(path)
    cells = list(grid.cells)
    seeds = {c.config["seed"] for c in cells}
    assert len(cells) >= 5 and seeds == {0, 1, 2, 3, 4}  # e.g. one method's runs, before its baselines
