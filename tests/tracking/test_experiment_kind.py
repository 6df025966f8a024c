"""Experiments are created as model-training experiments, so MLflow 3's UI opens on the runs table."""

from __future__ import annotations

from conftest import new_mlflow_store
from mlflow import MlflowClient

from evoprune_tf.studies.grid import _ensure_experiment
from evoprune_tf.tracking import MLflowTracker

KIND = "mlflow.experimentKind"


def _open_run(uri: str, experiment: str) -> MLflowTracker:
    tracker = MLflowTracker(uri=uri, experiment=experiment, run_name="r")
    tracker.on_start()
    tracker.finish()
    return tracker


def test_a_new_experiment_is_a_training_experiment(tmp_path) -> None:
    uri = new_mlflow_store(tmp_path)
    tracker = _open_run(uri, "fresh")
    experiment = MlflowClient(tracking_uri=uri).get_experiment(tracker.experiment_id)
    assert experiment.name == "fresh" and experiment.tags[KIND] == "custom_model_development"


def test_an_old_experiment_without_a_kind_gets_it_on_next_use_and_a_chosen_kind_stays(tmp_path) -> None:
    uri = new_mlflow_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("old", artifact_location=(tmp_path / "a").as_uri())
    assert KIND not in client.get_experiment(old).tags  # what MLflow's UI takes for GenAI
    assert _open_run(uri, "old").experiment_id == old
    assert client.get_experiment(old).tags[KIND] == "custom_model_development"

    chosen = client.create_experiment("chosen", artifact_location=(tmp_path / "b").as_uri(),
                                      tags={KIND: "genai_development"})
    _open_run(uri, "chosen")
    assert client.get_experiment(chosen).tags[KIND] == "genai_development"


def test_a_grid_creates_and_marks_its_experiment(tmp_path) -> None:
    uri = new_mlflow_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    _ensure_experiment(uri, "grid-new")
    assert client.get_experiment_by_name("grid-new").tags[KIND] == "custom_model_development"
    old = client.create_experiment("grid-old", artifact_location=(tmp_path / "a").as_uri())
    _ensure_experiment(uri, "grid-old")
    assert client.get_experiment(old).tags[KIND] == "custom_model_development"


def test_printed_links_open_mlflow_3_17_in_its_model_training_view() -> None:
    from evoprune_tf.tracking.experiments import ui_link

    assert ui_link("http://127.0.0.1:5000/") == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    assert ui_link("http://h:5000", "3", "abc") == "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
