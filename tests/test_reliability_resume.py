"""Issue 15, items 1 and 3: exact resume whether or not Keras was loaded, and resume edge cases."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store
from helpers_runs import Interrupt

import evoprune_tf.app.run as run_module
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import config_from_dict
from evoprune_tf.search.checkpoint import load_checkpoint

# Run until the checkpoint of generation 2, then die by SIGKILL. argv: spec.json, "keras" | "plain".
KILLED = textwrap.dedent('''
    import json, os, signal, sys
    if sys.argv[2] == "keras":
        import keras  # as a first run's feature extraction does
    import numpy as np
    import evoprune_tf.app.run as run_module
    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.features.splits import FeatureSplits
    from evoprune_tf.search.callbacks import Callback

    class Die(Callback):
        def on_generation(self, state):
            if state.generation == 2:  # after the checkpoint of generation 2
                os.kill(os.getpid(), signal.SIGKILL)

    spec = json.load(open(sys.argv[1]))
    with np.load(spec["features"]) as z:
        data = FeatureSplits(*(z[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")),
                             class_names=("c0", "c1", "c2"), name="planted")
    run_module._report = lambda *args, **kwargs: ({}, None)
    run_module.run(config_from_dict(spec["config"]), features=data, callbacks=[Die()], out=sys.stderr)
''')

# Resume in a fresh interpreter; "lazy": Keras is imported only once the loop starts (after the
# RNG states were restored), "keras": before the resume. Prints the result as JSON.
RESUMED = textwrap.dedent('''
    import json, sys
    if sys.argv[3] == "keras":
        import keras
    import numpy as np
    import evoprune_tf.app.run as run_module
    from evoprune_tf.features.splits import FeatureSplits
    from evoprune_tf.search.callbacks import Callback

    class LazyKeras(Callback):
        def on_start(self, state):
            import keras  # noqa: F401 - what a lazily imported Keras engine or report does

    spec = json.load(open(sys.argv[1]))
    with np.load(spec["features"]) as z:
        data = FeatureSplits(*(z[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")),
                             class_names=("c0", "c1", "c2"), name="planted")
    run_module._report = lambda *args, **kwargs: ({}, None)
    result = run_module.resume(sys.argv[2], features=data, callbacks=[LazyKeras()], out=sys.stderr)
    print(json.dumps({"logbook": [{k: float(v) for k, v in r.items()} for r in result.logbook],
                      "population": [p.tolist() for p in result.population]}))
''')


def _config(tmp_path: Path, folder: str, **extra) -> dict:
    config = {
        "seed": 5, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 3, "engine": "numpy"},
        "algorithm": {"name": "steady_state", "population": 8, "evaluations": 56},
        "tracking": {"enabled": False}, "checkpoint": {"dir": str(tmp_path / folder)},
        "report": {"seeds": 1, "export_model": False},
    }
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.fixture
def no_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "_report", lambda *args, **kwargs: ({}, None))


@pytest.mark.parametrize("at_checkpoint, at_resume", [("keras", "lazy"), ("plain", "keras")])
def test_resume_is_exact_whether_keras_was_loaded_at_checkpoint_time_or_not(
    tmp_path: Path, at_checkpoint: str, at_resume: str, no_report
) -> None:
    import keras  # noqa: F401 - the in-process reference runs with Keras loaded, as a first run does

    data, _ = make_planted_features(seed=1)
    features = tmp_path / "features.npz"
    np.savez(features, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
             x_test=data.x_test, y_test=data.y_test)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"features": str(features), "config": _config(tmp_path, "killed")}))
    (tmp_path / "killed.py").write_text(KILLED)
    (tmp_path / "resumed.py").write_text(RESUMED)
    env = {**os.environ, "PYTHONPATH": str(Path(run_module.__file__).parents[2])}
    job = subprocess.run([sys.executable, str(tmp_path / "killed.py"), str(spec), at_checkpoint], cwd=tmp_path,
                         capture_output=True, timeout=180, env=env)
    assert job.returncode == -signal.SIGKILL, job.stderr.decode()[-2000:]
    path = next((tmp_path / "killed").glob("*/checkpoint.npz"))
    saved = load_checkpoint(path)
    assert saved.state.generation == 2 and saved.keras_loaded == (at_checkpoint == "keras")

    done = subprocess.run([sys.executable, str(tmp_path / "resumed.py"), str(spec), str(path), at_resume],
                          cwd=tmp_path, capture_output=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    resumed = json.loads(done.stdout.decode().strip().splitlines()[-1])
    reference = run_module.run(config_from_dict(_config(tmp_path, "reference")), features=data, out=io.StringIO())
    assert resumed["logbook"] == [{k: float(v) for k, v in r.items()} for r in reference.logbook]
    assert resumed["population"] == [p.tolist() for p in reference.population]


# ------------------------------------------------------------------ tracked resumes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return new_mlflow_store(tmp_path_factory.mktemp("store"))


def _tracked(tmp_path: Path, store: str, experiment: str, **extra) -> dict:
    return _config(tmp_path, "ckpt", tracking={"enabled": True, "uri": store, "experiment": experiment}, **extra)


def test_resuming_a_finished_run_says_there_is_nothing_to_resume(tmp_path, store, no_report) -> None:
    data, _ = make_planted_features(seed=2)
    result = run_module.run(config_from_dict(_tracked(tmp_path, store, "finished")), features=data, out=io.StringIO())
    with pytest.raises(ValueError, match=rf"MLflow run {result.run_id} is FINISHED: nothing to resume"):
        run_module.resume(result.checkpoint, features=data, out=io.StringIO())


def test_a_stale_checkpoint_is_refused_and_replayed_generations_are_not_logged_twice(tmp_path, store, no_report) -> None:
    from mlflow import MlflowClient

    data, _ = make_planted_features(seed=3)
    config = config_from_dict(_tracked(tmp_path, store, "stale", checkpoint={"every": 2}))
    with pytest.raises(RuntimeError):  # checkpoint at 2, generation 3 logged, then a crash
        run_module.run(config, features=data, out=io.StringIO(), callbacks=[Interrupt(3, RuntimeError("crash"))])
    path = next((tmp_path / "ckpt").glob("*/checkpoint.npz"))
    stale = tmp_path / "stale-copy.npz"
    shutil.copy(path, stale)
    run_id = load_checkpoint(path).run_id
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "FAILED"
    with pytest.raises(KeyboardInterrupt):  # replays 3 (not logged again), stops at 4 with a checkpoint of 4
        run_module.resume(path, features=data, out=io.StringIO(), callbacks=[Interrupt(4, KeyboardInterrupt())])
    steps = sorted(m.step for m in client.get_metric_history(run_id, "best"))
    assert steps == [0, 1, 2, 3, 4]  # each once
    assert client.get_run(run_id).data.tags["evoprune.checkpoint_generation"] == "4"
    with pytest.raises(ValueError, match=r"checkpoint of generation 2 is stale: .* already reached generation 4"):
        run_module.resume(stale, features=data, out=io.StringIO())
    assert client.get_run(run_id).info.status == "KILLED"  # the refused resume changed nothing


def test_resuming_into_another_store_names_the_store_the_run_lives_in(tmp_path, store, no_report) -> None:
    data, _ = make_planted_features(seed=2)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(_tracked(tmp_path, store, "elsewhere")), features=data, out=io.StringIO(),
                       callbacks=[Interrupt(1, KeyboardInterrupt())])
    path = next((tmp_path / "ckpt").glob("*/checkpoint.npz"))
    other = new_mlflow_store(tmp_path)
    config = config_from_dict(_tracked(tmp_path, other, "elsewhere"))
    with pytest.raises(ValueError, match=rf"is not in the store {other}; it lives in {store}"):
        run_module.resume(path, config=config, features=data, out=io.StringIO())


def test_evoprune_resume_run_id_works_from_another_folder(tmp_path, store, monkeypatch, capsys) -> None:
    from mlflow import MlflowClient

    data, _ = make_planted_features(seed=4)
    raw = _tracked(tmp_path, store, "anywhere")
    del raw["checkpoint"]  # the default: next to the store, not in ./mlruns of the current folder
    monkeypatch.setattr(run_module, "_report", lambda *args, **kwargs: ({}, None))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(raw), features=data, out=io.StringIO(),
                       callbacks=[Interrupt(2, KeyboardInterrupt())])
    store_folder = Path(store[len("sqlite:///"):]).parent
    [path] = list((store_folder / "checkpoints").glob("*/checkpoint.npz"))
    run_id = load_checkpoint(path).run_id
    assert path.parent.name == run_id and not (tmp_path / "mlruns").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setattr(run_module, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(run_module, "_check_inputs", lambda config: None)
    (store_folder / "checkpoints" / run_id).rename(store_folder / "moved")  # found through the run's tag
    client = MlflowClient(store)
    client.set_tag(run_id, "evoprune.checkpoint", str(store_folder / "moved" / "checkpoint.npz"))
    assert cli_main(["resume", run_id[:10], "--no-progress"]) == 0
    capsys.readouterr()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not (elsewhere / "mlruns").exists()


def test_ep_resume_takes_a_run_id_like_the_cli(tmp_path, store, monkeypatch) -> None:
    """`evoprune_tf.resume(RUN_ID)` finds the checkpoint as `evoprune resume RUN_ID` does, from any folder."""
    from mlflow import MlflowClient

    import evoprune_tf as ep

    data, _ = make_planted_features(seed=4)
    raw = _tracked(tmp_path, store, "python-resume")
    del raw["checkpoint"]  # the default: next to the store
    monkeypatch.setattr(run_module, "_report", lambda *args, **kwargs: ({}, None))
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(raw), features=data, out=io.StringIO(),
                       callbacks=[Interrupt(2, KeyboardInterrupt())])
    client = MlflowClient(store)
    [killed] = client.search_runs([client.get_experiment_by_name("python-resume").experiment_id])
    run_id = killed.info.run_id
    assert killed.info.status == "KILLED"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    with pytest.raises(FileNotFoundError, match="no checkpoint file, folder or run id 'ffffffff'"):
        ep.resume("ffffffff", features=data, out=io.StringIO())
    result = ep.resume(run_id[:10], features=data, out=io.StringIO())
    assert result.run_id == run_id
    assert [r["gen"] for r in result.logbook][:3] == [0, 1, 2] and len(result.logbook) > 3
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not (elsewhere / "mlruns").exists()
