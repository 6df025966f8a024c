"""How a group of same-shape heads is cut and fed: power-of-two chunks, and per-head rows."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evoprune_tf.train.plan import RowSplit

__all__ = ["OwnRows", "power_of_two_chunks"]


class OwnRows:
    """A group's per-head rows (`RowSplit`s of one partition size) as stacked arrays.

    Attributes:
        n: training rows per head (equal in a group).
        train: ``(P, n)`` int32 training rows of the trainer's train split.
        val: ``(P, n_val)`` int32 validation rows.
        sample_weight: ``(P, N)`` float32 class weight of every train-split row, from
            each head's own training labels (as a trainer on its rows computes them).
    """

    def __init__(self, trainer: Any, rows: Sequence[RowSplit]) -> None:
        self.train = np.stack([np.asarray(r.train) for r in rows]).astype(np.int32)
        self.val = np.stack([np.asarray(r.val) for r in rows]).astype(np.int32)
        self.n = int(self.train.shape[1])
        y = trainer._y_train
        self.sample_weight = np.stack([trainer._class_weights(y[r])[y] for r in self.train]).astype(np.float32)

    def heads_rows(self, batches: np.ndarray) -> np.ndarray:
        """Shared batch positions ``(E, nb, b)`` in ``[0, n)`` -> each head's rows ``(E, nb, P, b)``."""
        return np.ascontiguousarray(np.moveaxis(self.train[:, batches], 0, 2))


def power_of_two_chunks(members: Sequence[int], size: int) -> list[list[int]]:
    """Split into chunks of at most ``size``, each a power of two long (so compiled group sizes repeat)."""
    chunks, start = [], 0
    while start < len(members):
        left = min(size, len(members) - start)
        take = 1 << (left.bit_length() - 1)
        chunks.append(list(members[start : start + take]))
        start += take
    return chunks
