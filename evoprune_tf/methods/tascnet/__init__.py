"""TASCNet: structure learning of the deeper layers (stage 1) and trajectory-similarity filter pruning (stage 2)."""

from evoprune_tf.methods.tascnet.similarity import (
    ORDERS,
    PairPruning,
    PairSimilarityModel,
    PairSimilarityRegularizer,
    assign_pruned_weights,
    cosine_similarity_matrix,
    filters_to_remove,
    n_pairs,
    pair_similarities,
    select_layer_pairs,
    select_pairs,
)
from evoprune_tf.methods.tascnet.trajectories import (
    KernelTrajectoryRecorder,
    conv_kernels,
    filter_matrix,
    find_conv_layers,
    iter_layers,
)

__all__ = [
    "ORDERS",
    "KernelTrajectoryRecorder",
    "PairPruning",
    "PairSimilarityModel",
    "PairSimilarityRegularizer",
    "assign_pruned_weights",
    "conv_kernels",
    "cosine_similarity_matrix",
    "filter_matrix",
    "filters_to_remove",
    "find_conv_layers",
    "iter_layers",
    "n_pairs",
    "pair_similarities",
    "select_layer_pairs",
    "select_pairs",
]
