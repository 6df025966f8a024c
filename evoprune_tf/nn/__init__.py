"""Neural-network building blocks: masked layers, filter coupling, surgery and FLOPs counting."""

from evoprune_tf.nn.coupling import (
    Block, ChannelRef, FilterGroup, block_key, filter_groups, model_blocks, register_channel_rule, select_groups,
)
from evoprune_tf.nn.cut import cut_points, split_model
from evoprune_tf.nn.flops import FlopCount, LayerFlops, count_flops
from evoprune_tf.nn.surgery import (
    ChannelMask, expected_param_count, mask_filters, prune_filters, repair_masks, set_filter_masks,
)

__all__ = [
    "Block", "ChannelMask", "ChannelRef", "FilterGroup", "FlopCount", "LayerFlops", "block_key", "count_flops",
    "cut_points", "expected_param_count", "filter_groups", "mask_filters", "model_blocks", "prune_filters",
    "register_channel_rule", "repair_masks", "select_groups", "set_filter_masks", "split_model",
]
