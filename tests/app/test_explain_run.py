"""`evoprune explain RUN_ID`: explanations for a finished run, rebuilt from MLflow alone."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from evoprune_tf.app.config import config_from_dict, load_config
from evoprune_tf.session import flatten
from evoprune_tf.app.explain import _config_from_params, explain_run, run_config
from evoprune_tf.tracking.store import run_genomes
from evoprune_tf.app.run import run
from conftest import assert_real_plot, new_mlflow_store
from evoprune_tf.encodings import pack_genome




def _config(uri: str, **algorithm):
    """A tiny image run: built-in stripes, MobileNet alpha 0.25 with random weights at 64 px."""
    return load_config(None, {
        "name": "explain-test", "seed": 0, "progress": False,
        "data": {"source": "builtin:synthetic", "image_size": 64},
        "backbone": {"name": "mobilenet", "weights": "none", "options": {"alpha": 0.25}},
        "head": {"hidden": [16]}, "train": {"epochs": 5, "engine": "numpy", "learning_rate": 0.01},
        "algorithm": {"name": "steady_state", "population": 6, "evaluations": 12, **algorithm},
        "objectives": {"names": ["accuracy", "active_fraction"]} if algorithm.get("name") == "nsga2" else {},
        "report": {"seeds": 1, "explain": False},
        "tracking": {"uri": uri, "experiment": "explain-tests"}, "checkpoint": {"enabled": False},
    })


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished single-objective run on builtin:synthetic images (no features= given)."""
    folder = tmp_path_factory.mktemp("explain-store")
    uri = new_mlflow_store(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = run(_config(uri), out=io.StringIO())
    mlflow.set_tracking_uri(None)
    return result, uri, folder


def _artifacts(client, run_id, path=None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def test_the_run_is_rebuilt_from_its_logged_config_and_genomes(finished):
    result, uri, _ = finished
    assert run_config(result.run_id, uri).to_dict() == result.config.to_dict()
    genomes = run_genomes(result.run_id[:10], uri)  # a prefix is enough
    np.testing.assert_array_equal(genomes["genomes"][0], result.best)


def test_explain_run_writes_overlays_per_class_and_logs_them_to_the_run(finished):
    result, uri, folder = finished
    paths = explain_run(result.run_id, per_class=2, uri=uri)
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == 3  # one figure per class of the stripes
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0
        assert path.parent == folder / "reports" / result.run_id / "explanations" / "best"
    assert paths[-1].name == "feature_influence.csv"
    for png in pngs:
        assert_real_plot(png)
    rows = list(csv.DictReader(io.StringIO(paths[-1].read_text())))
    active = set(np.flatnonzero(result.best).tolist())
    assert len(rows) == min(20, len(active))  # the 20 most influential selected features, ranked
    assert {int(r["feature"]) for r in rows} <= active
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    drops = [float(r["val_accuracy_drop"]) for r in rows]
    assert drops == sorted(drops, reverse=True)  # most influential first
    found = _artifacts(MlflowClient(tracking_uri=uri), result.run_id, "explanations")
    assert {f"explanations/best/{p.name}" for p in paths} <= found
    assert "explanations/best/genome.txt" in found
    logged = mlflow.artifacts.load_text(f"{MlflowClient(tracking_uri=uri).get_run(result.run_id).info.artifact_uri}"
                                        "/explanations/best/genome.txt")
    assert pack_genome(result.best) in logged


def test_the_cli_explains_a_run_and_rejects_unknown_ones(finished, monkeypatch, capsys):
    from evoprune_tf.app.cli import main

    result, uri, _ = finished
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["explain", result.run_id[:8], "--per-class", "1"]) == 0
    printed = capsys.readouterr().out.split()
    assert sum(line.endswith(".png") for line in printed) == 3
    assert main(["explain", "0" * 32]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="model="):
        explain_run(result.run_id, uri=uri, model="median")


def _error_line(capsys) -> str:
    """The one ``error:`` line on stderr, last (MLflow's download progress bars may precede it)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


def test_explain_model_from_the_cli_single_objective_runs_have_only_best(finished, monkeypatch, capsys):
    from evoprune_tf.app.cli import main

    result, uri, _ = finished
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for model in ("knee", "heavy", "light"):
        assert main(["explain", result.run_id[:8], "--model", model]) == 2
        line = _error_line(capsys)
        assert f"model='{model}'" in line and "single-objective" in line and "expected 'best'" in line
    assert main(["explain", result.run_id[:8], "--model", "median"]) == 2
    assert _error_line(capsys) == "error: model='median'; expected one of best, heavy, knee, light"


def test_trade_off_models_of_a_multi_objective_run_from_the_cli(tmp_path, monkeypatch, capsys):
    from evoprune_tf.app.cli import main

    monkeypatch.chdir(tmp_path)
    uri = new_mlflow_store(tmp_path)
    result = run(_config(uri, name="nsga2", population=8, evaluations=16), out=io.StringIO())
    mlflow.set_tracking_uri(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for model in ("knee", "light"):
        assert main(["explain", result.run_id, "--model", model, "--per-class", "1"]) == 0
        printed = [Path(line) for line in capsys.readouterr().out.split()]
        assert sum(p.suffix == ".png" for p in printed) == 3
        assert all(p.parent.name == model for p in printed)
        genome = (printed[0].parent / "genome.txt").read_text()
        assert genome.startswith(f"{model} genome")
    found = _artifacts(MlflowClient(tracking_uri=uri), result.run_id, "explanations")
    assert any(p.startswith("explanations/knee/") for p in found)
    assert any(p.startswith("explanations/light/") for p in found)
    assert not any(p.startswith("explanations/heavy/") for p in found)


def test_filter_pruning_runs_are_refused_in_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    """A DeepPruningES run (its config.json alone: nothing else is read) is refused before data or genomes."""
    import json

    from evoprune_tf.app.cli import main

    uri = new_mlflow_store(tmp_path)
    config = load_config(None, {"algorithm": {"name": "deep_pruning_es"}, "encoding": {"name": "filters"},
                                "objectives": {"names": ["error", "flops"]}})
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("dpes")).info.run_id
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    client.log_artifact(run_id, str(tmp_path / "config.json"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for model in ("best", "knee"):
        assert main(["explain", run_id, "--model", model]) == 2
        line = _error_line(capsys)
        assert "deep_pruning_es run" in line and "expected a head-pruning run" in line


def test_params_are_a_fallback_for_runs_without_config_json():
    config = load_config(None, {
        "data": {"source": "builtin:synthetic", "image_size": 64, "name": "stripes"},
        "backbone": {"name": "mobilenet", "weights": "none", "options": {"alpha": 0.25}},
        "head": {"hidden": [32, 16]}, "algorithm": {"name": "nsga2"},
        "objectives": {"names": ["accuracy", "active_fraction"]},
    })
    rebuilt = config_from_dict(_config_from_params(flatten(config)))
    assert rebuilt.to_dict() == config.to_dict()
