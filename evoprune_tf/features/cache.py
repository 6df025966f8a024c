"""The on-disk feature cache: keys, digests, and checked, atomic ``.npz`` files.

Features are computed once per (backbone, options, weights, image size, set of images)
and stored as a ``.npz`` under the cache folder (``cache_dir``, else
``$EVOPRUNE_CACHE_DIR``, else ``~/.cache/evoprune_tf/features``). Files are written
atomically and carry a SHA-256 checksum of their arrays; a file that fails a check is
refused by `read_cache` (the caller recomputes it).

The cache is keyed by the images themselves, not by how they are split: a file holds
one feature row per distinct image (by SHA-256 of its pixels), so every seed, split and
fold of the same images reuses one extraction, and labels are taken from the images.
Both the in-process extraction (`evoprune_tf.features.extract`) and the TensorFlow child
(`evoprune_tf.features.child`) write entries through `write_cache`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile
import time
from typing import Any, Mapping

import numpy as np

from evoprune_tf import backbones
from evoprune_tf.data import ImageSplits
from evoprune_tf.features.splits import FeatureSplits

__all__ = [
    "CACHE_FORMAT_VERSION",
    "FeatureCacheInfo",
    "FeatureCacheWarning",
    "default_cache_dir",
    "feature_cache_key",
    "images_digest",
    "lay_out",
    "read_cache",
    "weights_identity",
    "write_cache",
]

#: Bumped whenever the stored layout or the extraction changes meaning.
CACHE_FORMAT_VERSION = 2



class FeatureCacheWarning(RuntimeWarning):
    """A cached feature file was corrupt or unreadable and is being recomputed."""


@dataclasses.dataclass(frozen=True)
class FeatureCacheInfo:
    """Where the features of one `extract_features_with_info` call came from.

    Attributes:
        path: the cache file (``None`` when caching was off).
        key: the cache key (see `feature_cache_key`).
        hit: True when the features were read from the cache.
        seconds: wall time of the call (reading or extracting, writing).
        backend: the Keras backend that extracted them (``""`` on a cache hit).
        child: True when a child process extracted them (on TensorFlow).
    """

    path: pathlib.Path | None
    key: str
    hit: bool
    seconds: float
    backend: str = ""
    child: bool = False


def default_cache_dir() -> pathlib.Path:
    """``$EVOPRUNE_CACHE_DIR`` when set, else ``~/.cache/evoprune_tf/features``."""
    env = os.environ.get("EVOPRUNE_CACHE_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "evoprune_tf" / "features"


_WEIGHTS_HASHES: dict[tuple[str, int, int], str] = {}


def weights_identity(weights: str | os.PathLike[str] | None) -> str:
    """What identifies a weights choice in a cache key.

    ``"imagenet"`` and ``None`` stand for themselves; a file is identified by the
    SHA-256 of its bytes (so renaming or moving it keeps the cache, editing it does
    not). Hashes are memoised per (path, size, mtime).

    Raises:
        FileNotFoundError: the weights path does not exist.
    """
    if weights is None:
        return "random-init"
    if isinstance(weights, str) and weights == "imagenet":
        return "imagenet"
    path = pathlib.Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file '{path}' does not exist; expected 'imagenet', None or a path to a weights file"
        )
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _WEIGHTS_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _WEIGHTS_HASHES[memo] = "sha256:" + digest.hexdigest()
    return _WEIGHTS_HASHES[memo]


def key_fields(
    backbone: str,
    weights: str | os.PathLike[str] | None,
    image_size: int,
    content_hash: str,
    backbone_kwargs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    name = backbones.canonical_name(backbone)
    return {
        "format": CACHE_FORMAT_VERSION,
        "backbone": name,
        "options": backbones.canonical_options(name, **dict(backbone_kwargs or {})),
        "weights": weights_identity(weights),
        "image_size": int(image_size),
        "images": content_hash,
    }


def key_of(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _image_digests(pixels: np.ndarray) -> list[str]:
    """SHA-256 of each image's bytes (with its dtype and shape): what identifies it in the cache."""
    pixels = np.ascontiguousarray(pixels)
    header = f"{pixels.dtype.str}:{pixels.shape[1:]}\0".encode()
    return [hashlib.sha256(header + image.tobytes()).hexdigest() for image in pixels]


def split_digests(images: ImageSplits) -> dict[str, list[str]]:
    return {split: _image_digests(pixels) for split, (pixels, _) in images.splits().items()}


def set_digest(digests: Mapping[str, list[str]]) -> str:
    """One digest for the *set* of images, whatever the split, order or duplicates."""
    unique = sorted({d for split in digests.values() for d in split})
    return hashlib.sha256(("evoprune_tf.image_set/1\0" + "\n".join(unique)).encode()).hexdigest()


def images_digest(images: ImageSplits) -> str:
    """The digest of the set of images of ``images`` (split, order and labels left out).

    Two `ImageSplits` holding the same pictures, however they are split (another seed,
    another fold), have the same digest, hence share one feature cache file.

    Args:
        images: the dataset.

    Returns:
        A SHA-256 hex digest.
    """
    return set_digest(split_digests(images))


def feature_cache_key(
    images: ImageSplits | str,
    *,
    backbone: str,
    weights: str | os.PathLike[str] | None,
    image_size: int | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """The cache key of the features of ``images`` under a backbone.

    SHA-256 of: the canonical backbone name, its options with defaults filled in, the
    weights identity (`weights_identity`), the image size, the digest of the set of
    images (`images_digest`: not their split) and `CACHE_FORMAT_VERSION`. The dataset's
    name is not part of it.

    Args:
        images: the images, or their `images_digest`.
        backbone: backbone name (any spelling).
        weights: ``"imagenet"``, a weights file path or ``None``.
        image_size: backbone input size; defaults to the images' size.
        backbone_kwargs: extra backbone options (e.g. ``{"alpha": 0.5}``).

    Returns:
        A SHA-256 hex digest.
    """
    if isinstance(images, ImageSplits):
        size = images.image_size if image_size is None else image_size
        content = images_digest(images)
    else:
        if image_size is None:
            raise ValueError("image_size=None with an images digest; expected the image size in pixels")
        size, content = image_size, images
    return key_of(key_fields(backbone, weights, size, content, backbone_kwargs))


def _checksum(digests: np.ndarray, table: np.ndarray, meta: str) -> str:
    digest = hashlib.sha256()
    for name, array in (("digests", digests), ("features", table)):
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\0".encode())
        digest.update(array.tobytes())
    digest.update(meta.encode("utf-8"))
    return digest.hexdigest()


def cache_path(cache_dir: pathlib.Path, fields: Mapping[str, Any], key: str) -> pathlib.Path:
    return cache_dir / f"{fields['backbone']}_{fields['image_size']}px_{key}.npz"


def read_cache(path: pathlib.Path, key: str, images: ImageSplits,
                digests: Mapping[str, list[str]] | None = None) -> FeatureSplits:
    """Read and verify a cache file, then lay its rows out as the images' splits; raises on anything suspicious."""
    with np.load(path, allow_pickle=False) as archive:
        stored = archive["digests"]
        table = archive["features"]
        meta = str(archive["meta"])
        stored_checksum = str(archive["checksum"])
    if _checksum(stored, table, meta) != stored_checksum:
        raise ValueError("checksum mismatch")
    if json.loads(meta).get("key") != key:
        raise ValueError("the file belongs to another cache key")
    if table.dtype != np.float32 or table.ndim != 2 or len(table) != len(stored):
        raise ValueError("features are not a float32 table with one row per image")
    digests = digests or split_digests(images)
    known = {str(d) for d in stored}
    for split in images.splits():
        missing = [d for d in digests[split] if d not in known]
        if missing:
            raise ValueError(f"{len(missing)} {split} image(s) are not in the file")
    return lay_out(table, stored, images, digests)


def lay_out(table: np.ndarray, row_digests: Any, images: ImageSplits,
            digests: Mapping[str, list[str]]) -> FeatureSplits:
    """The rows of a feature table (one per distinct image) laid out as the images' splits.

    Args:
        table: float32 features, one row per entry of ``row_digests``.
        row_digests: the image digest of each row.
        images: the dataset (its labels, class names and name are kept).
        digests: each split's image digests (`split_digests`), all among ``row_digests``.

    Returns:
        The `FeatureSplits`.
    """
    row = {str(d): i for i, d in enumerate(row_digests)}
    arrays: dict[str, np.ndarray] = {}
    for split, (_, labels) in images.splits().items():
        index = np.asarray([row[d] for d in digests[split]], dtype=np.int64)
        arrays[f"x_{split}"] = table[index] if len(index) else np.zeros((0, table.shape[1]), np.float32)
        arrays[f"y_{split}"] = np.asarray(labels, dtype=np.int64).copy()
    return FeatureSplits(**arrays, class_names=tuple(images.class_names), name=images.name)


def write_cache(path: pathlib.Path, digests: np.ndarray, table: np.ndarray, fields: Mapping[str, Any], key: str) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``.

    Args:
        path: the cache file.
        digests: one image digest per row of ``table``.
        table: float32 features, one row per distinct image.
        fields: the key fields (recorded in the file's metadata).
        key: the cache key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    digests = np.asarray(digests, dtype="<U64")
    table = np.ascontiguousarray(table, dtype=np.float32)
    meta = json.dumps({**fields, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, sort_keys=True)
    checksum = _checksum(digests, table, meta)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(handle, digests=digests, features=table, meta=np.asarray(meta), checksum=np.asarray(checksum))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # temporary files are private (0600); the cache need not be
        os.replace(handle.name, path)
    except BaseException:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
        raise
