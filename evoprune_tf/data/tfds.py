"""TensorFlow Datasets sources (``tfds:NAME``): needs ``tensorflow-datasets`` and, the first time, the network."""

from __future__ import annotations

from typing import Any

import numpy as np

from evoprune_tf.data.image_splits import LoadOptions, RawDataset, Split, subsample
from evoprune_tf.data.pixels import progress_bar, resize_array, to_uint8_images

__all__ = ["load_tfds"]


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            "dataset sources 'tfds:NAME' need tensorflow-datasets: pip install tensorflow-datasets "
            "(or the extra: pip install 'evoprune-tf[tfds]')"
        ) from None
    return tfds


def load_tfds(tfds_name: str, options: LoadOptions) -> RawDataset:
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

    splits: dict[str, Split] = {}
    for split_id, split in enumerate(("train", "val", "test")):
        if split not in present:
            continue
        images, labels = [], []
        bar = progress_bar(0, f"reading tfds {tfds_name}/{split}", options.progress)
        try:
            for image, label in tfds.as_numpy(present[split]):
                # Resize at once: holding e.g. 300x300 originals of a whole split costs GBs.
                image = to_uint8_images(np.asarray(image)[None], f"TFDS {tfds_name!r} {split} image")
                images.append(resize_array(image, options.image_size)[0])
                labels.append(int(label))
                bar.update(1)
        finally:
            bar.close()
        y = np.asarray(labels, dtype=np.int64)
        keep = subsample(y, options.max_per_class, options.seed, split_id)
        size = options.image_size
        resized = np.stack([images[i] for i in keep]) if len(keep) else np.empty((0, size, size, 3), np.uint8)
        splits[split] = Split(resized, y[keep])
    if not names:
        n_classes = 1 + max(int(s.labels.max()) for s in splits.values() if len(s.labels))
        names = tuple(str(i) for i in range(n_classes))
    return RawDataset(splits["train"], splits.get("test"), splits.get("val"), names, [])
