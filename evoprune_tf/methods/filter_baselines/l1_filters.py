"""``l1_filters``: prune the filters of smallest L1 norm (Li et al., "Pruning Filters for Efficient ConvNets", 2017).

A filter's score is the L1 norm of its kernel, summed over the producers of its
coupling group (the convolutions a residual connection ties together). Li et al. rank
within each layer (``ranking = "layer"``, the default: every group prunes the same
fraction); ``"global"`` ranks every searched filter together, each group's norms
divided by their mean first.
"""

from __future__ import annotations

from typing import Any

from evoprune_tf.methods.filter_baselines.method import FilterBaseline
from evoprune_tf.methods.registry import register

__all__ = ["L1Filters"]


@register
class L1Filters(FilterBaseline):
    """Smallest-L1-norm filters pruned, per layer by default."""

    name = "l1_filters"
    summary = "baseline: prune the smallest-L1 filters (Li et al. 2017) to a FLOPs target, then retrain as DeepPruningES"
    scopes = ("layer", "global")

    def scores(self, model: Any, groups: list, *, config: Any, evaluator: Any = None) -> dict:
        """Per filter, the L1 norm of its producers' kernels (`evoprune_tf.nn.widths.group_l1_norms`)."""
        from evoprune_tf.nn.widths import group_l1_norms

        return group_l1_norms(model, groups)
