"""What a researcher meets in the MLflow UI after `compare`: clean study charts, honest plot legends."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import new_mlflow_store
from matplotlib.figure import Figure

from evoprune_tf.studies.compare import compare

SEEDS = range(5)
STATISTICS = {"p_value", "statistic", "critical_difference", "n_groups", "n_seeds"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Experiment 'study': a GA and random search with 6-generation curves, two baselines with one generation."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    folder = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(folder)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("study", artifact_location=(folder / "artifacts").as_uri())
    rng = np.random.default_rng(0)
    for algorithm, generations in {"steady_state": 6, "random_search": 6, "magnitude": 1, "unpruned": 1}.items():
        for seed in SEEDS:
            run = client.create_run(experiment, tags={"evoprune.algorithm": algorithm, "evoprune.seed": str(seed)})
            now = int(time.time() * 1000)
            curve = np.maximum.accumulate(0.7 + rng.normal(0, 0.02, generations))
            metrics = [Metric("best", float(v), now, step) for step, v in enumerate(curve)]
            metrics.append(Metric("test_accuracy_mean", 0.8 + rng.normal(0, 0.01), now, 0))
            client.log_batch(run.info.run_id, metrics=metrics)
            client.set_terminated(run.info.run_id, "FINISHED")
    return uri


def test_compare_logs_no_statistic_into_the_study_experiment(study, tmp_path) -> None:
    from mlflow import MlflowClient

    result = compare(study, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path)
    client = MlflowClient(tracking_uri=study)
    experiment = client.get_experiment_by_name("study")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) == 20  # the study's runs only
    assert all(STATISTICS.isdisjoint(run.data.metrics) for run in runs)
    assert experiment.tags["evoprune.comparisons"] == "study-comparisons"

    comparisons = client.get_experiment_by_name("study-comparisons")
    assert comparisons.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(result.run_id)
    assert run.info.experiment_id == comparisons.experiment_id
    assert run.data.tags["evoprune.compare.experiment"] == "study" and "p_value" in run.data.metrics


def test_the_convergence_legend_holds_only_groups_with_a_curve(study, tmp_path, monkeypatch) -> None:
    saved: dict[str, Figure] = {}
    original = Figure.savefig

    def keep(self, path, *args, **kwargs):
        saved[str(path)] = self
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    result = compare(study, "study", group_by=["evoprune.algorithm"], out_dir=tmp_path, log_to_mlflow=False)
    (ax,) = saved[str(result.files["convergence"])].axes
    legend = sorted(text.get_text() for text in ax.get_legend().get_texts())
    assert legend == ["random_search (n=5)", "steady_state (n=5)"]
    assert len(ax.get_lines()) == 2
    title = ax.get_title()
    assert "not drawn (one generation, no curve)" in title and "magnitude" in title and "unpruned" in title
