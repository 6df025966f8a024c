"""BLAS thread limits for the NumPy forward and training passes.

OpenBLAS splits a product differently with 1 and with 2 threads, and on some CPUs
(measured on AMD EPYC, not on the Intel machines before) the sums then differ in the
last bits. A genome's validation loss must not depend on how many BLAS threads the
process that scores it happens to have (a worker process gets ``cores // workers``),
so the NumPy forward of a trained head always runs on one thread; the NumPy engine
trains on ``train.blas_threads``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, ContextManager

__all__ = ["blas_threads"]


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # inspecting the loaded libraries once: a limit then costs ~25 us


def blas_threads(threads: int) -> ContextManager[Any]:
    """Limit BLAS to ``threads`` threads for a block (0: leave the library's default).

    Args:
        threads: BLAS threads, or 0 for no limit.

    Returns:
        A context manager.
    """
    if not threads:
        return contextlib.nullcontext()
    return _controller().limit(limits=int(threads), user_api="blas")
