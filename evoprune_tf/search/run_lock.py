"""One process per run: a resume holds an exclusive lock file beside the run's checkpoint.

Two ``evoprune resume`` of the same run started at once both ran (every generation logged
twice). `run_lock` takes an `fcntl.flock` on ``run.lock`` in the checkpoint's folder and
writes its owner (host and PID) into it; a second resume finds the lock taken and is
refused in one line naming the owner. The kernel releases an flock when its holder dies,
so a killed resume never leaves the run locked.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

__all__ = ["LOCK_NAME", "lock_path", "run_lock"]

#: The lock file's name, in the checkpoint's folder.
LOCK_NAME = "run.lock"


def lock_path(checkpoint: str | Path) -> Path:
    """The lock file of a checkpoint (a file or its folder).

    Args:
        checkpoint: the checkpoint file or folder.

    Returns:
        ``<folder>/run.lock``.
    """
    path = Path(checkpoint)
    return (path if path.is_dir() else path.parent) / LOCK_NAME


@contextlib.contextmanager
def run_lock(checkpoint: str | Path) -> Iterator[Path]:
    """Hold the run's lock for the block, or refuse at once when another process holds it.

    Args:
        checkpoint: the checkpoint file or folder being resumed.

    Yields:
        The lock file's path.

    Raises:
        ValueError: one line naming the process that holds the lock.
    """
    import fcntl

    path = lock_path(checkpoint)
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise ValueError(
                f"the run of checkpoint {checkpoint} is already running ({owner}, lock {path}); "
                "expected one resume at a time: wait for that one to end"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"host {socket.gethostname()} PID {os.getpid()}\n")
        handle.flush()
        try:
            yield path
        finally:
            handle.seek(0)
            handle.truncate()  # no stale owner for the next reader
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
