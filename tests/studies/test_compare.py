"""`compare` over a temporary SQLite MLflow store holding synthetic study runs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import new_mlflow_store

from evoprune_tf.studies.compare import (
    ComparisonResult,
    compare,
    compare_main,
    format_markdown,
    metric_direction,
    read_runs,
)
from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult

SEEDS = range(8)
GENERATIONS = 12


def _log_run(client, experiment_id: str, tags: dict, final: dict, curve: np.ndarray | None, status="FINISHED") -> str:
    """One synthetic run: tags, final metrics, a per-generation ``best`` curve, then terminated."""
    from mlflow.entities import Metric

    run = client.create_run(experiment_id, tags=tags)
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in final.items()]
    if curve is not None:
        metrics += [Metric("best", float(v), now, step) for step, v in enumerate(curve)]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with experiment 'study' (3 groups x 8 seeds + noise runs) and 'unequal'.

    'planted' has test accuracy +0.05 over 'base' (plus noise), 'null' none; the seed
    effect is shared, as when every method of a seed sees the same split.
    """
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(folder)
    client = MlflowClient(tracking_uri=uri)
    rng = np.random.default_rng(42)
    study = client.create_experiment("study", artifact_location=(folder / "artifacts").as_uri())
    seed_effect = rng.normal(0.0, 0.03, len(SEEDS))
    shifts = {"base": 0.0, "planted": 0.05, "null": 0.0}
    active = {"base": 60.0, "planted": 35.0, "null": 50.0}
    for algorithm, shift in shifts.items():
        for seed in SEEDS:
            final = {
                "test_accuracy_mean": 0.8 + seed_effect[seed] + shift + rng.normal(0.0, 0.01),
                "active_percent": active[algorithm] + rng.normal(0.0, 2.0),
                "wall_seconds": 10.0 + rng.normal(0.0, 1.0),
            }
            if algorithm == "planted":
                final["hypervolume"] = 0.5 + rng.normal(0.0, 0.01)  # only one group is multi-objective
            curve = 0.6 + shift + 0.2 * (1 - np.exp(-np.arange(GENERATIONS) / 4)) + rng.normal(0, 0.005, GENERATIONS)
            tags = {
                "evoprune.algorithm": algorithm,
                "evoprune.encoding": "features",
                "evoprune.dataset": "synthetic",
                "evoprune.seed": str(seed),
            }
            _log_run(client, study, tags, final, np.maximum.accumulate(curve))
    # Runs that must not be read: a failed planted run with a duplicate seed and one still running.
    low = {"test_accuracy_mean": 0.1}
    _log_run(client, study, {"evoprune.algorithm": "planted", "evoprune.seed": "0"}, low, None, "FAILED")
    _log_run(client, study, {"evoprune.algorithm": "base", "evoprune.seed": "99"}, low, None, "RUNNING")

    unequal = client.create_experiment("unequal", artifact_location=(folder / "artifacts-u").as_uri())
    for algorithm, seeds in {"unpruned": range(6), "ga": (0, 1, 2, 5)}.items():
        for seed in seeds:
            tags = {"evoprune.algorithm": algorithm, "evoprune.seed": str(seed)}
            _log_run(client, unequal, tags, {"test_accuracy_mean": 0.8 + rng.normal(0, 0.01)}, None)
    return uri


def test_two_groups_find_the_planted_difference_and_log_a_run(store, tmp_path) -> None:
    from mlflow import MlflowClient

    result = compare(
        store, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path,
        filter_string="tags.\"evoprune.algorithm\" != 'null'",
    )
    assert isinstance(result, ComparisonResult) and isinstance(result.test, WilcoxonResult)
    assert result.groups == ["planted", "base"] and result.pair == ("planted", "base")
    assert result.seeds == list(SEEDS)
    assert result.test.p_value < 0.05
    assert result.test.a12 > 0.7 and result.test.magnitude == "large"
    assert result.test.median_difference == pytest.approx(0.05, abs=0.015)

    table = result.table.set_index("group")
    assert table.loc["planted", "n_runs"] == 8  # the FAILED planted run is not read
    gap = table.loc["planted", "test_accuracy_mean_mean"] - table.loc["base", "test_accuracy_mean_mean"]
    assert gap == pytest.approx(0.05, abs=0.015)
    assert np.isnan(table.loc["base", "hypervolume_mean"]) and table.loc["base", "hypervolume_n"] == 0
    assert "flops_mean" not in table  # no run logged it

    for key in ("markdown", "csv", "values", "convergence"):
        assert result.files[key].is_file(), key
    assert "cd_diagram" not in result.files  # two groups: no CD diagram
    text = result.files["markdown"].read_text()
    assert "Wilcoxon signed-rank" in text and f"p = {result.test.p_value:.4f}" in text
    assert "| planted | 8 |" in text

    client = MlflowClient(tracking_uri=store)
    run = client.get_run(result.run_id)
    assert run.data.tags["evoprune.kind"] == "comparison" and run.info.status == "FINISHED"
    assert run.data.metrics["p_value"] == pytest.approx(result.test.p_value)
    logged = {f.path for f in client.list_artifacts(result.run_id, "comparison")}
    assert {"comparison/comparison.md", "comparison/comparison.csv", "comparison/convergence.png"} <= logged

    # The comparison run just logged is not read back as a study run.
    again = compare(
        store, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path / "again", log_to_mlflow=False,
        filter_string="tags.\"evoprune.algorithm\" != 'null'",
    )
    assert again.run_id is None and again.run_ids == result.run_ids


def test_no_planted_difference_is_not_significant(store, tmp_path) -> None:
    result = compare(
        store, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path, log_to_mlflow=False,
        filter_string="tags.\"evoprune.algorithm\" != 'planted'",
    )
    assert set(result.groups) == {"null", "base"}
    assert result.test.p_value > 0.05
    assert "not significant" in format_markdown(result)


def test_three_groups_friedman_ranks_planted_first_with_real_plots(store, tmp_path) -> None:
    from test_stats import assert_real_plot

    result = compare(
        store, "study", group_by=["evoprune.algorithm", "evoprune.encoding"], out_dir=tmp_path, log_to_mlflow=False,
    )
    test = result.test
    assert isinstance(test, FriedmanResult)
    assert list(test.average_ranks)[0] == "planted/features"
    assert test.p_value < 0.05
    pairs = {frozenset((p.a, p.b)): p for p in test.pairwise}
    assert pairs[frozenset(("planted/features", "base/features"))].significant
    assert not pairs[frozenset(("null/features", "base/features"))].significant
    assert_real_plot(result.files["cd_diagram"])
    assert_real_plot(result.files["convergence"])
    text = format_markdown(result)
    assert "Friedman test" in text and "Holm p" in text and "Nemenyi critical difference" in text
    assert result.files["pairwise"].read_text().count("\n") == 1 + 3


def test_lower_is_better_metric_ranks_smallest_first(store, tmp_path) -> None:
    result = compare(
        store, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path, log_to_mlflow=False, metric="active_percent",
    )
    assert result.higher_is_better is False
    assert result.groups[0] == "planted" and list(result.test.average_ranks)[0] == "planted"


def test_unequal_seeds_name_the_missing_ones(store, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"group 'ga' lacks seeds \[3, 4\] that 'unpruned' has"):
        compare(store, "unequal", group_by=["evoprune.algorithm"], out_dir=tmp_path, log_to_mlflow=False)
    with pytest.warns(UserWarning, match="lacks seeds"):
        result = compare(
            store, "unequal", group_by=["evoprune.algorithm"], out_dir=tmp_path, log_to_mlflow=False,
            drop_incomplete=True,
        )
    assert result.seeds == [0, 1, 2, 5] and result.test.n == 4


def test_empty_selection_names_experiment_and_filter(store, tmp_path) -> None:
    flt = "tags.\"evoprune.dataset\" = 'nope'"
    with pytest.raises(ValueError, match=r"experiment 'study' match filter .*nope") as info:
        compare(store, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path, filter_string=flt)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="experiment 'absent' not found"):
        compare(store, "absent", group_by=["evoprune.algorithm"], out_dir=tmp_path)


def test_bad_arguments(store, tmp_path) -> None:
    with pytest.raises(ValueError, match="no known direction"):
        compare(store, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path, metric="mystery")
    with pytest.raises(ValueError, match="no selected run logged metric 'flops'"):
        compare(store, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path, metric="flops")
    with pytest.raises(ValueError, match="several runs with seed"):
        # Without the algorithm tag every group holds three runs per seed.
        compare(store, "study", group_by=["evoprune.encoding"], out_dir=tmp_path, log_to_mlflow=False)
    with pytest.raises(ValueError, match="group_by is empty"):
        compare(store, "study", group_by=[], out_dir=tmp_path)
    assert metric_direction("mystery", higher_is_better=False) is False


def test_read_runs_keeps_finished_runs_in_search_runs_layout(store) -> None:
    frame = read_runs(store, "study")
    assert len(frame) == 24 and set(frame["status"]) == {"FINISHED"}
    assert {"run_id", "metrics.test_accuracy_mean", "tags.evoprune.seed"} <= set(frame.columns)
    assert len(read_runs(store, "study", statuses=None)) == 26


def test_compare_main_cli(store, tmp_path, capsys) -> None:
    argv = [
        "--experiment", "study", "--group-by", "evoprune.algorithm", "--tracking-uri", store,
        "--out", str(tmp_path / "cli"), "--no-log", "--filter", "tags.\"evoprune.algorithm\" != 'null'",
    ]
    assert compare_main(argv) == 0
    out = capsys.readouterr().out
    assert "Wilcoxon signed-rank" in out and "planted" in out
    assert (tmp_path / "cli" / "comparison.md").is_file()
    assert compare_main([*argv[:-2], "--filter", "tags.\"evoprune.dataset\" = 'nope'"]) == 2
    assert "match filter" in capsys.readouterr().err
