"""The density sweep of docs/results/density-sweep.md is a valid grid at equal k per cell."""

import pathlib

from evoprune_tf.studies.grid import load_grid

SWEEP = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "rps_density.toml"


def test_the_density_sweep_crosses_every_budget_with_every_method_over_paired_seeds(assets, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    cells = list(load_grid(SWEEP).cells)
    keys = {(c.config["encoding"]["active"], c.config["algorithm"]["name"], c.config["seed"]) for c in cells}
    budgets = {k for k, _, _ in keys}
    methods = {m for _, m, _ in keys}
    assert budgets == {0.01, 0.02, 0.05}  # at most 5% active: where selection should matter
    assert {"steady_state", "random_mask", "l1_selection"} <= methods
    assert len(keys) == len(cells) == len(budgets) * len(methods) * 5  # every (k, method) on seeds 0-4
    assert {s for _, _, s in keys} == {0, 1, 2, 3, 4}


def test_the_ants_vs_bees_sweep_crosses_every_budget_of_the_issue_with_the_ga_and_four_baselines(assets, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    cells = list(load_grid(SWEEP.with_name("hymenoptera_density.toml")).cells)
    keys = {(c.config["encoding"]["active"], c.config["algorithm"]["name"], c.config["seed"]) for c in cells}
    assert {k for k, _, _ in keys} == {0.01, 0.02, 0.05, 0.10, 0.25}
    assert {m for _, m, _ in keys} == {"steady_state", "random_mask", "l1_selection", "magnitude", "random_search"}
    assert len(keys) == len(cells) == 5 * 5 * 5
    assert all(c.config["data"]["source"].endswith("datasets/hymenoptera") for c in cells)
