"""`ImageSplits`, and how a dataset read from its source becomes one (`finish`).

Where the source has no test or validation split, `finish` holds one out of train,
stratified and seeded (`stratified_holdout`); `subsample` caps the images per class.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import numpy as np

from evoprune_tf.splits import ThreeSplits

__all__ = [
    "ImageSplits",
    "LoadOptions",
    "Split",
    "RawDataset",
    "check_image_size",
    "stream_rng",
    "stratified_holdout",
    "subsample",
    "take",
    "finish",
]


# Seeds of the independent random streams, so that changing one (e.g. max_per_class)
# never reshuffles another (e.g. the validation split).
_STREAM_TEST, _STREAM_VAL, _STREAM_SUBSAMPLE = 1, 2, 3


@dataclasses.dataclass
class ImageSplits(ThreeSplits):
    """Resized RGB images and labels of the three splits of a dataset.

    Attributes:
        train_images: ``(n_train, size, size, 3)`` uint8 RGB.
        train_labels: ``(n_train,)`` int64 labels in ``[0, n_classes)``.
        val_images: ``(n_val, size, size, 3)`` uint8 RGB.
        val_labels: ``(n_val,)`` int64.
        test_images: ``(n_test, size, size, 3)`` uint8 RGB (may have 0 rows).
        test_labels: ``(n_test,)`` int64.
        class_names: one name per class, index = label.
        name: a short name of the dataset (folder name, file stem or TFDS name).
        skipped: files skipped as unreadable (only with ``skip_bad_images=True``).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    name: str = "dataset"
    skipped: list[str] = dataclasses.field(default_factory=list)

    SPLIT_ARRAYS: ClassVar[tuple[str, str]] = ("{split}_images", "{split}_labels")

    @property
    def image_size(self) -> int:
        """Height (= width) of the images in pixels."""
        return int(self.train_images.shape[1])

    def content_hash(self) -> str:
        """SHA-256 hex digest of the images, labels and class names.

        Stable across processes, platforms and versions of this package as long as the
        pixels, labels and class names are the same; ``name`` and ``skipped`` are not
        part of it (renaming a dataset does not invalidate cached features).
        """
        digest = self._arrays_digest(b"evoprune_tf.ImageSplits/1\0", ("images", "labels"))
        digest.update("\0".join(self.class_names).encode("utf-8"))
        return digest.hexdigest()

    def summary(self) -> str:
        """One line: name, sizes, image size and classes."""
        return (
            f"{self.name}: {len(self.train_labels)} train / {len(self.val_labels)} val / "
            f"{len(self.test_labels)} test images, {self.image_size}x{self.image_size} px, "
            f"{self.n_classes} classes"
            + (f", {len(self.skipped)} unreadable skipped" if self.skipped else "")
        )


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """What `evoprune_tf.data.load_images` was asked for, checked."""

    image_size: int
    val_fraction: float
    test_fraction: float
    seed: int
    skip_bad_images: bool
    max_per_class: int | None
    progress: bool


@dataclasses.dataclass
class Split:
    """One split before validation is carved: images, labels, where they came from."""

    images: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass
class RawDataset:
    """A dataset as its source holds it: train, and test / val where the source has them."""

    train: Split
    test: Split | None
    val: Split | None
    class_names: tuple[str, ...]
    skipped: list[str]


def check_image_size(image_size: Any) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size={image_size!r}; expected a positive integer (pixels)")
    return int(image_size)


def stream_rng(seed: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *more])


def stratified_holdout(
    labels: np.ndarray, fraction: float, rng_for_class: Callable[[int], np.random.Generator]
) -> np.ndarray:
    """Boolean mask of the held-out part: ``round(n * fraction)`` per class, 1..n-1."""
    held = np.zeros(len(labels), dtype=bool)
    if fraction <= 0:
        return held
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        n = len(index)
        if n < 2:
            continue  # a singleton stays in the larger split
        k = min(max(int(round(n * fraction)), 1), n - 1)
        held[rng_for_class(int(label)).permutation(index)[:k]] = True
    return held


def subsample(labels: np.ndarray, max_per_class: int | None, seed: int, split_id: int) -> np.ndarray:
    """Sorted indices keeping at most ``max_per_class`` of each class (seeded)."""
    if max_per_class is None:
        return np.arange(len(labels))
    keep = []
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        if len(index) > max_per_class:
            index = stream_rng(seed, _STREAM_SUBSAMPLE, split_id, int(label)).choice(index, max_per_class, replace=False)
        keep.append(index)
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def take(split: Split, index: np.ndarray) -> Split:
    return Split(split.images[index], split.labels[index])


def finish(raw: RawDataset, options: LoadOptions, name: str) -> ImageSplits:
    train, test, val = raw.train, raw.test, raw.val
    if test is None:
        held = stratified_holdout(
            train.labels, options.test_fraction, lambda c: stream_rng(options.seed, _STREAM_TEST, c)
        )
        train, test = take(train, np.flatnonzero(~held)), take(train, np.flatnonzero(held))
    if val is None:
        held = stratified_holdout(
            train.labels, options.val_fraction, lambda c: stream_rng(options.seed, _STREAM_VAL, c)
        )
        train, val = take(train, np.flatnonzero(~held)), take(train, np.flatnonzero(held))
    if len(train.labels) == 0 or len(val.labels) == 0:
        raise ValueError(
            f"dataset {name!r} leaves {len(train.labels)} train / {len(val.labels)} validation images; "
            "expected both non-empty"
        )
    return ImageSplits(
        train_images=train.images,
        train_labels=train.labels.astype(np.int64),
        val_images=val.images,
        val_labels=val.labels.astype(np.int64),
        test_images=test.images,
        test_labels=test.labels.astype(np.int64),
        class_names=tuple(raw.class_names),
        name=name,
        skipped=list(raw.skipped),
    )
