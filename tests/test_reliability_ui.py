"""`evoprune ui` leaves no orphans: stopping it stops its mlflow server and uvicorn workers."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import new_mlflow_store
from helpers_runs import group_alive

from evoprune_tf.app.server import free_port


def _serving(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_sigterm_to_evoprune_ui_stops_the_server_and_its_workers(tmp_path):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": new_mlflow_store(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"}
    ui = subprocess.Popen([sys.executable, "-m", "evoprune_tf.app.cli", "ui", "--port", str(port)], cwd=tmp_path,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _serving(port) and time.monotonic() < deadline and ui.poll() is None:
            time.sleep(0.5)
        assert _serving(port), "the UI never started serving"
        children = subprocess.run(["pgrep", "-P", str(ui.pid)], capture_output=True, text=True).stdout.split()
        assert children, "evoprune ui runs the server as a child process"
        server_group = os.getpgid(int(children[0]))
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while group_alive(server_group) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_alive(server_group), "mlflow server / uvicorn workers outlived evoprune ui"
        assert not _serving(port)
    finally:
        if ui.poll() is None:
            ui.kill()
