"""Running a frozen backbone over images in batches of one constant shape."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["run_backbone"]


def run_backbone(model: Any, images: np.ndarray, batch_size: int, bar: Any) -> np.ndarray:
    """Features of ``images`` in batches of exactly ``batch_size`` (the last one padded).

    A constant batch shape means one traced / compiled function for every batch and
    split. Padding is safe: the frozen backbone runs in inference mode, where every
    sample is computed independently.
    """
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        n = len(batch)
        if n < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), np.float32)])
        out.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32)[:n])
        bar.update(n)
    if not out:
        return np.zeros((0, int(model.output_shape[-1])), np.float32)
    return np.concatenate(out)
