"""Filter coupling: which channels of a Keras model must be pruned together.

Modules: `graph` (the flattened call graph), `rules` (how layers treat channels, and the
registry of user rules), `analysis` (the coupling groups) and `blocks` (blocks named after
Keras Applications conventions, and "the groups of the last K blocks").
"""

from evoprune_tf.nn.coupling.analysis import (
    BARRIER, CHANNELWISE, CONCAT, DEPTHWISE, FLATTEN, INPUT, NORM, PERCHANNEL, PRELU, PRODUCER, RESHAPE,
    SLICED_MEMBERS, TIE, Analysis, ChannelRef, FilterGroup, analyse, filter_groups, is_conv_like,
)
from evoprune_tf.nn.coupling.blocks import Block, block_key, model_blocks, select_groups
from evoprune_tf.nn.coupling.graph import Graph, Node
from evoprune_tf.nn.coupling.rules import ChannelRule, channel_rule, register_channel_rule

# The names the single-module `evoprune_tf.nn.coupling` had, for code written against it.
_Graph, _Node = Graph, Node

__all__ = [
    "BARRIER", "CHANNELWISE", "CONCAT", "DEPTHWISE", "FLATTEN", "INPUT", "NORM", "PERCHANNEL", "PRELU", "PRODUCER",
    "RESHAPE", "SLICED_MEMBERS", "TIE",
    "Analysis", "Block", "ChannelRef", "ChannelRule", "FilterGroup", "Graph", "Node", "analyse", "block_key",
    "channel_rule", "filter_groups", "is_conv_like", "model_blocks", "register_channel_rule", "select_groups",
]
