"""Datasets: image class folders, ``.npz`` files and TFDS (`images`); text corpora (`text`)."""

from evoprune_tf.data.images import IMAGE_EXTENSIONS, ImageSplits, load_images, to_rgb_array

__all__ = ["IMAGE_EXTENSIONS", "ImageSplits", "load_images", "to_rgb_array"]
