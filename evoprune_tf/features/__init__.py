"""Backbone features: extracted once, cached on disk (`extract`), and held as train/val/test splits (`splits`)."""

from evoprune_tf.features.extract import *  # noqa: F401,F403
from evoprune_tf.features.extract import __all__ as _extract_all
from evoprune_tf.features.splits import FeatureSplits

__all__ = [*_extract_all, "FeatureSplits"]
