"""Everything a run writes goes under its store's folder or a folder the user names (issue 15)."""

from __future__ import annotations

import io
import os
import tempfile

import mlflow
import pytest

from conftest import make_planted_features, new_mlflow_store
from evoprune_tf.app.config import check_output_locations, load_config, report_files, report_folder
from evoprune_tf.app.run import run


def _mo_config(uri: str = "", **sections):
    raw = {
        "name": "outputs-test", "seed": 2, "progress": False,
        "algorithm": {"name": "nsga2", "population": 6, "evaluations": 18},
        "objectives": {"names": ["accuracy", "active_fraction"]},
        "head": {"hidden": [8]}, "train": {"epochs": 8, "engine": "numpy", "learning_rate": 0.02},
        "report": {"seeds": 1, "explain": False},
        "tracking": {"enabled": bool(uri), "uri": uri, "experiment": "outputs-tests"},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return load_config(None, raw)


def _files(folder) -> set[str]:
    return {os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names}


def test_a_tracked_run_from_another_folder_writes_nothing_into_it(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    uri = new_mlflow_store(store)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data, _ = make_planted_features(seed=4, n_features=32)
    try:
        result = run(_mo_config(uri), features=data, out=io.StringIO())  # checkpoints on (the default)
    finally:
        mlflow.set_tracking_uri(None)
    assert os.listdir(cwd) == []
    reports = store / "reports" / result.run_id
    assert result.report["pareto"]["local_dir"] == str(reports)
    assert {"pareto/pareto_front.csv", "tradeoff_models/knee.keras", "pareto_report.json"} <= _files(reports)
    assert result.checkpoint is not None and result.checkpoint.is_relative_to(store / "checkpoints")


def test_report_dir_is_honoured(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    given = tmp_path / "my reports"
    data, _ = make_planted_features(seed=5, n_features=32)
    config = _mo_config(report={"dir": str(given)}, checkpoint={"enabled": False})
    result = run(config, features=data, out=io.StringIO())
    assert os.listdir(cwd) == []
    assert result.report["pareto"]["local_dir"] == str(given)
    assert {"pareto/pareto_front.csv", "tradeoff_models/heavy.keras", "pareto_report.json"} <= _files(given)


def test_report_folder_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sqlite = f"sqlite:///{tmp_path}/db/mlflow.db"
    assert report_folder(_mo_config(sqlite), "abc") == tmp_path / "db" / "reports" / "abc"
    named = report_folder(_mo_config(sqlite), None)
    assert named.parent == tmp_path / "db" / "reports" and named.name.startswith("outputs-test-")
    assert report_folder(_mo_config(sqlite, report={"dir": "out/r"}), "abc") == tmp_path / "out" / "r"
    assert report_folder(_mo_config(sqlite), "abc", uri=f"sqlite:///{tmp_path}/other.db") == tmp_path / "reports" / "abc"
    # a server store has no local folder: a temporary one, deleted once the block (the logging) ends
    server = _mo_config("http://127.0.0.1:9")
    with report_files(server, "abc") as folder:
        assert folder.is_dir() and str(folder.parent) == tempfile.gettempdir()
        (folder / "file.txt").write_text("logged")
    assert not folder.exists()
    # ... unless report.dir names one, or nothing logged the files (tracking off)
    kept = tmp_path / "kept"
    with report_files(_mo_config("http://127.0.0.1:9", report={"dir": str(kept)}), "abc") as folder:
        folder.mkdir()
    assert kept.is_dir()
    untracked = load_config(None, {"tracking": {"enabled": False, "uri": "http://127.0.0.1:9"}})
    with report_files(untracked, None) as folder:
        pass
    assert folder.is_dir()
    folder.rmdir()
    assert os.listdir(tmp_path) == ["kept"]  # nothing else in the current folder


def test_an_unwritable_report_dir_fails_before_the_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = _mo_config(report={"dir": str(blocker / "reports")}, checkpoint={"enabled": False})
    with pytest.raises(ValueError, match=r"^report\.dir .*a-file/reports is not writable") as info:
        check_output_locations(config, features_cached=True)
    assert "\n" not in str(info.value)
    check_output_locations(_mo_config(report={"dir": str(tmp_path / "ok")}, checkpoint={"enabled": False}),
                           features_cached=True)
    assert (tmp_path / "ok").is_dir()
