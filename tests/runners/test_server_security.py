"""`evoprune server`: no password on its command line or its banner, --auth, the open-host warning (issue 25)."""

from __future__ import annotations

import argparse
import base64
import urllib.error
import urllib.request

import pytest

from conftest import new_mlflow_store
from evoprune_tf.app import server as server_module
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.server import (MLflowServer, add_server_arguments, free_port, is_loopback, server_command,
                                    server_env)

PASSWORD = "pw-in-the-uri-7c1e"


@pytest.fixture
def banner(monkeypatch):
    """`evoprune server` up to its banner: the servers it would start and what it printed, started by nobody."""
    started: list[tuple[MLflowServer, str]] = []

    def fake_serve(server, text):
        started.append((server, text.format(url=server.url)))
        print(started[-1][1])
        return 0, None

    monkeypatch.setattr(server_module, "serve_in_foreground", fake_serve)
    return started


def test_the_backend_password_stays_off_the_command_line_and_the_terminal(tmp_path, capsys, banner,
                                                                          monkeypatch) -> None:
    uri = f"mysql://alice:{PASSWORD}@db.example:3306/mlflow"
    command = server_command(backend_store_uri=uri)
    assert not any(PASSWORD in arg for arg in command)
    assert server_env({}, backend_store_uri=uri)["MLFLOW_BACKEND_STORE_URI"] == uri
    assert cli_main(["server", "--backend-store-uri", uri, "--port", str(free_port())]) == 0
    server, text = banner[0]
    assert server.backend == uri and not any(PASSWORD in arg for arg in server.command)
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert "(backend mysql://alice:***@db.example:3306/mlflow)" in out
    # ... or it never reaches the shell history: MLFLOW_BACKEND_STORE_URI instead of the option.
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", uri.replace("db.example", "db2.example"))
    assert cli_main(["server", "--port", str(free_port())]) == 0
    assert banner[-1][0].backend == uri.replace("db.example", "db2.example")
    assert PASSWORD not in capsys.readouterr().out
    # A bad backend's error line does not show it either.
    assert cli_main(["server", "--backend-store-uri", f"file://alice:{PASSWORD}@x/y"]) == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err and "file://alice:***@x/y" in err


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("192.168.1.20", True), ("lab-server", True),
                                          ("127.0.0.1", False), ("localhost", False), ("::1", False)])
def test_a_host_others_can_reach_without_auth_warns_in_one_line(tmp_path, capsys, banner, host, warned) -> None:
    store = f"sqlite:///{tmp_path}/mlflow.db"
    assert is_loopback(host) is not warned
    assert cli_main(["server", "--host", host, "--port", "5999", "--backend-store-uri", store]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    if warned:
        assert err == [f"warning: --host {host} lets every machine that reaches port 5999 read and change the store "
                       "without a password; pass --auth (admin password from $EVOPRUNE_ADMIN_PASSWORD)"]
    else:
        assert err == []


def test_auth_needs_an_admin_password_for_a_new_user_database(tmp_path, capsys, banner, monkeypatch) -> None:
    store = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv("EVOPRUNE_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH", raising=False)
    assert cli_main(["server", "--auth", "--host", "0.0.0.0", "--backend-store-uri", store]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --auth creates the user database {tmp_path}/basic_auth.db with an admin user, but "
        "EVOPRUNE_ADMIN_PASSWORD is not set; expected the admin's password in it (export EVOPRUNE_ADMIN_PASSWORD=...)")
    monkeypatch.setenv("EVOPRUNE_ADMIN_PASSWORD", "short")
    assert cli_main(["server", "--auth", "--backend-store-uri", store]) == 2
    assert "EVOPRUNE_ADMIN_PASSWORD has 5 characters; expected at least 12" in capsys.readouterr().err
    monkeypatch.setenv("EVOPRUNE_ADMIN_PASSWORD", "admin-secret-0123")
    assert cli_main(["server", "--auth", "--host", "0.0.0.0", "--backend-store-uri", store]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "with basic auth" in out  # no open-host warning with --auth
    server, _ = banner[0]
    assert server.command[server.command.index("--app-name") + 1] == "basic-auth"
    assert not any("admin-secret-0123" in arg for arg in server.command)
    env = server_env({}, backend_store_uri=store, auth=server.auth)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "admin-secret-0123" and len(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64
    ini = (tmp_path / "basic_auth.ini").read_text()
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "basic_auth.ini")
    assert f"database_uri = sqlite:///{tmp_path}/basic_auth.db" in ini and "admin-secret" not in ini


def _status(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow  # one real server start: ~10 s on a quiet machine, 30 s on a busy one
def test_a_server_with_auth_refuses_strangers_and_serves_the_admin(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EVOPRUNE_ADMIN_PASSWORD", "admin-secret-0123")
    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH", raising=False)
    args = add_server_arguments(argparse.ArgumentParser()).parse_args(
        ["--auth", "--port", str(free_port()), "--backend-store-uri", new_mlflow_store(tmp_path)])
    server = MLflowServer(host=args.host, port=args.port, backend_store_uri=args.backend_store_uri, auth=True,
                          log_file=tmp_path / "server.log")
    with server:
        url = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(url) == 401
        assert _status(url, "admin", "wrong-password-00") == 401
        assert _status(url, "admin", "admin-secret-0123") == 200
    assert server.process is None


def test_ray_workers_get_the_tracking_servers_credentials(monkeypatch) -> None:
    """Grid cells on Ray log from the workers: an --auth server needs the user and password there too."""
    from evoprune_tf.runners.ray_runner import forwarded_env

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://head:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-secret-0123")
    env = forwarded_env()
    assert env["MLFLOW_TRACKING_USERNAME"] == "alice" and env["MLFLOW_TRACKING_PASSWORD"] == "alice-secret-0123"
