"""Creating a SQLite tracking store one process at a time (a file lock next to the database).

MLflow builds (migrates) a SQLite store's tables the first time a process opens it; two
processes doing that at once on a new file broke it for good (``duplicate column name``,
then ``_alembic_tmp_experiments already exists`` on every later run). `open_sqlite_store`
opens a store inside `store_lock`, an `fcntl.flock` on ``<db>.lock``; the kernel releases
it when its holder dies, so a killed process never leaves the store locked.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from evoprune_tf.file_lock import exclusive_lock

__all__ = ["sqlite_path", "store_lock", "open_sqlite_store"]

_SQLITE_PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other schemes and in-memory DBs)."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    path = uri[len(_SQLITE_PREFIX):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store's ``<db>.lock`` file (nothing for other stores).

    Args:
        uri: the tracking URI.

    Yields:
        Nothing; the lock is held for the block.
    """
    db = sqlite_path(uri)
    if db is None or not db.parent.is_dir():
        yield
        return
    with exclusive_lock(f"{db}.lock"):
        yield


def open_sqlite_store(uri: str) -> None:
    """Create (or open) a SQLite store's tables under `store_lock`; nothing for other stores.

    Args:
        uri: the tracking URI.
    """
    if sqlite_path(uri) is None:
        return
    from mlflow import MlflowClient

    with store_lock(uri):
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
