"""Crash safety: SIGKILL, Ctrl-C or an exception mid-run loses nothing, and resume is exact."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store
from helpers_runs import Interrupt

import evoprune_tf.app.run as run_module
import evoprune_tf.methods.head.run as head_run
from evoprune_tf.search.checkpoint import load_checkpoint, read_checkpoint_header
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import config_from_dict

# A paced run in a fresh interpreter, to be killed: features from an .npz, config from JSON.
JOB = textwrap.dedent('''
    import json, sys, time
    import numpy as np
    import evoprune_tf.app.run as run_module
    from evoprune_tf.search.callbacks import Callback
    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.features.splits import FeatureSplits

    class Pace(Callback):
        """Slows the run down so the test can kill it in the middle (changes no result)."""
        def on_generation(self, state):
            time.sleep(float(spec["pace"]))

    spec = json.load(open(sys.argv[1]))
    with np.load(spec["features"]) as z:
        data = FeatureSplits(z["x_train"], z["y_train"], z["x_val"], z["y_val"], z["x_test"], z["y_test"],
                             class_names=tuple(str(c) for c in z["class_names"]), name="planted")
    import evoprune_tf.methods.head.run as head_run
    head_run._report = lambda *args, **kwargs: ({}, None)
    print("started", flush=True)
    run_module.run(config_from_dict(spec["config"]), features=data, callbacks=[Pace()], out=sys.stderr)
''')

MO = {"names": ["accuracy", "active_fraction"]}


def _config_dict(tmp_path: Path, name: str, folder: str, **extra) -> dict:
    """A short run on the NumPy engine (the same maths; resume does not depend on the engine,
    and the killed job then never imports TensorFlow). One interrupted run checks the Keras engine."""
    config = {
        "seed": 5, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 3, "engine": "numpy"},
        "algorithm": {"name": name, "population": 8, "evaluations": 80, "generations": 6},
        "tracking": {"enabled": False}, "checkpoint": {"dir": str(tmp_path / folder)},
        "report": {"seeds": 1, "export_model": False},
    }
    if name in ("nsga2", "nsga3"):
        config["objectives"] = MO
    if name == "mu_plus_lambda":
        config["algorithm"].update(cxpb=0.5, mutpb=0.5)
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def _summary(result) -> dict:
    return {
        "logbook": [dict(r) for r in result.logbook],
        "population": [p.tolist() for p in result.population],
        "fitness": [p.fitness.values for p in result.population],
        "halloffame": [(h.tolist(), h.fitness.values) for h in result.halloffame],
    }


@pytest.fixture
def no_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final report is not under test here (and the MO one builds Keras models)."""
    monkeypatch.setattr(head_run, "_report", lambda *args, **kwargs: ({}, None))


def _only_checkpoint(folder: Path) -> Path:
    found = list(folder.glob("*/checkpoint.npz"))
    assert len(found) == 1, found
    return found[0]


def _wait_for_generation(job: subprocess.Popen, folder: Path, generation: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job.poll() is None, f"the run ended before generation {generation}: {job.stderr.read().decode()[-3000:]}"
        for path in folder.glob("*/checkpoint.npz"):
            header = read_checkpoint_header(path)  # atomic writes: never a torn file
            if header["generation"] >= generation:
                return header
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of generation {generation} within {timeout} s")


@pytest.mark.parametrize("algorithm", ["steady_state", "nsga2"])
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, algorithm, no_report) -> None:
    data, _ = make_planted_features()
    features = tmp_path / "features.npz"
    np.savez(features, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
             x_test=data.x_test, y_test=data.y_test, class_names=np.asarray(data.class_names))
    (tmp_path / "job.py").write_text(JOB)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"features": str(features), "pace": 0.3,
                                "config": _config_dict(tmp_path, algorithm, "killed")}))
    job = subprocess.Popen([sys.executable, str(tmp_path / "job.py"), str(spec)], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        header = _wait_for_generation(job, tmp_path / "killed", 2)
        os.kill(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            job.kill()
        job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    path = _only_checkpoint(tmp_path / "killed")
    saved = load_checkpoint(path)
    assert 2 <= saved.state.generation < 9 and saved.state.evaluations < 80  # killed mid-run
    assert saved.state.generation >= header["generation"]

    resumed = run_module.resume(path, features=data, out=io.StringIO())
    reference = run_module.run(config_from_dict(_config_dict(tmp_path, algorithm, "reference")), features=data,
                               out=io.StringIO())
    assert _summary(resumed) == _summary(reference)
    assert resumed.logbook[-1]["evaluations"] == 80
    # The fitness cache came back: the resumed run trained exactly what was still missing.
    assert resumed.evaluator.cache == reference.evaluator.cache
    assert resumed.evaluator.n_trained == reference.evaluator.n_trained
    final = load_checkpoint(path)  # the resumed run kept writing the same checkpoint
    assert final.state.evaluations == 80 and [dict(r) for r in final.state.logbook] == _summary(reference)["logbook"]


@pytest.mark.parametrize("algorithm, engine", [("steady_state", "keras"), ("nsga2", "numpy"),
                                               ("ea_simple", "numpy"), ("mu_plus_lambda", "numpy")])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, algorithm, engine, no_report) -> None:
    data, _ = make_planted_features(seed=1)
    out = io.StringIO()
    train = {"engine": engine}
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(_config_dict(tmp_path, algorithm, "stopped", train=train)), features=data,
                       out=out, callbacks=[Interrupt(3, KeyboardInterrupt())])
    path = _only_checkpoint(tmp_path / "stopped")
    assert f"Resume with: evoprune resume {path}" in out.getvalue()
    assert load_checkpoint(path).state.generation == 3
    resumed = run_module.resume(path, features=data, out=io.StringIO())
    reference = run_module.run(config_from_dict(_config_dict(tmp_path, algorithm, "reference", train=train)),
                               features=data, out=io.StringIO())
    assert _summary(resumed) == _summary(reference)
    assert len(resumed.logbook) > 4


def test_resume_from_an_older_checkpoint_replays_the_lost_generations_exactly(tmp_path, no_report) -> None:
    data, _ = make_planted_features(seed=1)
    config = _config_dict(tmp_path, "ea_simple", "sparse", checkpoint={"every": 2})
    with pytest.raises(RuntimeError):
        run_module.run(config_from_dict(config), features=data, out=io.StringIO(),
                       callbacks=[Interrupt(3, RuntimeError("boom"))])
    path = _only_checkpoint(tmp_path / "sparse")
    assert load_checkpoint(path).state.generation == 2  # generation 3 was lost with the crash
    resumed = run_module.resume(path, features=data, out=io.StringIO())
    reference = run_module.run(config_from_dict(_config_dict(tmp_path, "ea_simple", "reference")), features=data,
                               out=io.StringIO())
    assert _summary(resumed) == _summary(reference)


def test_a_run_that_stopped_early_and_died_in_its_report_resumes_to_the_same_stop(tmp_path, monkeypatch) -> None:
    data, _ = make_planted_features()
    config = _config_dict(tmp_path, "steady_state", "early", algorithm={"evaluations": 400, "early_stop": 2})
    reference = run_module.run(config_from_dict({**config, "checkpoint": {"dir": str(tmp_path / "ref")}}),
                               features=data, out=io.StringIO())
    assert reference.logbook[-1]["evaluations"] < 400  # it did stop early

    def killed_in_report(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(head_run, "_report", killed_in_report)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(config), features=data, out=out)
    monkeypatch.undo()
    path = _only_checkpoint(tmp_path / "early")
    assert f"Report stopped (KeyboardInterrupt). Resume with: evoprune resume {path}" in out.getvalue()
    resumed = run_module.resume(path, features=data, out=io.StringIO())
    assert _summary(resumed) == _summary(reference)
    assert resumed.report["pruned"] == reference.report["pruned"]


# ------------------------------------------------------------------ with MLflow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating one takes seconds)."""
    return new_mlflow_store(tmp_path_factory.mktemp('mlflow'))


def _tracked(tmp_path: Path, store: str, experiment: str) -> dict:
    return _config_dict(tmp_path, "steady_state", "ckpt", tracking={"enabled": True, "uri": store, "experiment": experiment},
                        algorithm={"evaluations": 48})


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_ctrl_c_marks_the_run_killed_and_evoprune_resume_continues_the_same_mlflow_run(
    tmp_path, store, monkeypatch, capsys
) -> None:
    from mlflow import MlflowClient

    data, _ = make_planted_features(seed=2)
    config = config_from_dict(_tracked(tmp_path, store, "resume-killed"))
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config, features=data, out=out, callbacks=[Interrupt(2, KeyboardInterrupt())])
    path = _only_checkpoint(tmp_path / "ckpt")
    assert f"Resume with: evoprune resume {path}" in out.getvalue()
    saved = load_checkpoint(path)
    run_id = saved.run_id
    assert run_id and path.parent.name == run_id and saved.state.generation == 2
    client = MlflowClient(store)
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["evoprune.error"].startswith("KeyboardInterrupt")
    assert "logbook.csv" in _artifacts(client, run_id)
    assert [m.step for m in client.get_metric_history(run_id, "best")] == [0, 1, 2]

    # `evoprune resume <checkpoint>`: the CLI rebuilds the config from the checkpoint.
    monkeypatch.setattr(head_run, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(head_run, "check_inputs", lambda config: None)  # no ImageNet weights needed
    assert cli_main(["resume", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["evoprune.resumed_at_generation"] == "2"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "best"))
    assert steps == list(range(6))  # 8 initial + 5 x 8 evaluations: generations 0..5, each once
    assert len(client.search_runs([killed.info.experiment_id])) == 1
    assert {"logbook.csv", "report.json"} <= _artifacts(client, run_id)

    final = load_checkpoint(path)
    reference = run_module.run(
        config_from_dict(_config_dict(tmp_path, "steady_state", "reference", algorithm={"evaluations": 48})),
        features=data, out=io.StringIO())
    assert [dict(r) for r in final.state.logbook] == [dict(r) for r in reference.logbook]
    assert [p.tolist() for p in final.state.population] == [p.tolist() for p in reference.population]
    history = {m.step: m.value for m in client.get_metric_history(run_id, "best")}
    assert history == {int(r["gen"]): r["best"] for r in reference.logbook}


def test_an_exception_marks_the_run_failed_and_keeps_artifacts_and_checkpoint(tmp_path, store) -> None:
    from mlflow import MlflowClient

    data, _ = make_planted_features(seed=3)
    config = config_from_dict(_tracked(tmp_path, store, "resume-failed"))
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="user callback broke"):
        run_module.run(config, features=data, out=out, callbacks=[Interrupt(2, RuntimeError("user callback broke"))])
    path = _only_checkpoint(tmp_path / "ckpt")
    assert f"Run stopped (RuntimeError). Resume with: evoprune resume {path}" in out.getvalue()
    saved = load_checkpoint(path)
    client = MlflowClient(store)
    failed = client.get_run(saved.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["evoprune.error"] == "RuntimeError: user callback broke"
    assert {"logbook.csv", "halloffame.csv", "masks/best_genomes.npz"} <= _artifacts(client, saved.run_id)
    assert saved.state.generation == 2 and len(saved.state.logbook) == 3 and saved.fitness_cache


# ------------------------------------------------------------------ the feature cache

KILLED_WRITE = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    from evoprune_tf.features import cache as features
    from evoprune_tf.features.splits import FeatureSplits

    def dying_savez(handle, **arrays):
        handle.write(b"PK\\x03\\x04 half an archive")  # a torn zip, then the process dies
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    x = np.ones((4, 3), np.float32)
    features.np.savez = dying_savez
    features.write_cache(features.pathlib.Path(sys.argv[1]), ["d"] * 4, x, {"backbone": "b", "image_size": 32}, "key")
''')


def test_a_killed_feature_cache_write_never_leaves_a_file_a_later_run_trusts(tmp_path) -> None:
    from evoprune_tf.features import cache as features
    from evoprune_tf.data import ImageSplits
    from evoprune_tf.features.splits import FeatureSplits

    path = tmp_path / "cache" / "b_32px_key.npz"
    script = tmp_path / "write.py"
    script.write_text(KILLED_WRITE)
    done = subprocess.run([sys.executable, str(script), str(path)], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    leftovers = list(path.parent.iterdir())
    assert not path.exists()  # extraction looks only at the final name: a miss, so it recomputes
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".") and leftovers[0].suffix == ".tmp"

    # A later write succeeds next to the leftover, and what it wrote is verified on read.
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 0, 1])
    pixels = np.arange(4 * 32 * 32 * 3, dtype=np.uint32).reshape(4, 32, 32, 3).astype(np.uint8)
    pixels[:, 0, 0, 0] = np.arange(4)  # four distinct images
    images = ImageSplits(pixels, y, pixels, y, pixels, y, class_names=("a", "b"))
    features.write_cache(path, features._image_digests(pixels), x, {"backbone": "b", "image_size": 32}, "key")
    assert np.array_equal(features.read_cache(path, "key", images).x_val, x)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # what a non-atomic writer would have left
    with pytest.raises(Exception):
        features.read_cache(path, "key", images)
