"""``evoprune server``: one MLflow tracking server for many concurrent runs.

Grids on Ray (and any runs from several processes or machines) log to one tracking
server rather than to one SQLite file each process opens: the server serialises the
writes, so no metric step is lost to a locked database. `MLflowServer` starts
``mlflow server`` with the settings measured to be lean on a small machine:

* backend: SQLite (``sqlite:///mlruns/mlflow.db``, made absolute) by default, or a
  PostgreSQL URI (``postgresql://user:password@host:5432/mlflow``, needs ``psycopg2``);
* artifacts: proxied by the server into ``--artifacts-destination`` (default: the
  ``artifacts`` folder next to the SQLite file), so clients need no shared file system;
  or ``--default-artifact-root s3://bucket/prefix`` with ``--no-serve-artifacts`` for
  an S3-compatible store every client writes to directly;
* ``--workers 1`` and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: two processes and
  about 0.5 GB instead of about fifteen and 3 GB;
* host ``127.0.0.1`` unless asked otherwise (``--host 0.0.0.0`` for other machines);
  a host other machines can reach without ``--auth`` gets a one-line warning;
* ``--auth``: MLflow's basic-auth app (``--app-name basic-auth``), every request needs a
  user and password; the admin's password comes from ``EVOPRUNE_ADMIN_PASSWORD`` (or
  ``MLFLOW_AUTH_ADMIN_PASSWORD``) when the auth database is created (`auth_environment`);
* secrets never go on the command line, where every user of the machine sees them in
  the process list: the backend store URI reaches the child as
  ``MLFLOW_BACKEND_STORE_URI``, the admin password as ``MLFLOW_AUTH_ADMIN_PASSWORD``, and
  what is printed shows the URI without its password.

The server runs in its own process group: `MLflowServer.stop` (and ``evoprune server``
on SIGINT, SIGTERM or SIGHUP) ends the whole group, so no worker is left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from evoprune_tf.tracking.redact import redact_uri

__all__ = ["DEFAULT_BACKEND", "MLflowServer", "server_command", "server_env", "auth_environment", "is_loopback",
           "free_port", "add_server_arguments", "serve", "ADMIN_PASSWORD_ENV"]

#: Where ``evoprune server --auth`` reads the admin's password (MLflow's own name works too).
ADMIN_PASSWORD_ENV = "EVOPRUNE_ADMIN_PASSWORD"

#: The project's store; the server makes the path absolute.
DEFAULT_BACKEND = "sqlite:///mlruns/mlflow.db"
_SQLITE = "sqlite:///"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and throw-away servers).

    Args:
        host: the interface.

    Returns:
        The port number.
    """
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _absolute_backend(uri: str) -> str:
    if not uri.startswith(_SQLITE):
        return uri
    path = Path(uri[len(_SQLITE):].split("?", 1)[0]).expanduser()
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{_SQLITE}{path}"


def _check_backend(uri: str) -> None:
    """One-line errors for a backend the server could not open."""
    if uri.startswith(_SQLITE):
        return
    if uri.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            raise ValueError(f"backend {uri.split('@')[-1]!r} is PostgreSQL but psycopg2 is not installed; "
                             "expected `pip install psycopg2-binary`")
        return
    if uri.startswith(("mysql", "mssql")):
        return
    raise ValueError(f"backend store {redact_uri(uri)!r} is not a database URI; "
                     "expected sqlite:///PATH or postgresql://USER@HOST/DB")


def server_command(
    *,
    backend_store_uri: str = DEFAULT_BACKEND,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    artifacts_destination: str | None = None,
    default_artifact_root: str | None = None,
    serve_artifacts: bool = True,
    auth: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``mlflow server`` command line (without the backend store, which `server_env` passes).

    Args:
        backend_store_uri: SQLite or PostgreSQL URI (a relative SQLite path is made absolute).
        host: the interface to listen on.
        port: the TCP port.
        workers: server worker processes.
        artifacts_destination: where a proxying server stores artifacts (default: the
            ``artifacts`` folder next to a SQLite file).
        default_artifact_root: the artifact URI new experiments get (e.g. ``s3://bucket/mlflow``
            with ``serve_artifacts=False``).
        serve_artifacts: proxy artifact uploads and downloads through the server.
        auth: MLflow's basic-auth app (see `auth_environment` for its settings).
        extra: more ``mlflow server`` options, passed as they are.

    Returns:
        The argument list (``python -m mlflow server ...``).

    Raises:
        ValueError: a bad port, worker count or backend URI.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port={port}; expected a TCP port in 1..65535")
    if workers < 1:
        raise ValueError(f"workers={workers}; expected at least 1 server worker")
    backend = _absolute_backend(backend_store_uri)
    _check_backend(backend)
    # The backend store URI (it may hold a password) goes in the environment: `server_env`.
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", str(workers)]
    if auth:
        cmd += ["--app-name", "basic-auth"]
    if serve_artifacts:
        if artifacts_destination is None and backend.startswith(_SQLITE):
            artifacts_destination = str(Path(backend[len(_SQLITE):]).parent / "artifacts")
        cmd.append("--serve-artifacts")
        if artifacts_destination:
            cmd += ["--artifacts-destination", artifacts_destination]
    else:
        cmd.append("--no-serve-artifacts")
    if default_artifact_root:
        cmd += ["--default-artifact-root", default_artifact_root]
    return cmd + list(extra)


def server_env(base: dict[str, str] | None = None, *, backend_store_uri: str | None = None,
               auth: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: no job runner, no telemetry, and the secrets argv must not show.

    Args:
        base: the environment to start from (default: this process's).
        backend_store_uri: passed as ``MLFLOW_BACKEND_STORE_URI`` (``mlflow server`` reads
            its ``--backend-store-uri`` from it), made absolute like `server_command` does.
        auth: `auth_environment`'s settings, for a server started with ``auth=True``.

    Returns:
        A new dict.
    """
    env = dict(os.environ if base is None else base)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if backend_store_uri is not None:
        env["MLFLOW_BACKEND_STORE_URI"] = _absolute_backend(backend_store_uri)
    env.update(auth or {})
    return env


def auth_environment(backend_store_uri: str = DEFAULT_BACKEND, env: dict[str, str] | None = None) -> dict[str, str]:
    """The settings of MLflow's basic-auth app for a server over this store.

    Unless ``MLFLOW_AUTH_CONFIG_PATH`` names the user's own ``basic_auth.ini``, one is
    written next to the SQLite store (``./mlruns`` for other backends), keeping the
    users in ``basic_auth.db`` beside it, with MLflow's defaults: user ``admin``, and
    every other user may READ what they did not create; a checked password is cached
    for 60 s (``auth_cache_ttl_seconds``: each check is a slow hash, and a run sends many
    requests), so a changed password may still work for a minute. The admin's password comes from
    ``EVOPRUNE_ADMIN_PASSWORD`` (or ``MLFLOW_AUTH_ADMIN_PASSWORD``) and is needed when the
    auth database is new; MLflow ignores it once the admin exists. The CSRF key the app
    needs is ``MLFLOW_FLASK_SERVER_SECRET_KEY``, or a new random one for this server.

    Args:
        backend_store_uri: the server's backend store.
        env: the environment to read (default: this process's).

    Returns:
        Environment variables for the server process (nothing goes on its command line).

    Raises:
        ValueError: Flask-WTF missing, an MLflow too old to take the password from the
            environment, or no password for a new auth database.
    """
    import importlib.util

    env = dict(os.environ if env is None else env)
    if importlib.util.find_spec("flask_wtf") is None:
        raise ValueError("--auth needs Flask-WTF (MLflow's auth extra), which is not installed; "
                         "expected `pip install 'evoprune-tf[auth]'` or `pip install Flask-WTF`")
    from mlflow import environment_variables

    if not hasattr(environment_variables, "MLFLOW_AUTH_ADMIN_PASSWORD"):
        raise ValueError("--auth needs an MLflow that reads the admin password from MLFLOW_AUTH_ADMIN_PASSWORD; "
                         "expected a newer mlflow (pip install -U mlflow)")
    out = {"MLFLOW_FLASK_SERVER_SECRET_KEY": env.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)}
    password = env.get(ADMIN_PASSWORD_ENV) or env.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    if password:
        out["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
    if env.get("MLFLOW_AUTH_CONFIG_PATH"):
        return out
    backend = _absolute_backend(backend_store_uri)
    folder = Path(backend[len(_SQLITE):]).parent if backend.startswith(_SQLITE) else Path("mlruns").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "basic_auth.db"
    if not db.exists() and not password:
        raise ValueError(f"--auth creates the user database {db} with an admin user, but {ADMIN_PASSWORD_ENV} "
                         f"is not set; expected the admin's password in it (export {ADMIN_PASSWORD_ENV}=...)")
    if not db.exists() and len(password or "") < 12:  # MLflow's rule for the admin it creates
        raise ValueError(f"{ADMIN_PASSWORD_ENV} has {len(password or '')} characters; "
                         "expected at least 12 for the admin user MLflow creates")
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "# Written by `evoprune server --auth`; set MLFLOW_AUTH_CONFIG_PATH to use your own.\n"
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {_SQLITE}{db}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "# A checked password is remembered this long (a run logs many requests; each check is a slow hash).\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    out["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
    return out


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach a server listening on ``host``.

    Args:
        host: an interface address or name (``127.0.0.1``, ``::1``, ``localhost``, ``0.0.0.0``...).

    Returns:
        True for loopback addresses and ``localhost``; False for everything else, names included.
    """
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class MLflowServer:
    """A running ``mlflow server`` in its own process group (also a context manager).

    Typical use::

        with MLflowServer(backend_store_uri=f"sqlite:///{tmp}/mlflow.db", port=free_port()) as server:
            os.environ["MLFLOW_TRACKING_URI"] = server.url
            ...

    Args:
        host: the interface (``127.0.0.1`` by default).
        port: the TCP port.
        log_file: where the server's output goes (default: discarded).
        **options: more `server_command` options (backend, workers, artifacts).

    Attributes:
        url: ``http://host:port`` (clients on this machine use 127.0.0.1 for 0.0.0.0).
        process: the `subprocess.Popen` of the server (None when stopped).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 5000, log_file: str | Path | None = None,
                 **options: Any) -> None:
        self.command = server_command(host=host, port=port, **options)
        self.backend = _absolute_backend(options.get("backend_store_uri", DEFAULT_BACKEND))
        self.auth = auth_environment(self.backend) if options.get("auth") else None
        client_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{client_host}:{port}"
        self.log_file = Path(log_file) if log_file else None
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "MLflowServer":
        """Start the server and wait until it answers ``/health``.

        Args:
            timeout: seconds to wait for it.

        Returns:
            self.

        Raises:
            RuntimeError: it exited or did not answer in time (the log's last line is named).
        """
        sink = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - kept with the process
        try:
            # Its own session: signals to our terminal group do not reach it half-way,
            # and stop() can end its workers with one killpg.
            env = server_env(backend_store_uri=self.backend, auth=self.auth)
            self.process = subprocess.Popen(self.command, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        finally:
            if sink is not subprocess.DEVNULL:
                sink.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"mlflow server exited with status {code} before it was ready; "
                                   f"expected it to listen on {self.url} ({self._last_log_line()})")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer on {self.url} within {timeout:g} s; "
                           f"expected {self.url}/health to say OK ({self._last_log_line()})")

    def _last_log_line(self) -> str:
        if self.log_file and self.log_file.is_file():
            lines = [line for line in self.log_file.read_text(errors="replace").splitlines() if line.strip()]
            if lines:
                return f"log: {lines[-1][:200]}"
        return "no log: rerun with --log-file FILE (log_file= in Python) to see its output"

    def ready(self) -> bool:
        """Whether the server answers ``/health``.

        Returns:
            True once it serves requests.
        """
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 15.0) -> int | None:
        """End the server and its workers: SIGTERM to its group, SIGKILL after ``timeout``.

        Args:
            timeout: seconds to wait after SIGTERM.

        Returns:
            The server's exit status (None when it was not running).
        """
        process, self.process = self.process, None
        if process is None:
            return None
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                return process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return process.poll()

    def __enter__(self) -> "MLflowServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def add_server_arguments(parser: Any) -> Any:
    """The options of ``evoprune server``.

    Args:
        parser: an `argparse.ArgumentParser` (or sub-parser).

    Returns:
        The parser.
    """
    parser.add_argument("--backend-store-uri", default=None,
                        help="sqlite:///PATH or postgresql://USER:PW@HOST:5432/DB (default: $MLFLOW_BACKEND_STORE_URI, "
                             "else sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--artifacts-destination", default=None,
                        help="where the server stores proxied artifacts (default: artifacts/ next to the SQLite file;"
                             " s3://bucket/prefix for S3-compatible storage)")
    parser.add_argument("--default-artifact-root", default=None,
                        help="artifact URI of new experiments (with --no-serve-artifacts: clients write there directly)")
    parser.add_argument("--no-serve-artifacts", action="store_true", help="do not proxy artifacts through the server")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1; 0.0.0.0 for other machines)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--log-file", default=None, help="write the server's output here")
    parser.add_argument("--auth", action="store_true",
                        help=f"require a user and password (MLflow's basic-auth app); the admin's password comes from "
                             f"${ADMIN_PASSWORD_ENV}, clients set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD")
    parser.add_argument("mlflow_args", nargs="*", help="more `mlflow server` options, after --")
    return parser


def serve_in_foreground(server: MLflowServer, banner: str) -> tuple[int, int | None]:
    """Start ``server``, print ``banner``, and wait until it exits or a signal arrives.

    SIGINT, SIGTERM and SIGHUP are forwarded to the server's process group; the server
    (and its workers with it) is stopped whatever ends the wait. Used by
    ``evoprune server`` and ``evoprune ui``.

    Args:
        server: a server that is not running yet.
        banner: the line printed once it answers.

    Returns:
        ``(the server's exit status, the signal that stopped it or None)``.
    """
    stopped: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        stopped.append(signum)
        if server.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, signum if signum != signal.SIGHUP else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = None
    try:
        try:
            server.start()
        except RuntimeError:
            if not stopped:  # a signal during start-up ends the server before it is ready: not an error
                raise
            return 0, stopped[0]
        print(banner.format(url=server.url), flush=True)
        process = server.process
        while process is not None and process.poll() is None and not stopped:
            time.sleep(0.5)
        code = process.returncode if process is not None else None
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return int(code or 0), (stopped[0] if stopped else None)


def serve(args: Any) -> int:
    """``evoprune server``: run the server in the foreground until a signal ends it.

    Args:
        args: parsed `add_server_arguments` options.

    Returns:
        0 after a signal, else the server's exit status.
    """
    auth = bool(getattr(args, "auth", False))
    # A password-holding URI may stay out of the shell history too: MLFLOW_BACKEND_STORE_URI.
    backend = args.backend_store_uri or os.environ.get("MLFLOW_BACKEND_STORE_URI") or DEFAULT_BACKEND
    server = MLflowServer(
        host=args.host, port=args.port, log_file=args.log_file, backend_store_uri=backend,
        workers=args.workers, artifacts_destination=args.artifacts_destination,
        default_artifact_root=args.default_artifact_root, serve_artifacts=not args.no_serve_artifacts,
        auth=auth, extra=args.mlflow_args,
    )
    if not auth and not is_loopback(args.host):
        print(f"warning: --host {args.host} lets every machine that reaches port {args.port} read and change the store"
              f" without a password; pass --auth (admin password from ${ADMIN_PASSWORD_ENV})", file=sys.stderr)
    login = (" with basic auth (clients set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)" if auth else "")
    code, stopped = serve_in_foreground(
        server, f"MLflow tracking server at {{url}}{login} (backend {redact_uri(server.backend)}); "
                "set MLFLOW_TRACKING_URI={url} in every run. Ctrl-C stops it.")
    return 0 if stopped else code


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGTERM this (child) process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the signal handlers still stop the group
        pass
