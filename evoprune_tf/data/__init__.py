"""Datasets: image class folders, ``.npz``, TFDS (`images`), downloads by name (`download`); text corpora (`text`)."""

from evoprune_tf.data.download import DownloadError, download_dataset, known_datasets
from evoprune_tf.data.images import IMAGE_EXTENSIONS, NAMED_SOURCES, ImageSplits, is_named_source, load_images, to_rgb_array

__all__ = [
    "IMAGE_EXTENSIONS", "NAMED_SOURCES", "DownloadError", "ImageSplits", "download_dataset", "is_named_source",
    "known_datasets", "load_images", "to_rgb_array",
]
