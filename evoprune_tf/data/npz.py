"""``.npz`` image datasets: arrays ``x_train, y_train, x_test, y_test`` (optionally ``x_val, y_val, class_names``)."""

from __future__ import annotations

import pathlib

import numpy as np

from evoprune_tf.data.image_splits import LoadOptions, RawDataset, Split, subsample
from evoprune_tf.data.pixels import resize_array, to_uint8_images

__all__ = ["load_npz", "to_labels"]


def to_labels(y: np.ndarray, where: str, n: int) -> np.ndarray:
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


def load_npz(path: pathlib.Path, options: LoadOptions) -> RawDataset:
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

        splits: dict[str, Split] = {}
        for split_id, split in enumerate(("train", "val", "test")):
            if f"x_{split}" not in keys:
                continue
            x = to_uint8_images(get(f"x_{split}"), f"'{path}' x_{split}")
            y = to_labels(get(f"y_{split}"), f"'{path}' y_{split}", len(x))
            keep = subsample(y, options.max_per_class, options.seed, split_id)
            splits[split] = Split(resize_array(x[keep], options.image_size), y[keep])
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
    return RawDataset(splits["train"], splits["test"], splits.get("val"), names, [])
