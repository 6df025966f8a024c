"""`evoprune server`: the mlflow server command, its start and its clean stop (children included)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import new_mlflow_store
from helpers_runs import group_alive
from evoprune_tf.app import server as server_module
from evoprune_tf.app.server import MLflowServer, free_port, server_command, server_env


def test_the_command_is_lean_local_and_sqlite_by_default(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cmd = server_command()
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    options = dict(zip(cmd[4::2], cmd[5::2]))
    assert "--backend-store-uri" not in cmd  # in the environment, where the process list does not show it
    assert server_env({}, backend_store_uri="sqlite:///mlruns/mlflow.db")["MLFLOW_BACKEND_STORE_URI"] == \
        f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert options["--host"] == "127.0.0.1" and options["--workers"] == "1" and options["--port"] == "5000"
    assert "--serve-artifacts" in cmd and cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "mlruns" / "artifacts")
    assert server_env({})["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    s3 = server_command(backend_store_uri="sqlite:///db/m.db", serve_artifacts=False,
                        default_artifact_root="s3://bucket/mlflow", host="0.0.0.0")
    assert "--no-serve-artifacts" in s3 and s3[s3.index("--default-artifact-root") + 1] == "s3://bucket/mlflow"


def test_postgresql_without_its_driver_and_bad_values_fail_in_one_line(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg2" else real(name, *a))
    with pytest.raises(ValueError, match=r"is PostgreSQL but psycopg2 is not installed; expected `pip install psycopg2-binary`"):
        server_command(backend_store_uri="postgresql://me:secret@db.example:5432/mlflow")
    with pytest.raises(ValueError, match=r"backend store 'file:///x' is not a database URI"):
        server_command(backend_store_uri="file:///x")
    with pytest.raises(ValueError, match=r"port=0; expected a TCP port"):
        server_command(port=0)
    with pytest.raises(ValueError, match=r"workers=0; expected at least 1"):
        server_command(workers=0)


@pytest.mark.slow  # ~8 s on a quiet machine, 30 s on a busy one
def test_a_server_starts_answers_and_stops_with_its_children(tmp_path) -> None:
    from mlflow import MlflowClient

    server = MLflowServer(backend_store_uri=new_mlflow_store(tmp_path), port=free_port(),
                          log_file=tmp_path / "server.log")
    with server:
        pgid = server.process.pid
        assert server.ready()
        client = MlflowClient(tracking_uri=server.url)
        run = client.create_run(client.create_experiment("served"))
        client.log_text(run.info.run_id, "hello", "note.txt")  # proxied into artifacts/ next to the db
        assert (tmp_path / "artifacts").is_dir()
    assert server.process is None and not group_alive(pgid)
    assert server.stop() is None  # stopping twice is harmless


@pytest.mark.slow
def test_evoprune_server_forwards_sigterm_and_leaves_no_process(tmp_path) -> None:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", "evoprune_tf.app.cli", "server", "--port", str(port),
                              "--backend-store-uri", new_mlflow_store(tmp_path)],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    probe = MLflowServer(port=port, backend_store_uri=f"sqlite:///{tmp_path}/mlflow.db")
    # The banner is the CLI's own "ready" (printed once its /health poll succeeds); the
    # server may answer a probe a moment earlier, and a signal then is a stop mid-start.
    banner, deadline = "", time.monotonic() + 90
    while "MLflow tracking server at" not in banner and time.monotonic() < deadline and child.poll() is None:
        if select.select([child.stdout], [], [], 0.3)[0]:
            banner += child.stdout.readline()
    assert "MLflow tracking server at http://127.0.0.1:" in banner, "evoprune server did not come up"
    assert probe.ready()
    listeners = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True).stdout.split()
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=40) == 0
    assert not probe.ready()
    time.sleep(0.5)
    still = [pid for pid in listeners if pid != str(child.pid) and os.path.exists(f"/proc/{pid}")]
    assert not still, f"server processes left behind: {still}"
    assert server_module.DEFAULT_BACKEND == "sqlite:///mlruns/mlflow.db"


def test_a_signal_while_the_server_starts_is_a_stop_not_an_error() -> None:
    """SIGTERM before ``/health`` answers ends the server mid-start: the caller sees the signal, not an error."""

    class StartInterrupted(MLflowServer):
        def start(self, timeout: float = 60.0) -> "MLflowServer":
            os.kill(os.getpid(), signal.SIGTERM)  # the handler serve_in_foreground installed runs here
            raise RuntimeError("mlflow server exited with status -15 before it was ready")

    previous = signal.getsignal(signal.SIGTERM)
    code, stopped = server_module.serve_in_foreground(StartInterrupted(port=free_port()), "never printed {url}")
    assert (code, stopped) == (0, signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is previous

    class StartFails(MLflowServer):
        def start(self, timeout: float = 60.0) -> "MLflowServer":
            raise RuntimeError("mlflow server exited with status 1 before it was ready")

    with pytest.raises(RuntimeError, match="status 1"):
        server_module.serve_in_foreground(StartFails(port=free_port()), "never printed {url}")
