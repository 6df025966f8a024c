"""The MLflow store: resolving and checking tracking URIs, finding runs.

Stores: ``sqlite:///mlruns/mlflow.db`` by default (artifacts in ``mlruns/artifacts``),
``$MLFLOW_TRACKING_URI`` or an explicit URI (e.g. ``http://host:5000``) otherwise. The
store is checked before any long work, so an unreachable server fails in seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from evoprune_tf.errors import one_line
from evoprune_tf.tracking.owner import reap_if_dead
from evoprune_tf.tracking.redact import redact_uri
from evoprune_tf.tracking.store_lock import open_sqlite_store, sqlite_path as _sqlite_path, store_lock

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "DEFAULT_TRACKING_URI",
    "download_artifact",
    "run_artifact",
    "run_genomes",
    "resolve_tracking_uri",
    "absolute_tracking_uri",
    "store_folder",
    "sqlite_store_missing",
    "check_tracking_uri",
    "store_lock",
    "open_sqlite_store",
    "check_writable_folder",
    "check_artifact_store",
    "check_resumable",
    "logged_through",
    "find_run",
    "artifact_location",
    "all_pages",
]

#: The project's store: SQLite next to the artifacts in ``./mlruns``.
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"

_SQLITE_PREFIX = "sqlite:///"  # also in `store_lock.sqlite_path`
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def resolve_tracking_uri(uri: str = "", *, create_folder: bool = True) -> str:
    """The tracking URI to use: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the default.

    For the default store the ``mlruns/`` folder is created (relative to the current
    directory), so a fresh checkout can track without set-up.

    Args:
        uri: an explicit tracking URI (``""`` = not given).
        create_folder: create ``mlruns/`` for the default store (False: only name it,
            for commands that read a store and must not leave one behind).

    Returns:
        The URI.
    """
    resolved = uri or os.environ.get("MLFLOW_TRACKING_URI", "") or DEFAULT_TRACKING_URI
    if resolved == DEFAULT_TRACKING_URI and create_folder:
        db = _sqlite_path(resolved)
        assert db is not None
        db.parent.mkdir(parents=True, exist_ok=True)
    return resolved


def absolute_tracking_uri(uri: str = "") -> str:
    """`resolve_tracking_uri`, with a relative SQLite path made absolute.

    ``sqlite:///mlruns/mlflow.db`` names a different store in every folder; the absolute
    form is what checkpoints record, so a resume from another folder finds the same store.

    Args:
        uri: a tracking URI (``""``: `resolve_tracking_uri`'s choice).

    Returns:
        The URI, absolute for SQLite files, unchanged otherwise.
    """
    uri = resolve_tracking_uri(uri)
    db = _sqlite_path(uri)
    if db is None or db.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return f"{_SQLITE_PREFIX}{db.resolve()}" + (f"?{query}" if query else "")


def sqlite_store_missing(uri: str) -> bool:
    """Whether ``uri`` names a SQLite store whose database file does not exist (yet).

    Opening such a store creates it: a command that only looks runs up skips it instead.

    Args:
        uri: a resolved tracking URI.

    Returns:
        True for a ``sqlite:///`` file that is not there; False otherwise.
    """
    db = _sqlite_path(uri)
    return db is not None and not db.is_file()


def store_folder(uri: str = "") -> Path | None:
    """The absolute folder of a SQLite store (where its artifacts and checkpoints go); None for servers.

    Args:
        uri: a tracking URI (``""``: `resolve_tracking_uri`'s choice).

    Returns:
        The folder holding the database file, or None when the store is not a SQLite file.
    """
    db = _sqlite_path(resolve_tracking_uri(uri))
    return None if db is None else db.parent.resolve()


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and check that files can be written there.

    Args:
        folder: the output folder.
        what: what it is, for the message (e.g. ``"checkpoint.dir"``).

    Returns:
        The folder, as an absolute path.

    Raises:
        ValueError: one line naming ``what``, the folder and the reason.
    """
    path = Path(folder).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(
            f"{what} {path} is not writable ({type(error).__name__}: {one_line(error)}); expected a writable folder"
        ) from None
    return path


def check_artifact_store(uri: str, experiment: str) -> None:
    """Fail fast when the run's artifacts could not be written (local artifact stores only).

    The experiment's own artifact location is checked when it exists, else the one a new
    experiment would get (`artifact_location`). Remote locations (a server's
    ``mlflow-artifacts:``, object stores) are the server's business and are not checked.

    Args:
        uri: the tracking URI.
        experiment: the experiment name.

    Raises:
        ValueError: one line naming the artifact store and the reason.
    """
    from urllib.parse import unquote, urlparse

    from mlflow import MlflowClient

    location = None
    try:
        found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
        location = found.artifact_location if found is not None else None
    except Exception:  # noqa: BLE001 - the store itself was checked before; a new experiment is fine
        found = None
    location = location or artifact_location(uri)
    if not location:
        return
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return
    folder = unquote(parsed.path) if parsed.scheme == "file" else location
    check_writable_folder(folder, f"MLflow artifact store of experiment {experiment!r} ({location}):")


def logged_through(run_id: str, uri: str) -> int:
    """The highest generation (metric step) a run has logged; -1 when it has none.

    Args:
        run_id: the run.
        uri: its tracking URI.

    Returns:
        The largest step of its ``evaluations`` metric (any metric when that one is missing).
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    metrics = client.get_run(run_id).data.metrics
    if not metrics:
        return -1
    key = "evaluations" if "evaluations" in metrics else sorted(metrics)[0]
    return max((m.step for m in client.get_metric_history(run_id, key)), default=-1)


def check_resumable(run_id: str, uri: str, *, generation: int, recorded_uri: str | None = None,
                    digest: str | None = None, previous_digest: str | None = None) -> None:
    """Refuse, in one line and before any long work, a resume that cannot continue this run.

    Refused: a run that is not in this store (the message names the store it was
    recorded in), a FINISHED run (nothing to resume), and a stale checkpoint, i.e. one
    older than the checkpoint the run itself last recorded (its tag
    ``evoprune.checkpoint_generation``): resuming it would log generations twice. Also
    refused: a checkpoint whose digest is not the one the run recorded (its tag
    ``evoprune.checkpoint_sha256``), a swapped or foreign file. The checkpoint written
    right after the recorded one (``previous_digest`` equal to the tag) is accepted: a
    run killed between writing a checkpoint and tagging it resumes from the newer file.

    Args:
        run_id: the MLflow run the checkpoint belongs to.
        uri: the store the resume would log to.
        generation: the checkpoint's generation.
        recorded_uri: the store the checkpoint says the run lives in (None: unknown).
        digest: the checkpoint's SHA-256 (None: a pickle checkpoint, which has none).
        previous_digest: the SHA-256 of the checkpoint it replaced, as it records it.

    Raises:
        ValueError: why the run cannot be resumed, and what to do instead.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException:
        where = (
            f"it lives in {recorded_uri}: set MLFLOW_TRACKING_URI={recorded_uri} (or tracking.uri) to resume it"
            if recorded_uri and recorded_uri != redact_uri(uri)
            else "expected the store the run was started in (MLFLOW_TRACKING_URI or tracking.uri)"
        )
        raise ValueError(f"MLflow run {run_id} is not in the store {redact_uri(uri)}; {where}") from None
    if run.info.status == "FINISHED":
        raise ValueError(
            f"MLflow run {run_id} is FINISHED: nothing to resume; start a new run (evoprune run) to search again"
        )
    latest = run.data.tags.get("evoprune.checkpoint_generation")
    if latest is not None and latest.isdigit() and int(latest) > generation:
        where = run.data.tags.get("evoprune.checkpoint", "its latest checkpoint")
        raise ValueError(
            f"checkpoint of generation {generation} is stale: MLflow run {run_id} already reached generation "
            f"{latest}; resume from {where} instead"
        )
    recorded = run.data.tags.get("evoprune.checkpoint_sha256")
    if recorded and recorded not in (digest, previous_digest):
        where = run.data.tags.get("evoprune.checkpoint", "its latest checkpoint")
        found = f"sha256 {digest[:16]}..." if digest else "no digest (a pickle)"
        raise ValueError(
            f"checkpoint of generation {generation} has {found}, but MLflow run {run_id} recorded sha256 "
            f"{recorded[:16]}... for its checkpoint: a swapped or foreign file; expected the file the run wrote "
            f"({where})"
        )


def artifact_location(uri: str) -> str | None:
    """Where a new experiment's artifacts go: ``<folder of the SQLite file>/artifacts``.

    Other stores (servers) decide for themselves: None.
    """
    db = _sqlite_path(uri)
    if db is None:
        return None
    return (db.parent.resolve() / "artifacts").as_uri()


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _check_sqlite(uri: str, db: Path) -> None:
    """A writable folder and a file SQLite can open (one-line `ValueError` otherwise)."""
    folder = db.parent
    if not folder.is_dir():
        raise ValueError(
            f"MLflow tracking store {uri}: folder {folder} does not exist; expected an existing, writable folder"
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(
            f"MLflow tracking store {uri}: folder {folder} is not writable ({one_line(error)}); "
            "expected a writable folder"
        ) from None
    try:
        connection = sqlite3.connect(db, timeout=2.0)
        try:
            connection.execute("PRAGMA schema_version").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ValueError(
            f"MLflow tracking store {uri}: {db} cannot be opened ({one_line(error)}); expected a SQLite database"
        ) from None


def check_tracking_uri(uri: str = "") -> None:
    """Fail fast when the tracking store cannot be used, before anything long starts.

    A SQLite store needs an existing, writable folder for its file; every store must
    answer one ``search_experiments`` call (HTTP stores with no retries and a 5 s
    timeout, so a refused or silent server fails in seconds, not minutes).

    Args:
        uri: the tracking URI (``""``: `resolve_tracking_uri`'s choice).

    Raises:
        ValueError: one line naming the URI and what is wrong.
    """
    uri = resolve_tracking_uri(uri)
    db = _sqlite_path(uri)
    if db is not None:
        # Checked here because MLflow retries a SQLite file it cannot open for ~100 s.
        _check_sqlite(uri, db)
    settings: dict[str, str] = {}
    if uri.startswith(("http://", "https://")):
        settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    from mlflow import MlflowClient

    try:
        with _env(**settings), store_lock(uri):  # a new SQLite store is created here, one process at a time
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure means "unusable store"
        raise ValueError(
            f"MLflow tracking store {uri} cannot be used ({type(error).__name__}: {one_line(error)}); "
            "expected a reachable store: start the server, or set tracking.uri / MLFLOW_TRACKING_URI"
        ) from None


def find_run(run_id_or_prefix: str, uri: str = "") -> Run:
    """The MLflow run with this id, or the only run whose id starts with this prefix.

    A RUNNING run whose process is gone from this host is marked KILLED first
    (`evoprune_tf.tracking.owner.reap_if_dead`).

    Args:
        run_id_or_prefix: a full 32-character run id or a unique prefix of one.
        uri: the tracking URI (``""``: `resolve_tracking_uri`'s choice).

    Returns:
        The `mlflow.entities.Run`.

    Raises:
        ValueError: no run or several runs match.
    """
    from mlflow import MlflowClient
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    key = run_id_or_prefix.strip().lower()
    if not key:
        raise ValueError("run id ''; expected a run id or a prefix of one")
    uri = resolve_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    if _RUN_ID.match(key):
        try:
            return reap_if_dead(client, client.get_run(key))
        except MlflowException:
            raise ValueError(f"run {key} not found in {uri}; expected the id of an existing run") from None
    experiment_ids = [e.experiment_id for e in all_pages(client.search_experiments, view_type=ViewType.ALL)]
    matches = [
        run
        for run in all_pages(client.search_runs, experiment_ids=experiment_ids, run_view_type=ViewType.ALL)
        if run.info.run_id.startswith(key)
    ] if experiment_ids else []
    if not matches:
        raise ValueError(f"no run id starts with {key!r} in {uri}; expected a prefix of an existing run id")
    if len(matches) > 1:
        ids = ", ".join(sorted(r.info.run_id for r in matches)[:5])
        raise ValueError(f"run id prefix {key!r} matches {len(matches)} runs ({ids}); expected a unique prefix")
    return reap_if_dead(client, matches[0])


def same_seed_run(method: str, seed: int, experiment: str, uri: str = "") -> str:
    """The id of the one FINISHED run of ``method`` with this seed in ``experiment``.

    What pairs a run with another method's run of its seed in a study (``algorithm.flops_of
    = "seed:deep_pruning_es"``): the tags ``evoprune.algorithm`` and ``evoprune.seed``.

    Raises:
        ValueError: no such experiment, or not exactly one such run (one line).
    """
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no experiment {experiment!r} in {uri}; expected the experiment that holds the "
                         f"{method} runs (tracking.experiment)")
    query = (f"tags.`evoprune.algorithm` = '{method}' and tags.`evoprune.seed` = '{seed}' "
             "and attributes.status = 'FINISHED'")
    runs = list(all_pages(client.search_runs, experiment_ids=[found.experiment_id], filter_string=query))
    if len(runs) != 1:
        ids = ", ".join(sorted(r.info.run_id for r in runs)[:5])
        raise ValueError(f"{len(runs)} finished {method} runs with seed {seed} in experiment {experiment!r}"
                         f"{' (' + ids + ')' if ids else ''}; expected exactly one")
    return runs[0].info.run_id


def all_pages(search: Callable, **kwargs) -> Iterator:
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def download_artifact(client: "MlflowClient", run_id: str, path: str, folder: str) -> Path | None:
    """One artifact of a run downloaded into ``folder``; None when the run has no such artifact.

    Args:
        client: an `mlflow.MlflowClient` of the run's store.
        run_id: the run's id.
        path: the artifact's path inside the run.
        folder: where to put it.

    Returns:
        The local path, or None.
    """
    try:
        return Path(client.download_artifacts(run_id, path, folder))
    except Exception:  # noqa: BLE001 - MLflow raises various errors for a missing artifact
        return None


@contextlib.contextmanager
def run_artifact(run_id: str, artifact_path: str, uri: str = "") -> Iterator[tuple["Run", Path | None]]:
    """A run (found by id or unique prefix) and a temporary local copy of one of its artifacts.

    Args:
        run_id: the run's id or a unique prefix of it.
        artifact_path: the artifact's path inside the run.
        uri: tracking URI (``""``: ``$MLFLOW_TRACKING_URI`` or the project's store).

    Yields:
        ``(run, local path or None when the run has no such artifact)``; the copy is
        deleted when the block ends.
    """
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(uri)
    run = find_run(run_id, uri)
    with tempfile.TemporaryDirectory(prefix="evoprune-artifact-") as tmp:
        yield run, download_artifact(MlflowClient(tracking_uri=uri), run.info.run_id, artifact_path, tmp)


def run_genomes(run_id: str, uri: str = "") -> dict[str, "np.ndarray"]:
    """The run's ``masks/best_genomes.npz``.

    Args:
        run_id: the run's id or a unique prefix of it.
        uri: tracking URI (``""``: ``$MLFLOW_TRACKING_URI`` or the project's store).

    Returns:
        ``genomes``, ``fitness``, ``weights``, ``objective_names`` as arrays.

    Raises:
        ValueError: the run has no such artifact (it never finished a generation).
    """
    import numpy as np

    with run_artifact(run_id, "masks/best_genomes.npz", uri) as (run, path):
        if path is None or not path.is_file():
            raise ValueError(
                f"run {run.info.run_id} has no artifact masks/best_genomes.npz; expected a run that finished "
                "at least its first generation"
            )
        with np.load(path, allow_pickle=False) as npz:
            return {key: np.array(npz[key]) for key in npz.files}
