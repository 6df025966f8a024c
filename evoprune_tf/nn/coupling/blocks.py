"""Blocks of a model (runs of layers named alike) and "the groups of the last K blocks".

The only name-based convention of the coupling package: Keras Applications name their
layers ``block_3_expand``, ``conv4_block2_1_conv``, ``block3_conv1``...; `block_key` reads
the block out of such a name and `model_blocks` splits the topological order into blocks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Literal

import keras
import numpy as np

from evoprune_tf.nn.coupling.analysis import FilterGroup, is_conv_like
from evoprune_tf.nn.coupling.graph import Graph

__all__ = ["Block", "block_key", "model_blocks", "select_groups"]


@dataclasses.dataclass(frozen=True)
class Block:
    """A run of consecutive layers that share a block key (see `model_blocks`).

    Attributes:
        name: The block key (e.g. ``"block_3"``, ``"conv4_block2"``, ``"dense_1"``).
        layers: Layer names in topological order.
        start: Topological position of the first layer.
        stop: One past the topological position of the last layer.
    """

    name: str
    layers: tuple[str, ...]
    start: int
    stop: int



_BLOCK_TOKEN = re.compile(r"^(.*?block_?\d+[a-z]?)(?:_|$)")
_STAGE_TOKEN = re.compile(r"^((?:conv|pool)\d+)(?:_|$)")
_NUMBERED_UNIT = re.compile(r"^(.*?)_(?:dw|pw|pad)_(\d+)(?:_|$)")
_MOBILENET_UNIT = re.compile(r"^(.*?)_(?:expand|depthwise|squeeze_excite|project|dw|pw)(?:_|$)")


def block_key(name: str) -> str | None:
    """The default block key of a layer name (Keras Applications' naming conventions).

    Rules, first match wins: the leading part through a ``block<N>``/``block_<N>`` token,
    with an optional letter (``block_3_expand`` -> ``block_3``, ``conv4_block2_1_conv`` ->
    ``conv4_block2``, ``block3_conv1`` -> ``block3``, ``block2b_se_reduce`` -> ``block2b``);
    a leading ``conv<N>``/``pool<N>`` token (``conv1_conv`` -> ``conv1``, ``pool2_conv`` ->
    ``pool2``); a numbered ``_dw_<N>``/``_pw_<N>``/``_pad_<N>`` unit, keyed by its number
    (MobileNet's ``conv_dw_3``, ``conv_pw_3_bn`` and ``conv_pad_4`` -> ``conv_3``,
    ``conv_3``, ``conv_4``); the part before ``_expand``/``_depthwise``/
    ``_squeeze_excite``/``_project``/``_dw``/``_pw`` (``expanded_conv_project`` ->
    ``expanded_conv``). Other names have no key.

    Args:
        name: A layer name.

    Returns:
        The key, or ``None``.
    """
    for pattern in (_BLOCK_TOKEN, _STAGE_TOKEN, _NUMBERED_UNIT, _MOBILENET_UNIT):
        m = pattern.match(name)
        if m and m.group(1):
            return "_".join(m.groups())
    return None


def model_blocks(model: keras.Model, *, key: Callable[[str], str | None] = block_key) -> list[Block]:
    """Split the layers (topological order) into blocks.

    A block starts at the first layer whose ``key(name)`` is the key of some conv-like layer
    (Conv, SeparableConv, DepthwiseConv, Dense) and differs from the current block's key; a
    conv-like layer whose name has no key starts a block of its own (named after it); every
    other layer joins the current block. With Keras Applications names this yields
    MobileNetV2's ``Conv1``, ``expanded_conv``, ``block_1`` ... ``block_16``, ``Conv_1``;
    MobileNet's ``conv1``, ``conv_1`` ... ``conv_13``; MobileNetV3Small's ``conv``,
    ``expanded_conv``, ``expanded_conv_1`` ... ``expanded_conv_10``, ``conv_1``;
    EfficientNetB0's ``stem_conv``, ``block1a`` ... ``block7a``, ``top_conv``;
    ResNet50's ``conv1``, ``conv2_block1`` ... ``conv5_block3``; VGG16's ``block1`` ...
    ``block5``; DenseNet121's ``conv1``, ``conv2_block1`` ... ``pool2`` ... ``conv5_block16``;
    a head's Dense layers are one block each. Layers before the first conv-like layer (the
    input, padding) belong to the first block.

    Args:
        model: A built functional or Sequential ``keras.Model``.
        key: Maps a layer name to its block key (``None``: no key).

    Returns:
        The blocks in order.
    """
    graph = Graph(model)
    conv_keys = {key(n.name) for n in graph.nodes if is_conv_like(n.layer)} - {None}
    blocks: list[tuple[str, list[str], int]] = []
    current: str | None = None
    used: set[str] = set()
    pending: list[str] = []
    for node in graph.nodes:
        k = key(node.name)
        starts = None
        if k is not None and k in conv_keys and k != current and k not in used:
            starts = k
        elif k is None and is_conv_like(node.layer):
            starts = node.name
        if starts is not None:
            current = starts
            used.add(starts)
            blocks.append((starts, pending + [node.name], node.position - len(pending)))
            pending = []
        elif blocks:
            blocks[-1][1].append(node.name)
        else:
            pending.append(node.name)
    if not blocks:
        return [Block(model.name, tuple(pending), 0, len(pending))] if pending else []
    if pending:
        blocks[-1][1].extend(pending)
    return [Block(k, tuple(names), start, start + len(names)) for k, names, start in blocks]


def select_groups(
    groups: Sequence[FilterGroup],
    model: keras.Model,
    blocks: int | Literal["all"] = "all",
    *,
    prunable_only: bool = True,
) -> list[FilterGroup]:
    """The groups whose first producer lies in the last ``blocks`` blocks of ``model``.

    Blocks are those of `model_blocks` that contain a producer of some group. A group spanning
    several blocks (ResNet's stage group: the shortcut conv and every ``_3_conv``) belongs to
    the block of its first producer, so ``blocks=1`` on ResNet50 gives ``conv5_block3``'s
    ``_1_conv``/``_2_conv`` groups and not the stage group (whose channels also enter the
    earlier blocks), matching a cut before that block.

    Args:
        groups: Groups of ``model`` (from `filter_groups`).
        model: The model they were computed on.
        blocks: How many trailing blocks, or ``"all"``.
        prunable_only: Drop groups with ``prunable=False``.

    Returns:
        The selected groups in topological order.

    Raises:
        ValueError: When ``blocks`` is not a positive int or ``"all"``, or exceeds the number
            of blocks with groups (the message names the maximum).
    """
    chosen = [g for g in groups if g.prunable or not prunable_only]
    if blocks == "all":
        return chosen
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1:
        raise ValueError(f"blocks={blocks!r}: expected a positive int or 'all'")
    starts = sorted({g.index for g in groups})
    with_groups = [b for b in model_blocks(model) if any(b.start <= s < b.stop for s in starts)]
    if blocks > len(with_groups):
        raise ValueError(f"blocks={blocks}: model '{model.name}' has only {len(with_groups)} blocks with filter groups")
    first = with_groups[-int(blocks)].start
    return [g for g in chosen if g.index >= first]
