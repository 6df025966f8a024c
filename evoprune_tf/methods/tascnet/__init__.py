"""TASCNet: structure learning of the deeper layers (stage 1) and trajectory-similarity filter pruning (stage 2).

The names below resolve on first use, so importing the package (the method registry
does, to read ``[tascnet]``) loads no Keras.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ORDERS": "evoprune_tf.methods.tascnet.similarity",
    "PairPruning": "evoprune_tf.methods.tascnet.similarity",
    "PairSimilarityModel": "evoprune_tf.methods.tascnet.similarity",
    "PairSimilarityRegularizer": "evoprune_tf.methods.tascnet.similarity",
    "assign_pruned_weights": "evoprune_tf.methods.tascnet.similarity",
    "cosine_similarity_matrix": "evoprune_tf.methods.tascnet.similarity",
    "filters_to_remove": "evoprune_tf.methods.tascnet.similarity",
    "n_pairs": "evoprune_tf.methods.tascnet.similarity",
    "pair_similarities": "evoprune_tf.methods.tascnet.similarity",
    "select_layer_pairs": "evoprune_tf.methods.tascnet.similarity",
    "select_pairs": "evoprune_tf.methods.tascnet.similarity",
    "KernelTrajectoryRecorder": "evoprune_tf.methods.tascnet.trajectories",
    "conv_kernels": "evoprune_tf.methods.tascnet.trajectories",
    "filter_matrix": "evoprune_tf.methods.tascnet.trajectories",
    "find_conv_layers": "evoprune_tf.methods.tascnet.trajectories",
    "iter_layers": "evoprune_tf.methods.tascnet.trajectories",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evoprune_tf.methods.tascnet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
