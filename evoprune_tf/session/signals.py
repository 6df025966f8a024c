"""SIGTERM stops a run as Ctrl-C does: the MLflow run is marked KILLED, the checkpoint kept."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["Terminated", "sigterm_raises"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so a run stops exactly as on Ctrl-C.

    A `KeyboardInterrupt` subclass: the run is marked KILLED, the checkpoint is kept
    and the resume hint printed; the command line exits with 143 (128 + SIGTERM).
    """


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
