"""Keeping the search's random stream to itself.

The search's operators draw from Python's global `random` (DEAP's contract). Keras
draws default seeds for unseeded initializers and seed generators from that same global
state, so building a model in the middle of a search would shift the search's stream by
an amount that depends on what the process built before (a resumed run would then
diverge from the uninterrupted one). Code that builds models during a search does it
inside `isolated_global_rng`.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np

__all__ = ["isolated_global_rng"]


@contextlib.contextmanager
def isolated_global_rng() -> Iterator[None]:
    """Restore Python's and NumPy's global random states on exit, whatever the block drew."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
