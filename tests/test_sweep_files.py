"""The study files of docs/results/density-sweep.md are valid grids at equal k per cell, paired over seeds."""

import pathlib

import pytest

from evoprune_tf.studies.grid import load_grid

SWEEP = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "rps_density.toml"


def test_the_density_sweep_crosses_every_budget_with_every_method_over_paired_seeds(assets, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    cells = list(load_grid(SWEEP).cells)
    keys = {(c.config["encoding"]["active"], c.config["algorithm"]["name"], c.config["seed"]) for c in cells}
    budgets = {k for k, _, _ in keys}
    methods = {m for _, m, _ in keys}
    assert budgets == {0.01, 0.02, 0.05, 0.10, 0.25}
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


def _cells(assets, monkeypatch, name: str) -> list:
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    return list(load_grid(SWEEP.with_name(name)).cells)


def test_the_cross_validated_sweep_is_the_ants_vs_bees_sweep_with_a_5_fold_fitness(assets, monkeypatch):
    holdout = _cells(assets, monkeypatch, "hymenoptera_density.toml")
    cv = _cells(assets, monkeypatch, "hymenoptera_density_cv.toml")
    assert len(cv) == len(holdout) == 125
    assert {(c.config["objectives"]["resampling"], c.config["objectives"]["folds"]) for c in cv} == {("cv", 5)}
    assert {c.config["tracking"]["experiment"] for c in cv} == {"hymenoptera-density-cv"}
    same = [{k: v for k, v in c.config.items() if k not in ("objectives", "tracking", "grid")} for c in cv]
    assert same == [{k: v for k, v in c.config.items() if k not in ("objectives", "tracking", "grid")}
                    for c in holdout]


def test_the_fronts_and_seeded_studies_join_the_ants_vs_bees_sweeps_experiment(assets, monkeypatch):
    fronts = _cells(assets, monkeypatch, "hymenoptera_fronts.toml")
    assert [(c.config["algorithm"]["name"], c.config["seed"]) for c in fronts] == [("nsga2", s) for s in range(5)]
    assert {tuple(c.config["objectives"]["names"]) for c in fronts} == {("accuracy", "active_fraction")}
    assert {c.config["algorithm"]["evaluations"] for c in fronts} == {5 * 100}  # the GA's total over 5 budgets
    seeded = _cells(assets, monkeypatch, "hymenoptera_seeded.toml")
    assert {(c.config["encoding"]["active"], c.config["seed"]) for c in seeded} == {
        (k, s) for k in (0.01, 0.02, 0.05, 0.10, 0.25) for s in range(5)}
    assert {tuple(c.config["operators"]["seed_baselines"]) for c in seeded} == {("l1_selection",)}
    sweep = _cells(assets, monkeypatch, "hymenoptera_density.toml")
    assert {c.config["tracking"]["experiment"] for c in fronts + seeded + sweep} == {"hymenoptera-density"}
    assert {c.config["report"]["seeds"] for c in fronts + seeded + sweep} == {3}  # the same retrains on test


def test_the_neuron_sweep_prunes_the_hidden_units_at_every_budget_with_the_neuron_baselines(assets, monkeypatch):
    cells = _cells(assets, monkeypatch, "rps_neurons.toml")
    keys = {(c.config["encoding"]["active"], c.config["algorithm"]["name"], c.config["seed"]) for c in cells}
    assert len(keys) == len(cells) == 5 * 4 * 5
    assert {k for k, _, _ in keys} == {0.01, 0.02, 0.05, 0.10, 0.25}
    assert {m for _, m, _ in keys} == {"steady_state", "random_mask", "magnitude", "random_search"}
    assert {(c.config["encoding"]["name"], tuple(c.config["head"]["hidden"])) for c in cells} == {
        ("neuron_pruning", (512,))}


@pytest.mark.parametrize("dataset", ["hymenoptera", "rps"])
def test_the_whole_network_filter_study_pairs_each_baseline_with_the_knee_of_its_seed(dataset, assets, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    studies = SWEEP.parents[1] / "studies"
    dpes = list(load_grid(studies / f"filters_{dataset}_dpes.toml").cells)
    baselines = list(load_grid(studies / f"filters_{dataset}_baselines.toml").cells)
    assert [(c.config["algorithm"]["name"], c.config["seed"]) for c in dpes] == [("deep_pruning_es", s) for s in range(5)]
    assert {(c.config["algorithm"]["name"], c.config["seed"]) for c in baselines} == {
        (m, s) for m in ("random_filters", "l1_filters", "uniform_width", "bn_scale", "fpgm", "taylor")
        for s in range(5)}
    assert {c.config["algorithm"]["flops_of"] for c in baselines} == {"seed:deep_pruning_es"}
    for cell in dpes + baselines:  # one network, one experiment, the same final-model budget
        assert cell.config["encoding"] == {**cell.config["encoding"], "name": "filters", "blocks": "all"}
        assert (cell.config["backbone"]["name"], cell.config["backbone"]["options"]) == ("mobilenet", {"alpha": 0.25})
        assert cell.config["tracking"]["experiment"] == f"{dataset}-filters"
        assert (cell.config["report"]["epochs"], cell.config["report"]["seeds"]) == (5, 1)


def test_the_seeded_cv_study_joins_the_cv_sweeps_experiment_with_the_same_budgets(assets, monkeypatch):
    seeded = _cells(assets, monkeypatch, "hymenoptera_seeded_cv.toml")
    cv = _cells(assets, monkeypatch, "hymenoptera_density_cv.toml")
    assert {(c.config["encoding"]["active"], c.config["seed"]) for c in seeded} == {
        (c.config["encoding"]["active"], c.config["seed"]) for c in cv}
    for cell in seeded:
        assert cell.config["operators"]["seed_baselines"] == ["l1_selection"]
        assert (cell.config["objectives"]["resampling"], cell.config["objectives"]["folds"]) == ("cv", 5)
        assert cell.config["tracking"]["experiment"] == "hymenoptera-density-cv"


def test_the_paper_budget_run_searches_the_whole_network_of_the_filter_study_for_330_evaluations(assets, monkeypatch):
    from evoprune_tf.app.config import load_config

    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    config = load_config(SWEEP.parents[1] / "runs" / "filters_hymenoptera_paper_budget.toml")
    assert (config.algorithm.name, config.algorithm.population, config.algorithm.generations) == ("deep_pruning_es", 30, 11)
    assert (config.encoding.name, config.encoding.blocks, config.backbone.name) == ("filters", "all", "mobilenet")
    assert config.data.source == str(assets / "datasets" / "hymenoptera") and config.backbone.options == {"alpha": 0.25}
    assert (config.report.epochs, config.train.epochs) == (5, 1)  # the 5-seed study's fine-tune budget


def test_l1_filters_at_tascnet_flops_prunes_the_network_of_the_tascnet_run(assets, monkeypatch):
    from evoprune_tf.app.config import load_config

    monkeypatch.setenv("EVOPRUNE_ASSETS", str(assets))
    runs = SWEEP.parents[1] / "runs"
    tascnet = load_config(runs / "tascnet_hymenoptera.toml")
    l1 = load_config(runs / "l1_filters_at_tascnet_hymenoptera.toml")
    assert (tascnet.algorithm.name, l1.algorithm.name, l1.algorithm.flops_of) == ("tascnet", "l1_filters", "seed:tascnet")
    for part in ("data", "backbone", "tracking"):  # one network, one dataset, one experiment
        assert getattr(tascnet, part) == getattr(l1, part), part
    assert l1.report.epochs == tascnet.tascnet.final_epochs == 10
