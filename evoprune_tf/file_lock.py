"""One process at a time: an exclusive `fcntl.flock` on a lock file beside a shared resource.

The kernel releases an flock when its holder dies, so a killed process never leaves the
resource locked. Used where concurrent processes would otherwise repeat or break each
other's work: creating a SQLite tracking store (`evoprune_tf.tracking.store_lock`) and
extracting one feature-cache entry (`evoprune_tf.features.extract`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

__all__ = ["exclusive_lock"]


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block; wait for it if held.

    Args:
        path: the lock file; its folder must exist.

    Yields:
        Nothing; the lock is held for the block.
    """
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
