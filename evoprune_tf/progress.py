"""Progress of the image stages (reading images, extracting features) on a terminal or in a log.

On a terminal a stage is a tqdm bar that redraws itself with carriage returns. Redirected
into a file (stderr is not a TTY), those frames pile up as one long unreadable line; there
`stage_progress` writes one line per stage instead, when the stage ends:
``reading train images: 120 img in 1.3 s``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["LineProgress", "stage_progress"]


class LineProgress:
    """A tqdm-like counter that writes one line when its stage ends (``close``).

    Args:
        total: the expected count (0: unknown).
        desc: the stage's name.
        unit: what is counted.
        stream: where the line goes (default: stderr at the time of the line).
    """

    def __init__(self, total: int, desc: str, unit: str = "img", stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n = 0
        self._began = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items."""
        self.n += int(n)

    def close(self) -> None:
        """Write the stage's line (once)."""
        if self._closed:
            return
        self._closed = True
        of = f" of {self.total}" if self.total and self.total != self.n else ""
        print(f"{self.desc}: {self.n}{of} {self.unit} in {time.perf_counter() - self._began:.1f} s",
              file=self.stream or sys.stderr, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage_progress(total: int, desc: str, *, enabled: bool = True, unit: str = "img", leave: bool = False) -> Any:
    """A progress display for one stage: a tqdm bar on a terminal, a `LineProgress` otherwise.

    Args:
        total: the expected count (0: unknown).
        desc: the stage's name.
        enabled: False: a disabled bar (nothing is shown).
        unit: what is counted.
        leave: keep the tqdm bar on screen once done.

    Returns:
        An object with ``update(n)``, ``close()`` and the context-manager protocol.
    """
    from tqdm.auto import tqdm

    if enabled and not _is_tty(sys.stderr):
        return LineProgress(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=leave)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False
