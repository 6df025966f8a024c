"""Pixels to uint8 RGB arrays of one size, with Pillow and NumPy (never TensorFlow)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_rgb_array", "to_uint8_images", "resize_array", "progress_bar"]


def to_rgb_array(image: Any, image_size: int) -> np.ndarray:
    """Convert one Pillow image to a ``(image_size, image_size, 3)`` uint8 RGB array.

    Grayscale, 16-bit grayscale, CMYK, RGBA and palette images (with or without
    transparency) become RGB; alpha is dropped, as Keras' and TensorFlow's image loaders
    do. The image is resized with Pillow's bilinear filter.

    Args:
        image: a ``PIL.Image.Image``.
        image_size: side of the output in pixels.

    Returns:
        The uint8 RGB array.
    """
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grayscale: PIL's convert() would clip at 255; scale the range instead.
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), mode="L")
    elif image.mode in ("P", "PA"):
        # Going through RGBA resolves palette transparency the way Pillow recommends.
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def to_uint8_images(x: np.ndarray, where: str) -> np.ndarray:
    """Validate an image array ``(N, H, W[, C])`` and bring it to uint8."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{where} has shape {x.shape}; expected images (N, H, W) or (N, H, W, C) with C in 1, 3, 4"
        )
    if x.dtype == np.uint8:
        return x
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where} has dtype {x.dtype}; expected uint8 images (0..255)")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 255.0)
    if lo < 0 or hi > 255 or (np.issubdtype(x.dtype, np.floating) and hi <= 1.0):
        raise ValueError(
            f"{where} has dtype {x.dtype} with values in [{lo:g}, {hi:g}]; "
            "expected uint8 images or numbers in 0..255"
        )
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def resize_array(x: np.ndarray, image_size: int) -> np.ndarray:
    """Resize a uint8 ``(N, H, W, C)`` array to RGB ``(N, size, size, 3)`` with Pillow."""
    from PIL import Image

    if x.shape[1:] == (image_size, image_size, 3):
        return np.ascontiguousarray(x)
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    out = np.empty((len(x), image_size, image_size, 3), dtype=np.uint8)
    for i, image in enumerate(x):
        channels = image.shape[-1]
        pil = Image.fromarray(image[..., 0] if channels == 1 else image, mode=modes[channels])
        out[i] = to_rgb_array(pil, image_size)
    return out


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from evoprune_tf.progress import stage_progress  # a bar on a terminal, one line per stage in a log

    return stage_progress(total, desc, enabled=enabled)
