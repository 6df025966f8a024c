"""Issue 25 item 5: one process per run (resume lock) and runs whose process died are marked KILLED."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import make_planted_features, new_mlflow_store

import evoprune_tf.app.run as run_module
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]

# Holds the run lock of the checkpoint argv[1] until killed.
HOLDER = textwrap.dedent('''
    import sys, time
    from evoprune_tf.search.run_lock import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(300)
''')

# Starts a tracked tiny run on planted features and SIGKILLs itself before the first checkpoint.
KILLED_EARLY = textwrap.dedent('''
    import json, os, signal, sys
    import evoprune_tf.app.run as run_module
    from conftest import make_planted_features
    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.search.callbacks import Callback

    class Die(Callback):
        def on_start(self, state):  # after the MLflow run opened, before any checkpoint
            print(state.info["mlflow_run_id"], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    data, _ = make_planted_features(n_features=16, n_train=60, n_val=30, n_test=30, seed=2)
    run_module.run(config_from_dict(json.loads(sys.argv[1])), features=data, callbacks=[Die()], out=sys.stderr)
''')


def _env() -> dict:
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), *inherited])}


def _tiny(tmp_path: Path, **extra) -> dict:
    config = {"seed": 2, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 2, "engine": "numpy"},
              "algorithm": {"population": 4, "evaluations": 12}, "tracking": {"enabled": False},
              "checkpoint": {"dir": str(tmp_path / "ckpt")}, "report": {"seeds": 1, "export_model": False}}
    config.update(extra)
    return config


@pytest.fixture
def planted_cli(monkeypatch: pytest.MonkeyPatch, tmp_path):
    data, _ = make_planted_features(n_features=16, n_train=60, n_val=30, n_test=30, seed=2)
    monkeypatch.setattr(run_module, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(run_module, "_check_inputs", lambda config: None)
    monkeypatch.chdir(tmp_path)
    return data


def test_a_second_resume_of_a_run_is_refused_and_a_dead_owner_frees_the_lock(tmp_path, capsys, planted_cli):
    result = run_module.run(config_from_dict(_tiny(tmp_path)), features=planted_cli, out=io.StringIO())
    checkpoint = result.checkpoint
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(checkpoint)], env=_env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli_main(["resume", str(checkpoint), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "already running" in err and f"PID {holder.pid}" in err, err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # the kernel released the dead holder's lock: the resume runs
    assert cli_main(["resume", str(checkpoint), "--no-progress"]) == 0
    assert "Final report" in capsys.readouterr().out


def test_library_resume_holds_the_lock_while_it_runs(tmp_path, planted_cli):
    from evoprune_tf.search.callbacks import Callback
    from evoprune_tf.search.run_lock import run_lock

    result = run_module.run(config_from_dict(_tiny(tmp_path)), features=planted_cli, out=io.StringIO())
    seen = []

    class TrySecond(Callback):
        def on_start(self, state):
            with pytest.raises(ValueError, match="already running") as refused:
                with run_lock(result.checkpoint):
                    pass
            seen.append(str(refused.value))

    run_module.resume(result.checkpoint, features=planted_cli, callbacks=[TrySecond()], out=io.StringIO())
    assert seen and f"PID {os.getpid()}" in seen[0]
    with run_lock(result.checkpoint):  # released after the resume
        pass


@pytest.mark.slow
def test_a_run_sigkilled_before_its_first_checkpoint_is_marked_killed(tmp_path, capsys, monkeypatch):
    from mlflow import MlflowClient

    uri = new_mlflow_store(tmp_path)
    config = _tiny(tmp_path, tracking={"uri": uri, "experiment": "killed-early"})
    import json

    child = subprocess.run([sys.executable, "-c", KILLED_EARLY, json.dumps(config)], env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    run_id = child.stdout.split()[-1]
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # what a SIGKILL leaves behind
    assert client.get_run(run_id).data.tags["evoprune.owner"].split()[1].isdigit()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["resume", run_id]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "KILLED" in err and "evoprune run" in err, err
    stored = client.get_run(run_id)
    assert stored.info.status == "KILLED" and "was gone" in stored.data.tags["evoprune.killed_because"]


def test_a_running_run_whose_owner_lives_is_left_alone(tmp_path):
    from mlflow import MlflowClient

    from evoprune_tf.tracking.owner import owner_tags
    from evoprune_tf.tracking.store import find_run

    uri = new_mlflow_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        run = client.create_run(client.create_experiment("alive"))
        tag = owner_tags()["evoprune.owner"].split()
        host = tag[0]
        start = open(f"/proc/{alive.pid}/stat").read().rsplit(")", 1)[-1].split()[19]
        client.set_tag(run.info.run_id, "evoprune.owner", f"{host} {alive.pid} {start}")
        assert find_run(run.info.run_id, uri).info.status == "RUNNING"
        # the same PID with another start time is a reused PID: the owner is gone
        client.set_tag(run.info.run_id, "evoprune.owner", f"{host} {alive.pid} 1")
        assert find_run(run.info.run_id, uri).info.status == "KILLED"
        other = client.create_run(client.create_experiment("elsewhere"))
        client.set_tag(other.info.run_id, "evoprune.owner", "some-other-host 1 1")
        assert find_run(other.info.run_id, uri).info.status == "RUNNING"
    finally:
        alive.kill()
        alive.wait()


def test_a_run_marked_killed_that_is_resumed_runs_again_under_its_new_owner(tmp_path):
    import socket

    from mlflow import MlflowClient

    from evoprune_tf.tracking import MLflowTracker
    from evoprune_tf.tracking.store import find_run

    uri = new_mlflow_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("again")).info.run_id
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client.set_tag(run_id, "evoprune.owner", f"{socket.gethostname()} {dead.pid}")
    assert find_run(run_id, uri).info.status == "KILLED"  # its process is gone
    tracker = MLflowTracker(uri=uri, experiment="again", run_id=run_id)
    tracker.on_start()
    stored = client.get_run(run_id)
    assert stored.info.status == "RUNNING" and "evoprune.killed_because" not in stored.data.tags
    assert stored.data.tags["evoprune.owner"].split()[:2] == [socket.gethostname(), str(os.getpid())]
    tracker.finish()
