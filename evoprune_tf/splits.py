"""What every train / validation / test container shares: its splits, its classes, its digest.

`ThreeSplits` is mixed into `evoprune_tf.data.ImageSplits` (images), `evoprune_tf.data.text.TextSplits`
(token ids) and `evoprune_tf.features.FeatureSplits` (backbone features). Each names its
arrays with ``SPLIT_ARRAYS``, two format strings of ``{split}`` (``train``, ``val``,
``test``): ``("x_{split}", "y_{split}")`` by default.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np

__all__ = ["SPLITS", "ThreeSplits"]

#: The split names, in order.
SPLITS = ("train", "val", "test")


class ThreeSplits:
    """Mixin of a dataclass holding an inputs array and a labels array per split, and ``class_names``."""

    SPLIT_ARRAYS: ClassVar[tuple[str, str]] = ("x_{split}", "y_{split}")
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train": (inputs, labels), "val": ..., "test": ...}`` in that order."""
        inputs, labels = self.SPLIT_ARRAYS
        return {s: (getattr(self, inputs.format(split=s)), getattr(self, labels.format(split=s))) for s in SPLITS}

    def _arrays_digest(self, tag: bytes, kinds: tuple[str, str]) -> Any:
        """SHA-256 over ``tag`` and every split's two arrays (dtype, shape, bytes), named ``split.kind``.

        The subclass's ``content_hash`` adds what else identifies its content and takes
        the hex digest.
        """
        digest = hashlib.sha256(tag)
        for split, arrays in self.splits().items():
            for kind, array in zip(kinds, arrays):
                array = np.ascontiguousarray(array)
                digest.update(f"{split}.{kind}:{array.dtype.str}:{array.shape}\0".encode())
                digest.update(array.tobytes())
        return digest
