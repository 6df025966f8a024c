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

Each form is read by its own module (`evoprune_tf.data.folders`, `evoprune_tf.data.npz`,
`evoprune_tf.data.tfds`) into the splits of `evoprune_tf.data.image_splits`.

This package reads images with Pillow and NumPy only: it never imports TensorFlow (except
for the ``tfds:`` form, which needs it), so it works under Keras' JAX backend.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from evoprune_tf.data.folders import IMAGE_EXTENSIONS, load_folder
from evoprune_tf.data.image_splits import ImageSplits, LoadOptions, RawDataset, check_image_size, finish
from evoprune_tf.data.npz import load_npz
from evoprune_tf.data.pixels import to_rgb_array
from evoprune_tf.data.tfds import load_tfds

# IMAGE_EXTENSIONS, ImageSplits and to_rgb_array live in `folders`, `image_splits` and
# `pixels`; they stay importable from here, where users import them.
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
    options = _checked_options(image_size, val_fraction, test_fraction, seed, skip_bad_images, max_per_class,
                               progress)
    raw, default_name = _read_source(source, options)
    return finish(raw, options, name or default_name)


def _checked_options(image_size: Any, val_fraction: float, test_fraction: float, seed: int, skip_bad_images: bool,
                     max_per_class: int | None, progress: bool) -> LoadOptions:
    """The options of `load_images`, checked before any file is read."""
    image_size = check_image_size(image_size)
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}; expected a number in (0, 1)")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r}; expected a number in [0, 1)")
    if max_per_class is not None and (
        isinstance(max_per_class, bool) or int(max_per_class) != max_per_class or max_per_class < 1
    ):
        raise ValueError(f"max_per_class={max_per_class!r}; expected a positive integer or None")
    return LoadOptions(
        image_size=image_size,
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
        seed=int(seed),
        skip_bad_images=bool(skip_bad_images),
        max_per_class=None if max_per_class is None else int(max_per_class),
        progress=progress,
    )


def _read_source(source: Any, options: LoadOptions) -> tuple[RawDataset, str]:
    """The dataset of ``source`` as its form's reader returns it, and the name it defaults to."""
    if isinstance(source, str) and source.startswith("download:"):
        from evoprune_tf.data.download import download_dataset

        download_name = source[len("download:"):].strip()
        raw = load_folder(download_dataset(download_name), options)
        default_name = download_name
    elif isinstance(source, str) and source.startswith("tfds:"):
        tfds_name = source[len("tfds:"):].strip()
        if not tfds_name:
            raise ValueError(
                f"dataset source {source!r} names no dataset; expected 'tfds:NAME', e.g. 'tfds:rock_paper_scissors'"
            )
        raw = load_tfds(tfds_name, options)
        default_name = tfds_name.split(":")[0].split("/")[0]
    elif isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"dataset source '{path}' does not exist; "
                "expected a class-folder dataset, a .npz file, 'tfds:NAME' or 'download:NAME'"
            )
        if path.is_dir():
            raw = load_folder(path, options)
            default_name = path.resolve().name
        elif path.suffix.lower() == ".npz":
            raw = load_npz(path, options)
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
    return raw, default_name
