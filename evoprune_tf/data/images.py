"""Image datasets -> resized uint8 train / validation / test arrays.

`load_images` reads a dataset from one of three forms and returns `ImageSplits`:

* a **class-folder dataset**: either a folder holding ``train/`` and ``test/`` (and
  optionally ``val/``) sub-folders, each with one sub-folder per class, or one folder of
  class sub-folders that is split (stratified, seeded) into train and test;
* a **.npz file** with arrays ``x_train, y_train, x_test, y_test`` (optionally
  ``x_val, y_val, class_names``);
* ``"tfds:NAME"``: a TensorFlow Datasets dataset (needs ``tensorflow-datasets`` and,
  the first time, the network);
* ``"download:NAME"``: a dataset of `evoprune_tf.data.download` (e.g.
  ``download:rock_paper_scissors``), downloaded once into the Keras cache with
  ``keras.utils.get_file`` and read as a class folder.

When no validation split is given, one is carved from train (stratified, seeded):
evolution selects on validation and keeps test for the final report.

This module reads images with Pillow and NumPy only: it never imports TensorFlow (except
for the ``tfds:`` form, which needs it), so it works under Keras' JAX backend.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "NAMED_SOURCES", "ImageSplits", "is_named_source", "load_images", "to_rgb_array"]

#: Prefixes of the data sources that are names, not paths.
NAMED_SOURCES = ("tfds:", "builtin:", "download:")


def is_named_source(source: str) -> bool:
    """Whether a data source is a name (``tfds:``, ``builtin:``, ``download:``) rather than a path.

    Args:
        source: a ``data.source`` / ``objectives.ood`` value.

    Returns:
        True for the named forms; their existence is not checked on disk.
    """
    return isinstance(source, str) and source.startswith(NAMED_SOURCES)

#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# Sub-folder names that mark a pre-split dataset; several spellings of "val" are common.
_TRAIN_DIRS = ("train",)
_VAL_DIRS = ("val", "valid", "validation")
_TEST_DIRS = ("test",)
# Folders that never hold a class (macOS archive debris besides the hidden ones).
_IGNORED_DIRS = ("__MACOSX",)

# Seeds of the independent random streams, so that changing one (e.g. max_per_class)
# never reshuffles another (e.g. the validation split).
_STREAM_TEST, _STREAM_VAL, _STREAM_SUBSAMPLE = 1, 2, 3


@dataclasses.dataclass
class ImageSplits:
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

    @property
    def image_size(self) -> int:
        """Height (= width) of the images in pixels."""
        return int(self.train_images.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train": (images, labels), "val": ..., "test": ...}`` in that order."""
        return {
            "train": (self.train_images, self.train_labels),
            "val": (self.val_images, self.val_labels),
            "test": (self.test_images, self.test_labels),
        }

    def content_hash(self) -> str:
        """SHA-256 hex digest of the images, labels and class names.

        Stable across processes, platforms and versions of this package as long as the
        pixels, labels and class names are the same; ``name`` and ``skipped`` are not
        part of it (renaming a dataset does not invalidate cached features).
        """
        digest = hashlib.sha256(b"evoprune_tf.ImageSplits/1\0")
        for split, (images, labels) in self.splits().items():
            for kind, array in (("images", images), ("labels", labels)):
                array = np.ascontiguousarray(array)
                header = f"{split}.{kind}:{array.dtype.str}:{array.shape}\0"
                digest.update(header.encode())
                digest.update(array.tobytes())
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


def load_images(
    source: str | os.PathLike[str],
    *,
    image_size: int,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad_images: bool = False,
    max_per_class: int | None = None,
    name: str | None = None,
    progress: bool = False,
) -> ImageSplits:
    """Load an image dataset as resized uint8 RGB train / validation / test splits.

    Args:
        source: a class-folder dataset (``root/{train,test[,val]}/<class>/<image>`` or
            ``root/<class>/<image>``), a ``.npz`` file (``x_train, y_train, x_test,
            y_test``, optionally ``x_val, y_val, class_names``), ``"tfds:NAME"`` or
            ``"download:NAME"`` (see `evoprune_tf.data.download.known_datasets`).
            A folder with ``train/`` and ``val/`` but no ``test/`` (the PyTorch-tutorial
            layout) uses its ``val/`` as the held-out *test* split and carves validation
            from train.
        image_size: side of the square output images; every image is converted to RGB
            and resized with Pillow's bilinear filter (aspect ratio not kept).
        val_fraction: fraction of each class of train held out as validation when the
            source has no validation split.
        test_fraction: fraction of each class held out as test when the source has no
            test split (a single folder of class folders, a TFDS dataset without one).
            0 gives an empty test split.
        seed: seeds the stratified splits and the ``max_per_class`` subsampling.
        skip_bad_images: skip unreadable image files (listed in ``ImageSplits.skipped``)
            instead of raising.
        max_per_class: keep at most this many images of each class in each split of the
            source (chosen at random with ``seed``, before validation is carved from
            train); for tests and quick demos.
        name: dataset name; defaults to the folder name, file stem or TFDS name.
        progress: show a progress bar while decoding image files.

    Returns:
        The splits; class names are the sorted class-folder names (folders), the
        ``class_names`` array or ``"0", "1", ...`` (npz), or the TFDS label names.

    Raises:
        FileNotFoundError: the folder or file does not exist.
        ValueError: a malformed dataset (fewer than two classes, an empty class folder,
            an unreadable image, classes differing between splits, missing npz arrays,
            an unknown source form) or bad arguments.
        ImportError: ``tfds:`` without ``tensorflow-datasets`` installed.
        evoprune_tf.data.download.DownloadError: ``download:`` failed (the message
            says what to do offline).
    """
    image_size = _check_image_size(image_size)
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}; expected a number in (0, 1)")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r}; expected a number in [0, 1)")
    if max_per_class is not None and (
        isinstance(max_per_class, bool) or int(max_per_class) != max_per_class or max_per_class < 1
    ):
        raise ValueError(f"max_per_class={max_per_class!r}; expected a positive integer or None")
    options = _Options(
        image_size=image_size,
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
        seed=int(seed),
        skip_bad_images=bool(skip_bad_images),
        max_per_class=None if max_per_class is None else int(max_per_class),
        progress=progress,
    )

    if isinstance(source, str) and source.startswith("download:"):
        from evoprune_tf.data.download import download_dataset

        download_name = source[len("download:"):].strip()
        raw = _load_folder(download_dataset(download_name), options)
        default_name = download_name
    elif isinstance(source, str) and source.startswith("tfds:"):
        tfds_name = source[len("tfds:"):].strip()
        if not tfds_name:
            raise ValueError(
                f"dataset source {source!r} names no dataset; expected 'tfds:NAME', e.g. 'tfds:rock_paper_scissors'"
            )
        raw = _load_tfds(tfds_name, options)
        default_name = tfds_name.split(":")[0].split("/")[0]
    elif isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"dataset source '{path}' does not exist; "
                "expected a class-folder dataset, a .npz file, 'tfds:NAME' or 'download:NAME'"
            )
        if path.is_dir():
            raw = _load_folder(path, options)
            default_name = path.resolve().name
        elif path.suffix.lower() == ".npz":
            raw = _load_npz(path, options)
            default_name = path.stem
        else:
            raise ValueError(
                f"dataset source '{path}' is a file but not a .npz; "
                "expected a class-folder dataset, a .npz file, 'tfds:NAME' or 'download:NAME'"
            )
    else:
        raise ValueError(
            f"dataset source {source!r} has type {type(source).__name__}; "
            "expected a path, 'tfds:NAME' or 'download:NAME'"
        )
    return _finish(raw, options, name or default_name)


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


# --------------------------------------------------------------------------- internals


@dataclasses.dataclass(frozen=True)
class _Options:
    image_size: int
    val_fraction: float
    test_fraction: float
    seed: int
    skip_bad_images: bool
    max_per_class: int | None
    progress: bool


@dataclasses.dataclass
class _Split:
    """One split before validation is carved: images, labels, where they came from."""

    images: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass
class _RawDataset:
    train: _Split
    test: _Split | None
    val: _Split | None
    class_names: tuple[str, ...]
    skipped: list[str]


def _check_image_size(image_size: Any) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size={image_size!r}; expected a positive integer (pixels)")
    return int(image_size)


def _rng(seed: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *more])


def _stratified_holdout(
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


def _subsample(labels: np.ndarray, max_per_class: int | None, seed: int, split_id: int) -> np.ndarray:
    """Sorted indices keeping at most ``max_per_class`` of each class (seeded)."""
    if max_per_class is None:
        return np.arange(len(labels))
    keep = []
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        if len(index) > max_per_class:
            index = _rng(seed, _STREAM_SUBSAMPLE, split_id, int(label)).choice(index, max_per_class, replace=False)
        keep.append(index)
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def _take(split: _Split, index: np.ndarray) -> _Split:
    return _Split(split.images[index], split.labels[index])


def _finish(raw: _RawDataset, options: _Options, name: str) -> ImageSplits:
    train, test, val = raw.train, raw.test, raw.val
    if test is None:
        held = _stratified_holdout(
            train.labels, options.test_fraction, lambda c: _rng(options.seed, _STREAM_TEST, c)
        )
        train, test = _take(train, np.flatnonzero(~held)), _take(train, np.flatnonzero(held))
    if val is None:
        held = _stratified_holdout(
            train.labels, options.val_fraction, lambda c: _rng(options.seed, _STREAM_VAL, c)
        )
        train, val = _take(train, np.flatnonzero(~held)), _take(train, np.flatnonzero(held))
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


# ------------------------------------------------------------------ class-folder datasets


def _is_visible_dir(path: pathlib.Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and path.name not in _IGNORED_DIRS


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _class_folders(folder: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    """``{class name: sorted image files}`` of a folder of class folders (validated)."""
    classes = sorted((p for p in folder.iterdir() if _is_visible_dir(p)), key=lambda p: p.name)
    if len(classes) < 2:
        raise ValueError(
            f"'{folder}' holds {len(classes)} class folder(s) {[p.name for p in classes]}; "
            "expected at least two class sub-folders"
        )
    files = {}
    for class_dir in classes:
        images = _image_files(class_dir)
        if not images:
            raise ValueError(
                f"class folder '{class_dir}' holds no images; "
                f"expected files ending in {', '.join(IMAGE_EXTENSIONS)}"
            )
        files[class_dir.name] = images
    return files


def _find_split_dir(root: pathlib.Path, names: Sequence[str]) -> pathlib.Path | None:
    found = [root / n for n in names if (root / n).is_dir()]
    if len(found) > 1:
        raise ValueError(f"'{root}' holds {[p.name for p in found]}; expected at most one of them")
    return found[0] if found else None


def _read_files(
    paths: Sequence[pathlib.Path], options: _Options, skipped: list[str], desc: str
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize ``paths`` in a thread pool (Pillow releases the GIL).

    Returns:
        The images and a boolean mask of the paths that were read.
    """
    from PIL import Image

    def read(path: pathlib.Path) -> np.ndarray | BaseException:
        try:
            with Image.open(path) as image:
                image.load()
                return to_rgb_array(image, options.image_size)
        except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
            return error

    size = options.image_size
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    ok = np.ones(len(paths), dtype=bool)
    workers = min(8, (os.cpu_count() or 1) + 1)
    bar = _progress_bar(len(paths), desc, options.progress)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for i, (path, result) in enumerate(zip(paths, pool.map(read, paths))):
                bar.update(1)
                if isinstance(result, BaseException):
                    if not options.skip_bad_images:
                        reason = f"{type(result).__name__}: {str(result).splitlines()[0] if str(result) else ''}"
                        raise ValueError(
                            f"cannot read image '{path}' ({reason}); "
                            "pass --skip-bad-images (skip_bad_images=True) to skip unreadable files"
                        )
                    skipped.append(str(path))
                    ok[i] = False
                else:
                    out[i] = result
    finally:
        bar.close()
    return out[ok], ok


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from evoprune_tf.progress import stage_progress  # a bar on a terminal, one line per stage in a log

    return stage_progress(total, desc, enabled=enabled)


def _folder_split(
    folder: pathlib.Path,
    class_names: tuple[str, ...] | None,
    options: _Options,
    skipped: list[str],
    split_id: int,
    reference: pathlib.Path | None = None,
) -> tuple[_Split, tuple[str, ...]]:
    files = _class_folders(folder)
    names = tuple(files)
    if class_names is not None and names != class_names:
        raise ValueError(
            f"class folders differ between '{reference}' {list(class_names)} and '{folder}' {list(names)}; "
            "expected the same classes in every split"
        )
    paths = [p for n in names for p in files[n]]
    labels = np.array([i for i, n in enumerate(names) for _ in files[n]], dtype=np.int64)
    keep = _subsample(labels, options.max_per_class, options.seed, split_id)
    paths, labels = [paths[i] for i in keep], labels[keep]
    images, ok = _read_files(paths, options, skipped, f"reading {folder.name}")
    labels = labels[ok]
    for i, n in enumerate(names):
        if not np.any(labels == i):
            raise ValueError(f"class folder '{folder / n}' holds no readable images; expected at least one")
    return _Split(images, labels), names


def _load_folder(root: pathlib.Path, options: _Options) -> _RawDataset:
    train_dir = _find_split_dir(root, _TRAIN_DIRS)
    val_dir = _find_split_dir(root, _VAL_DIRS)
    test_dir = _find_split_dir(root, _TEST_DIRS)
    skipped: list[str] = []
    split_names = {*_TRAIN_DIRS, *_VAL_DIRS, *_TEST_DIRS}
    others = [p.name for p in root.iterdir() if _is_visible_dir(p) and p.name not in split_names]
    if train_dir is not None and val_dir is None and test_dir is None and not others:
        # Only train/: its classes are split here like a single folder of class folders.
        train, names = _folder_split(train_dir, None, options, skipped, split_id=0)
        return _RawDataset(train, None, None, names, skipped)
    if train_dir is None or (val_dir is None and test_dir is None):
        # One folder of class folders, split here.
        train, names = _folder_split(root, None, options, skipped, split_id=0)
        return _RawDataset(train, None, None, names, skipped)
    if others:
        raise ValueError(
            f"'{root}' mixes split folders (train/val/test) with other folders {sorted(others)}; "
            "expected either split folders or class folders"
        )
    train, names = _folder_split(train_dir, None, options, skipped, split_id=0)
    val = test = None
    if val_dir is not None:
        val, _ = _folder_split(val_dir, names, options, skipped, split_id=1, reference=train_dir)
    if test_dir is not None:
        test, _ = _folder_split(test_dir, names, options, skipped, split_id=2, reference=train_dir)
    elif val is not None:
        # train/ + val/ only: that val/ is the dataset's held-out evaluation split, so it
        # becomes our test split and validation is carved from train.
        test, val = val, None
    return _RawDataset(train, test, val, names, skipped)


# ----------------------------------------------------------------------- .npz datasets


def _to_uint8_images(x: np.ndarray, where: str) -> np.ndarray:
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


def _resize_array(x: np.ndarray, image_size: int) -> np.ndarray:
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


def _to_labels(y: np.ndarray, where: str, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{where} has shape {y.shape}; expected ({n},) integer labels")
    whole_floats = np.issubdtype(y.dtype, np.floating) and bool(np.all(np.mod(y, 1) == 0))
    if not (np.issubdtype(y.dtype, np.integer) or whole_floats):
        raise ValueError(f"{where} has dtype {y.dtype}; expected integer labels")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise ValueError(f"{where} holds label {y.min()}; expected labels >= 0")
    return y


def _load_npz(path: pathlib.Path, options: _Options) -> _RawDataset:
    required = ("x_train", "y_train", "x_test", "y_test")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - np.load raises many types for bad files
        raise ValueError(
            f"cannot read '{path}' as .npz ({type(error).__name__}: {error}); expected a NumPy .npz archive"
        ) from None
    with archive:
        keys = set(archive.files)
        missing = [k for k in required if k not in keys]
        if missing:
            raise ValueError(
                f"'{path}' lacks arrays {missing}; expected x_train, y_train, x_test, y_test "
                "(optionally x_val, y_val, class_names)"
            )
        if ("x_val" in keys) != ("y_val" in keys):
            raise ValueError(f"'{path}' has only one of x_val / y_val; expected both or neither")

        def get(key: str) -> np.ndarray:
            try:
                return archive[key]
            except ValueError as error:  # object arrays need pickle, which we refuse
                raise ValueError(
                    f"'{path}' array {key!r} cannot be read without pickle ({error}); "
                    "expected plain numeric / string arrays"
                ) from None

        splits: dict[str, _Split] = {}
        for split_id, split in enumerate(("train", "val", "test")):
            if f"x_{split}" not in keys:
                continue
            x = _to_uint8_images(get(f"x_{split}"), f"'{path}' x_{split}")
            y = _to_labels(get(f"y_{split}"), f"'{path}' y_{split}", len(x))
            keep = _subsample(y, options.max_per_class, options.seed, split_id)
            splits[split] = _Split(_resize_array(x[keep], options.image_size), y[keep])
        n_classes = 1 + max(int(s.labels.max()) for s in splits.values() if len(s.labels))
        if "class_names" in keys:
            names = tuple(str(n) for n in np.asarray(get("class_names")).reshape(-1))
            if len(names) < n_classes:
                raise ValueError(
                    f"'{path}' class_names has {len(names)} names but labels reach {n_classes - 1}; "
                    "expected one name per class"
                )
        else:
            names = tuple(str(i) for i in range(n_classes))
    if len(names) < 2:
        raise ValueError(f"'{path}' holds {len(names)} class(es); expected at least two")
    return _RawDataset(splits["train"], splits["test"], splits.get("val"), names, [])


# ---------------------------------------------------------------------- TFDS datasets


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            "dataset sources 'tfds:NAME' need tensorflow-datasets: pip install tensorflow-datasets "
            "(or the extra: pip install 'evoprune-tf[tfds]')"
        ) from None
    return tfds


def _load_tfds(tfds_name: str, options: _Options) -> _RawDataset:
    tfds = _import_tfds()
    try:
        datasets, info = tfds.load(tfds_name, split=None, as_supervised=True, with_info=True)
    except Exception as error:  # noqa: BLE001 - network, unknown name, bad version...
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"cannot load TFDS dataset {tfds_name!r} ({type(error).__name__}: {first}); expected a TFDS name with "
            "downloaded data or network access (offline: use a class-folder dataset or a .npz file)"
        ) from None
    label_feature = info.features["label"] if "label" in info.features else None
    names = tuple(getattr(label_feature, "names", None) or ())

    aliases = {"train": ("train",), "val": ("validation", "val", "valid"), "test": ("test",)}
    present = {}
    for split, candidates in aliases.items():
        for candidate in candidates:
            if candidate in datasets:
                present[split] = datasets[candidate]
                break
    if "train" not in present:
        raise ValueError(f"TFDS dataset {tfds_name!r} has splits {sorted(datasets)}; expected a 'train' split")

    splits: dict[str, _Split] = {}
    for split_id, split in enumerate(("train", "val", "test")):
        if split not in present:
            continue
        images, labels = [], []
        bar = _progress_bar(0, f"reading tfds {tfds_name}/{split}", options.progress)
        try:
            for image, label in tfds.as_numpy(present[split]):
                # Resize at once: holding e.g. 300x300 originals of a whole split costs GBs.
                image = _to_uint8_images(np.asarray(image)[None], f"TFDS {tfds_name!r} {split} image")
                images.append(_resize_array(image, options.image_size)[0])
                labels.append(int(label))
                bar.update(1)
        finally:
            bar.close()
        y = np.asarray(labels, dtype=np.int64)
        keep = _subsample(y, options.max_per_class, options.seed, split_id)
        size = options.image_size
        resized = np.stack([images[i] for i in keep]) if len(keep) else np.empty((0, size, size, 3), np.uint8)
        splits[split] = _Split(resized, y[keep])
    if not names:
        n_classes = 1 + max(int(s.labels.max()) for s in splits.values() if len(s.labels))
        names = tuple(str(i) for i in range(n_classes))
    return _RawDataset(splits["train"], splits.get("test"), splits.get("val"), names, [])
