"""Backbone features, extracted once and cached on disk.

Every fitness evaluation trains heads on the same pooled features, so they are computed
once per (backbone, options, weights, image size, set of images) and stored as a
``.npz`` under the cache folder (``cache_dir``, else ``$EVOPRUNE_CACHE_DIR``, else
``~/.cache/evoprune_tf/features``). Files are written atomically and carry a SHA-256
checksum of their arrays; a corrupt or unreadable file is reported with a
`FeatureCacheWarning` and recomputed, never trusted.

The cache is keyed by the images themselves, not by how they are split: a file holds
one feature row per distinct image (by SHA-256 of its pixels), so every seed, split and
fold of the same images reuses one extraction, and labels are taken from the images.

The backbone is built only on a cache miss, so a hit costs neither TensorFlow graph
building nor weights loading. A process whose Keras runs on another backend than
TensorFlow (JAX, for faster head training) extracts a miss in a child process on
TensorFlow when it is installed (`evoprune_tf.features.child`): it writes the same cache
entry, and the features equal in-process ones to float32 rounding. Processes that miss
the same entry at once extract it once: the others wait on its lock and read the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import tempfile
import time
import warnings
from typing import Any, Mapping

import numpy as np

from evoprune_tf import backbones
from evoprune_tf.data import ImageSplits, load_images
from evoprune_tf.features.cache import (
    CACHE_FORMAT_VERSION,
    FeatureCacheInfo,
    FeatureCacheWarning,
    cache_path,
    default_cache_dir,
    feature_cache_key,
    images_digest,
    key_fields,
    key_of,
    lay_out,
    read_cache,
    set_digest,
    split_digests,
    weights_identity,
    write_cache,
)
from evoprune_tf.features.child import ChildExtractionError, backend_installed, extract_in_child, process_backend
from evoprune_tf.features.forward import run_backbone
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.file_lock import exclusive_lock

__all__ = [
    "CACHE_FORMAT_VERSION",
    "FeatureCacheInfo",
    "FeatureCacheWarning",
    "default_cache_dir",
    "extract_features",
    "extract_features_with_info",
    "feature_cache_key",
    "images_digest",
    "check_imagenet_weights",
    "load_features",
    "weights_identity",
]


def _keras_home_models() -> pathlib.Path:
    """``$KERAS_HOME/models`` (default ``~/.keras/models``), found without importing Keras."""
    return pathlib.Path(os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))) / "models"


def check_imagenet_weights(
    backbone: str,
    *,
    image_size: int | None = None,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    host: str = "storage.googleapis.com",
    timeout: float = 3.0,
) -> None:
    """Fail in seconds, before any image is read, when ImageNet weights cannot be had.

    Nothing is checked when the weights file is already in ``$KERAS_HOME/models`` or the
    feature cache holds files of this backbone and size (a hit needs no weights). Else
    the download host must answer a TCP connection within ``timeout`` seconds.

    Args:
        backbone: backbone name (any spelling).
        image_size: input size (None: the backbone's default).
        options: backbone options (e.g. ``{"alpha": 0.5}``).
        cache_dir: the feature cache folder (default `default_cache_dir`).
        host: where Keras downloads the weights from.
        timeout: seconds to wait for the host.

    Raises:
        RuntimeError: one line naming the file, where to put it, and ``--weights``.
    """
    import socket

    name = backbones.canonical_name(backbone)
    size = image_size or backbones.backbone_info(name).default_size
    file_name = backbones.imagenet_weights_filename(name, size, **dict(options or {}))
    folder = _keras_home_models()
    if (folder / file_name).is_file():
        return
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if any(cache.glob(f"{name}_{size}px_*.npz")):
        return
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        raise RuntimeError(
            f"ImageNet weights '{file_name}' of {name} are not in {folder}/ and {host} cannot be reached "
            f"({type(error).__name__}: {error}); put that file there ($KERAS_HOME/models/) "
            "or pass --weights <path to the file> (backbone.weights)"
        ) from None


def extract_features_with_info(
    images: ImageSplits,
    *,
    backbone: str,
    weights: str | os.PathLike[str] | None = "imagenet",
    image_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    backbone_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
    cache: bool = True,
    tensorflow_child: bool | None = None,
) -> tuple[FeatureSplits, FeatureCacheInfo]:
    """Pooled backbone features of every image, and where they came from (cache or backbone).

    Args:
        images: the dataset (see `evoprune_tf.data.load_images`).
        backbone: backbone name, any spelling (see `evoprune_tf.backbones`).
        weights: ``"imagenet"``, a weights file path or ``None`` (random init).
        image_size: backbone input size; must equal the images' size (it is checked,
            never silently resized). Defaults to the images' size.
        cache_dir: cache folder; defaults to `default_cache_dir`.
        batch_size: images per backbone call.
        backbone_kwargs: extra backbone options (e.g. ``{"alpha": 0.5}``).
        progress: show a progress bar over all images while extracting.
        cache: read and write the cache (False: always extract, write nothing).
        tensorflow_child: on a cache miss, extract in a child process on Keras'
            TensorFlow backend (True), in this process (False), or (None, the default)
            in a child exactly when this process's Keras runs on another backend and
            TensorFlow is installed. A child that fails for another reason than bad
            input (a crash, a broken install) is reported with a `RuntimeWarning` and
            the features are extracted in this process.

    Returns:
        The float32 `FeatureSplits` (the images' labels, class names and name) and a
        `FeatureCacheInfo` (cache path, key, hit or miss, seconds, which backend).

    Raises:
        ValueError: unknown backbone or option, image size mismatch, bad batch size.
        FileNotFoundError: the weights path does not exist.
        RuntimeError: ImageNet weights are needed, not cached and cannot be downloaded.
    """
    started = time.perf_counter()
    size = _check_request(images, backbone, image_size, batch_size)
    digests = split_digests(images)
    fields = key_fields(backbone, weights, size, set_digest(digests), backbone_kwargs)
    key = key_of(fields)
    folder = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = cache_path(folder, fields, key) if cache else None

    features = _cached(path, key, images, digests)
    if features is not None:
        return features, FeatureCacheInfo(path, key, True, time.perf_counter() - started)
    seen = _stamp(path)
    with _entry_lock(path):
        if _stamp(path) != seen:  # another process wrote the entry while this one waited
            features = _cached(path, key, images, digests)
            if features is not None:
                return features, FeatureCacheInfo(path, key, True, time.perf_counter() - started)
        miss = _Miss(images, digests, fields, key, weights, batch_size, path, progress)
        features, backend, child = _extract_miss(miss, size, tensorflow_child)
    return features, FeatureCacheInfo(path, key, False, time.perf_counter() - started, backend=backend, child=child)


def _entry_lock(path: pathlib.Path | None) -> contextlib.AbstractContextManager[None]:
    """One extraction per cache entry at a time: ``<entry>.lock`` beside it (nothing without caching).

    Processes that miss the same entry together (a grid's workers, parallel runs on one
    dataset) wait for the first one's file instead of each running the backbone.
    """
    if path is None:
        return contextlib.nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return exclusive_lock(path.with_name(path.name + ".lock"))


def _stamp(path: pathlib.Path | None) -> int | None:
    """The entry file's modification time (ns), or None when there is none: tells whether it was rewritten."""
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except FileNotFoundError:
        return None


@dataclasses.dataclass(frozen=True)
class _Miss:
    """One cache entry to extract: the images, the entry's key and file, how to run the backbone."""

    images: ImageSplits
    digests: Mapping[str, list[str]]
    fields: Mapping[str, Any]
    key: str
    weights: str | os.PathLike[str] | None
    batch_size: int
    path: pathlib.Path | None
    progress: bool


def _extract_miss(miss: _Miss, size: int, tensorflow_child: bool | None) -> tuple[FeatureSplits, str, bool]:
    """Run the backbone over every distinct image (here, or in a TensorFlow child) and write the entry.

    Returns:
        ``(features, the backend that extracted them, whether a child did)``.
    """
    order, unique = _distinct_images(miss.images, miss.digests, size)
    miss = dataclasses.replace(miss, batch_size=max(1, min(miss.batch_size, len(unique))))
    if len(unique) and _use_child(tensorflow_child):
        extracted_features = _extract_in_child(miss, unique, order, required=tensorflow_child is True)
        if extracted_features is not None:
            return extracted_features, "tensorflow", True

    from evoprune_tf.progress import stage_progress  # a bar on a terminal, one line per stage in a log

    fields = miss.fields
    model = backbones.build_backbone(fields["backbone"], weights=miss.weights, image_size=size, **fields["options"])
    with stage_progress(len(unique), f"{fields['backbone']} features", enabled=miss.progress, leave=True) as bar:
        table = run_backbone(model, unique, miss.batch_size, bar)
    features = lay_out(table, order, miss.images, miss.digests)
    if miss.path is not None:
        write_cache(miss.path, np.asarray(order, dtype="<U64"), table, fields, miss.key)
    return features, process_backend(), False


def _check_request(images: ImageSplits, backbone: str, image_size: int | None, batch_size: Any) -> int:
    """The backbone input size, after checking the size and batch size asked for (before any work)."""
    if image_size is not None and image_size != images.image_size:
        raise ValueError(
            f"image_size={image_size!r} but the images are {images.image_size}x{images.image_size}; "
            f"expected the size they were loaded at (load_images(..., image_size={image_size}))"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected a positive integer")
    return backbones.check_image_size(backbone, images.image_size)


def _cached(path: pathlib.Path | None, key: str, images: ImageSplits,
            digests: Mapping[str, list[str]]) -> FeatureSplits | None:
    """The features from the cache file, or None (no file, or one not to trust: a warning)."""
    if path is None or not path.exists():
        return None
    try:
        return read_cache(path, key, images, digests)
    except Exception as error:  # noqa: BLE001 - zip, npz, json, shape errors: all mean "do not trust"
        warnings.warn(
            f"feature cache '{path}' is corrupt or unreadable ({type(error).__name__}: {error}); recomputing",
            FeatureCacheWarning,
            stacklevel=3,
        )
        return None


def _distinct_images(images: ImageSplits, digests: Mapping[str, list[str]], size: int) -> tuple[list[str], np.ndarray]:
    """Each distinct image once, whatever split it is in (sorted by digest): the table the cache stores."""
    first: dict[str, tuple[str, int]] = {}
    for split, (pixels, _) in images.splits().items():
        for i, d in enumerate(digests[split]):
            first.setdefault(d, (split, i))
    order = sorted(first)
    pixels_of = images.splits()
    unique = (
        np.stack([pixels_of[first[d][0]][0][first[d][1]] for d in order])
        if order else np.zeros((0, size, size, 3), np.float32)
    )
    return order, unique


def _use_child(tensorflow_child: bool | None) -> bool:
    """Whether a cache miss is extracted in a TensorFlow child process (see `extract_features_with_info`)."""
    if tensorflow_child is not None:
        return bool(tensorflow_child)
    return process_backend() != "tensorflow" and backend_installed("tensorflow")


def _extract_in_child(miss: _Miss, unique: np.ndarray, order: list[str], *, required: bool) -> FeatureSplits | None:
    """Features from a TensorFlow child process, read back from the cache entry it wrote.

    Without caching (``miss.path`` None) the child writes into a temporary folder, deleted
    after reading. Returns None, after a `RuntimeWarning`, when the child failed for a
    reason other than bad input and ``required`` is False: the caller extracts in this
    process.
    """
    if required and not backend_installed("tensorflow"):
        raise ValueError("tensorflow_child=True but TensorFlow is not installed; expected it installed "
                         "(pip install tensorflow) or tensorflow_child=None/False")
    with tempfile.TemporaryDirectory(prefix="evoprune-features-") as scratch:
        target = miss.path if miss.path is not None else pathlib.Path(scratch) / "features.npz"
        try:
            extract_in_child(unique, order, fields=miss.fields, key=miss.key, weights=miss.weights,
                             batch_size=miss.batch_size, path=target, progress=miss.progress)
            return read_cache(target, miss.key, miss.images, miss.digests)
        except ChildExtractionError as error:
            if required:
                raise
            warnings.warn(f"{error}; extracting the features in this process on {process_backend()} instead",
                          RuntimeWarning, stacklevel=4)  # the caller of extract_features_with_info
            return None


def extract_features(images: ImageSplits, **options: Any) -> FeatureSplits:
    """Pooled backbone features of every image, from the cache when possible.

    Args:
        images: the dataset (see `evoprune_tf.data.load_images`).
        **options: the keyword arguments of `extract_features_with_info`: ``backbone``
            (required), ``weights``, ``image_size``, ``cache_dir``, ``batch_size``,
            ``backbone_kwargs``, ``progress``, ``cache``, ``tensorflow_child``.

    Returns:
        float32 `FeatureSplits` with the images' labels, class names and name.

    Raises:
        ValueError: unknown backbone or option, image size mismatch, bad batch size.
        FileNotFoundError: the weights path does not exist.
        RuntimeError: ImageNet weights are needed, not cached and cannot be downloaded.
    """
    return extract_features_with_info(images, **options)[0]


def load_features(
    source: str | os.PathLike[str],
    *,
    backbone: str,
    weights: str | os.PathLike[str] | None = "imagenet",
    image_size: int | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad_images: bool = False,
    max_per_class: int | None = None,
    name: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    backbone_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> FeatureSplits:
    """`load_images` then `extract_features`: a dataset source straight to features.

    Args:
        source: see `evoprune_tf.data.load_images`.
        backbone: backbone name, any spelling.
        weights: ``"imagenet"``, a weights file path or ``None``.
        image_size: input size; defaults to the backbone's ``default_size``.
        val_fraction: see `load_images`.
        test_fraction: see `load_images`.
        seed: see `load_images`.
        skip_bad_images: see `load_images`.
        max_per_class: see `load_images`.
        name: see `load_images`.
        cache_dir: see `extract_features`.
        batch_size: see `extract_features`.
        backbone_kwargs: see `extract_features`.
        progress: progress bars while reading images and extracting.

    Returns:
        float32 `FeatureSplits`.
    """
    size = backbones.backbone_info(backbone).default_size if image_size is None else image_size
    images = load_images(
        source,
        image_size=size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        skip_bad_images=skip_bad_images,
        max_per_class=max_per_class,
        name=name,
        progress=progress,
    )
    return extract_features(
        images,
        backbone=backbone,
        weights=weights,
        cache_dir=cache_dir,
        batch_size=batch_size,
        backbone_kwargs=backbone_kwargs,
        progress=progress,
    )
