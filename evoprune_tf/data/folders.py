"""Class-folder datasets: ``root/{train,test[,val]}/<class>/<image>`` or ``root/<class>/<image>``.

Files are decoded and resized in a thread pool (Pillow releases the GIL).
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
from typing import Sequence

import numpy as np

from evoprune_tf.data.image_splits import LoadOptions, RawDataset, Split, subsample
from evoprune_tf.data.pixels import progress_bar, to_rgb_array

__all__ = ["IMAGE_EXTENSIONS", "load_folder"]


#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


# Sub-folder names that mark a pre-split dataset; several spellings of "val" are common.
_TRAIN_DIRS = ("train",)
_VAL_DIRS = ("val", "valid", "validation")
_TEST_DIRS = ("test",)
# Folders that never hold a class (macOS archive debris besides the hidden ones).
_IGNORED_DIRS = ("__MACOSX",)


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
    paths: Sequence[pathlib.Path], options: LoadOptions, skipped: list[str], desc: str
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
    bar = progress_bar(len(paths), desc, options.progress)
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


def _folder_split(
    folder: pathlib.Path,
    class_names: tuple[str, ...] | None,
    options: LoadOptions,
    skipped: list[str],
    split_id: int,
    reference: pathlib.Path | None = None,
) -> tuple[Split, tuple[str, ...]]:
    files = _class_folders(folder)
    names = tuple(files)
    if class_names is not None and names != class_names:
        raise ValueError(
            f"class folders differ between '{reference}' {list(class_names)} and '{folder}' {list(names)}; "
            "expected the same classes in every split"
        )
    paths = [p for n in names for p in files[n]]
    labels = np.array([i for i, n in enumerate(names) for _ in files[n]], dtype=np.int64)
    keep = subsample(labels, options.max_per_class, options.seed, split_id)
    paths, labels = [paths[i] for i in keep], labels[keep]
    images, ok = _read_files(paths, options, skipped, f"reading {folder.name}")
    labels = labels[ok]
    for i, n in enumerate(names):
        if not np.any(labels == i):
            raise ValueError(f"class folder '{folder / n}' holds no readable images; expected at least one")
    return Split(images, labels), names


def load_folder(root: pathlib.Path, options: LoadOptions) -> RawDataset:
    train_dir = _find_split_dir(root, _TRAIN_DIRS)
    val_dir = _find_split_dir(root, _VAL_DIRS)
    test_dir = _find_split_dir(root, _TEST_DIRS)
    skipped: list[str] = []
    split_names = {*_TRAIN_DIRS, *_VAL_DIRS, *_TEST_DIRS}
    others = [p.name for p in root.iterdir() if _is_visible_dir(p) and p.name not in split_names]
    if train_dir is not None and val_dir is None and test_dir is None and not others:
        # Only train/: its classes are split here like a single folder of class folders.
        train, names = _folder_split(train_dir, None, options, skipped, split_id=0)
        return RawDataset(train, None, None, names, skipped)
    if train_dir is None or (val_dir is None and test_dir is None):
        # One folder of class folders, split here.
        train, names = _folder_split(root, None, options, skipped, split_id=0)
        return RawDataset(train, None, None, names, skipped)
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
    return RawDataset(train, test, val, names, skipped)
