"""Filter coupling groups read from a Keras functional graph (the dependency graph of Torch-Pruning).

A *coupling group* is a set of channels that must be pruned together: the output filters of
one or more producer layers (Conv1D/2D/3D, SeparableConv, Dense) plus every per-channel
tensor those channels flow through (BatchNormalization, DepthwiseConv, PReLU) up to the layers
that absorb them (the next Conv/Dense, whose kernel loses the matching input rows).

The analysis walks the graph once in topological order and describes every layer's output
channel axis as a *layout*: an ordered list of whole groups (a concatenation places each
input's group at a fixed offset) and a repeat count (``Flatten`` repeats the channel vector
once per spatial position). Channel-wise layers pass the layout through, residual merges
(``Add``, ``Multiply``, ...) unite the groups they sum, and layers whose output channels are
not a per-channel function of their inputs (``Reshape`` that moves channels, ``Permute``,
``LayerNormalization``, ...) are *barriers*: the groups entering them cannot be pruned.

Nothing here is a per-architecture table: Keras Applications networks (MobileNetV2,
ResNet50, VGG16, DenseNet121, ...), hand-built functional CNNs and ``keras.Sequential``
models all go through the same rules. The only name-based convention is the definition of
a *block* (see `model_blocks`), used to select "the groups of the last K blocks".
"""

from __future__ import annotations

import dataclasses
import heapq
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Literal

import keras
import numpy as np

__all__ = [
    "Block",
    "ChannelRef",
    "FilterGroup",
    "filter_groups",
    "model_blocks",
    "select_groups",
]

L = keras.layers

# Layers whose output filters start a new group and whose kernel consumes the input channels.
_PRODUCERS: tuple[type, ...] = (
    L.Conv1D, L.Conv2D, L.Conv3D, L.SeparableConv1D, L.SeparableConv2D, L.Dense,
)
# Per-channel layers that tie input and output channels and hold per-channel weights.
_DEPTHWISE: tuple[type, ...] = (L.DepthwiseConv1D, L.DepthwiseConv2D)
# Channel-wise layers without per-channel weights: the layout passes through unchanged.
_CHANNELWISE: tuple[type, ...] = (
    L.Activation, L.ReLU, L.LeakyReLU, L.ELU,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
    L.Identity, L.Rescaling,
)
# Element-wise merges: every full-width input is tied channel by channel.
_TIE_MERGES: tuple[type, ...] = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Layers we understand but that mix channels in ways surgery cannot follow: the groups
# entering them are not prunable and their output is a new fixed group.
_BARRIERS: tuple[type, ...] = (
    L.Permute, L.LayerNormalization, L.GroupNormalization, L.UnitNormalization, L.Softmax,
    L.Lambda, L.RepeatVector, L.Normalization, L.Embedding, L.Masking, L.Dot,
    L.LSTM, L.GRU, L.SimpleRNN, L.Bidirectional, L.MultiHeadAttention, L.Attention,
    L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose,
)
_CROSS_CHANNEL_ACTIVATIONS = {"softmax", "log_softmax"}

# Layer kinds recorded per node (surgery and FLOPs dispatch on these).
INPUT, PRODUCER, DEPTHWISE, NORM, PRELU, CHANNELWISE, RESHAPE, TIE, CONCAT, FLATTEN, BARRIER = (
    "input", "producer", "depthwise", "norm", "prelu", "channelwise", "reshape", "tie",
    "concat", "flatten", "barrier",
)


def _supported_names() -> str:
    classes = (*_PRODUCERS, *_DEPTHWISE, L.BatchNormalization, L.PReLU, *_CHANNELWISE,
               *_TIE_MERGES, L.Concatenate, L.Flatten, L.Reshape, *_BARRIERS)
    return ", ".join(sorted({c.__name__ for c in classes}))


@dataclasses.dataclass(frozen=True)
class ChannelRef:
    """Where a group's channels sit in one layer's input (or per-channel weights).

    Channel ``j`` of the group is row ``r * period + offset + j`` of the layer's input
    channel axis for every ``r`` in ``range(repeats)``: ``repeats`` is 1 except after
    ``Flatten``, where the channel vector repeats once per spatial position.

    Attributes:
        layer: Name of the layer.
        offset: Offset of the group's first channel within one channel vector.
        period: Length of the channel vector that holds the group (the tensor's channels).
        repeats: Number of spatial positions after ``Flatten`` (1 otherwise).
    """

    layer: str
    offset: int
    period: int
    repeats: int = 1

    def rows(self, size: int) -> np.ndarray:
        """The input rows of ``layer`` that carry this group's ``size`` channels.

        Args:
            size: The group's number of channels.

        Returns:
            Integer array of shape ``(repeats, size)``.
        """
        return (np.arange(self.repeats)[:, None] * self.period + self.offset + np.arange(size)[None, :])


@dataclasses.dataclass(frozen=True)
class FilterGroup:
    """Channels that must be pruned together.

    Attributes:
        name: Stable name: the first producer layer's name (topological order).
        size: Number of channels (filters) in the group.
        producers: Layers whose output filters (units) are these channels.
        members: Per-channel layers (BatchNormalization, DepthwiseConv, PReLU) whose weights
            are sliced, with the group's offset in their channel axis.
        consumers: Layers whose kernel input axis loses the pruned channels, with offsets.
        prunable: False when the channels reach the model output or a barrier layer.
        index: Topological position (in `model.layers` order) of the first producer.
        reason: Why the group is not prunable (``None`` when prunable).
    """

    name: str
    size: int
    producers: tuple[str, ...]
    members: tuple[ChannelRef, ...]
    consumers: tuple[ChannelRef, ...]
    prunable: bool
    index: int
    reason: str | None = None


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


@dataclasses.dataclass
class _Node:
    """One layer of the graph: its inputs are named by the layers that produce them."""

    name: str
    layer: keras.layers.Layer
    position: int
    inputs: list[str]
    kind: str = ""


@dataclasses.dataclass(frozen=True)
class _Layout:
    """A tensor's channel axis: whole raw groups in order, repeated ``repeats`` times."""

    segs: tuple[int, ...]
    repeats: int = 1


class _Graph:
    """The single-node functional graph of a model, in topological order."""

    def __init__(self, model: keras.Model) -> None:
        if isinstance(model, keras.Sequential):
            model = _sequential_as_functional(model)
        self.model = model
        try:
            outputs = list(model.outputs)
            inputs = list(model.inputs)
        except (AttributeError, ValueError) as exc:
            raise ValueError(f"model '{model.name}' has no functional graph: build it on keras.Input first") from exc
        if not outputs or not inputs:
            raise ValueError(f"model '{model.name}' has no functional graph: build it on keras.Input first")
        producer_of: dict[int, str] = {}
        layers = list(model.layers)
        for layer in layers:
            if isinstance(layer, keras.Model):
                raise ValueError(
                    f"cannot analyse layer '{layer.name}' ({type(layer).__name__}): nested models are not "
                    "supported, build the head on base.output instead of calling the base model"
                )
            out = layer.output
            if isinstance(out, (list, tuple)):
                raise ValueError(f"cannot analyse layer '{layer.name}' ({type(layer).__name__}): it has several outputs")
            producer_of[id(out)] = layer.name
        raw: dict[str, _Node] = {}
        for pos, layer in enumerate(layers):
            if isinstance(layer, L.InputLayer):
                ins: list[str] = []
            else:
                tensors = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
                ins = []
                for t in tensors:
                    if id(t) not in producer_of:
                        raise ValueError(
                            f"cannot analyse layer '{layer.name}': its input is not produced inside model "
                            f"'{model.name}' (shared layers or layers called on several graphs are not supported)"
                        )
                    ins.append(producer_of[id(t)])
            raw[layer.name] = _Node(layer.name, layer, pos, ins)
        self.output_names = [producer_of[id(t)] for t in outputs]
        self.input_names = [producer_of[id(t)] for t in inputs]
        self.nodes = _toposort(list(raw.values()))
        for pos, node in enumerate(self.nodes):
            node.position = pos
        self.by_name = {n.name: n for n in self.nodes}
        self.consumers: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for node in self.nodes:
            for src in node.inputs:
                self.consumers[src].append(node.name)


def _sequential_as_functional(model: keras.Sequential) -> keras.Model:
    """The functional view of a built Sequential model (same layers, same weights)."""
    try:
        return keras.Model(model.inputs, model.outputs, name=model.name)
    except (AttributeError, ValueError) as exc:
        raise ValueError(
            f"Sequential model '{model.name}' is not built: give it a keras.Input(shape=...) first"
        ) from exc


def _toposort(nodes: list[_Node]) -> list[_Node]:
    """Kahn's algorithm, ties broken by the model's own layer order (stable for Keras graphs)."""
    by_name = {n.name: n for n in nodes}
    indeg = {n.name: len(n.inputs) for n in nodes}
    users: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for src in n.inputs:
            users[src].append(n.name)
    heap = [(n.position, n.name) for n in nodes if indeg[n.name] == 0]
    heapq.heapify(heap)
    order: list[_Node] = []
    while heap:
        _, name = heapq.heappop(heap)
        order.append(by_name[name])
        for u in users[name]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, (by_name[u].position, u))
    if len(order) != len(nodes):
        raise ValueError("cannot analyse model: its layer graph has a cycle")
    return order


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []

    def new(self, size: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Keep the older group as the root so names follow the first producer.
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


class Analysis:
    """The coupling analysis of one model: layouts per layer and the public groups.

    Produced by `analyse`; used by surgery, masking and cutting. Treat it as read-only.

    Attributes:
        graph: The model's graph (``graph.model`` is the functional model analysed).
        groups: The public `FilterGroup` list, in topological order.
    """

    def __init__(self, model: keras.Model) -> None:
        self.graph = _Graph(model)
        self.uf = _UnionFind()
        self.out_layout: dict[str, _Layout] = {}
        self.fixed_reason: dict[int, str] = {}
        self.producer_group: dict[str, int] = {}
        self._walk()
        self._finish()

    # -- the walk -------------------------------------------------------------------------
    def _fix(self, layout: _Layout, reason: str) -> None:
        for g in layout.segs:
            self.fixed_reason.setdefault(g, reason)

    def _new_fixed(self, channels: int, reason: str) -> _Layout:
        g = self.uf.new(channels)
        self.fixed_reason[g] = reason
        return _Layout((g,))

    def _channels(self, layout: _Layout) -> int:
        return sum(self.uf.size[g] for g in layout.segs) * layout.repeats

    def _walk(self) -> None:
        for node in self.graph.nodes:
            layer = node.layer
            ins = [self.out_layout[s] for s in node.inputs]
            kind, out = self._rule(node, layer, ins)
            node.kind = kind
            self.out_layout[node.name] = out
        for name in self.graph.output_names:
            self._fix(self.out_layout[name], f"reaches the model output ('{name}')")

    def _rule(self, node: _Node, layer: keras.layers.Layer, ins: list[_Layout]) -> tuple[str, _Layout]:
        name, cls = node.name, type(layer).__name__
        out_shape = tuple(layer.output.shape)
        out_channels = out_shape[-1]
        if out_channels is None and not isinstance(layer, (L.InputLayer,)):
            raise ValueError(f"cannot analyse layer '{name}' ({cls}): its output channel count is unknown")
        if isinstance(layer, L.InputLayer):
            if out_shape[-1] is None:
                raise ValueError(f"cannot analyse input '{name}': its channel count (last axis) is None")
            return INPUT, self._new_fixed(out_shape[-1], f"comes from the model input ('{name}')")
        fmt = getattr(layer, "data_format", "channels_last")
        if fmt == "channels_first":
            raise ValueError(f"cannot analyse layer '{name}' ({cls}): data_format='channels_first' is not supported")
        if isinstance(layer, _PRODUCERS):
            (inp,) = ins
            if getattr(layer, "groups", 1) != 1:
                self._fix(inp, f"feeds the grouped convolution '{name}'")
                return PRODUCER, self._new_fixed(out_channels, f"comes from the grouped convolution '{name}'")
            g = self.uf.new(out_channels)
            self.producer_group[name] = g
            return PRODUCER, _Layout((g,))
        if isinstance(layer, _DEPTHWISE):
            (inp,) = ins
            if layer.depth_multiplier != 1:
                self._fix(inp, f"feeds '{name}' with depth_multiplier={layer.depth_multiplier}")
                return BARRIER, self._new_fixed(out_channels, f"comes from '{name}' (depth_multiplier != 1)")
            return DEPTHWISE, inp
        if isinstance(layer, L.BatchNormalization):
            (inp,) = ins
            axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
            if axis not in (-1, len(out_shape) - 1):
                self._fix(inp, f"feeds '{name}', which normalises axis {layer.axis}")
                return BARRIER, self._new_fixed(out_channels, f"comes from '{name}'")
            return NORM, inp
        if isinstance(layer, L.PReLU):
            (inp,) = ins
            alpha_last = tuple(layer.alpha.shape)[-1]
            return (PRELU if alpha_last == out_channels and out_channels != 1 else CHANNELWISE), inp
        if isinstance(layer, _CHANNELWISE):
            (inp,) = ins
            cross = isinstance(layer, L.Activation) and _activation_name(layer) in _CROSS_CHANNEL_ACTIVATIONS
            if isinstance(layer, L.Rescaling):
                cross = np.ndim(layer.scale) > 0 or np.ndim(layer.offset) > 0
            if cross or self._channels(inp) != out_channels:
                return self._barrier(name, cls, ins, out_channels)
            return CHANNELWISE, inp
        if isinstance(layer, L.Reshape):
            (inp,) = ins
            in_channels = tuple(layer.input.shape)[-1]
            if inp.repeats == 1 and in_channels == out_channels:
                return RESHAPE, inp
            return self._barrier(name, cls, ins, out_channels)
        if isinstance(layer, L.Flatten):
            (inp,) = ins
            in_shape = tuple(layer.input.shape)
            spatial = in_shape[1:-1]
            if inp.repeats != 1 or any(d is None for d in spatial):
                return self._barrier(name, cls, ins, out_channels)
            return FLATTEN, _Layout(inp.segs, int(np.prod(spatial, dtype=np.int64)) if spatial else 1)
        if isinstance(layer, L.Concatenate):
            rank = len(out_shape)
            if layer.axis in (-1, rank - 1):
                if any(lay.repeats != 1 for lay in ins):
                    return self._barrier(name, cls, ins, out_channels)
                return CONCAT, _Layout(tuple(g for lay in ins for g in lay.segs))
            return self._tie(name, cls, ins, out_channels)
        if isinstance(layer, _TIE_MERGES):
            return self._tie(name, cls, ins, out_channels)
        if isinstance(layer, _BARRIERS):
            return self._barrier(name, cls, ins, out_channels)
        raise ValueError(f"cannot analyse layer '{name}' ({cls}): supported are {_supported_names()}")

    def _barrier(self, name: str, cls: str, ins: list[_Layout], out_channels: int) -> tuple[str, _Layout]:
        for lay in ins:
            self._fix(lay, f"feeds '{name}' ({cls}), which mixes channels")
        return BARRIER, self._new_fixed(out_channels, f"comes from '{name}' ({cls})")

    def _tie(self, name: str, cls: str, ins: list[_Layout], out_channels: int) -> tuple[str, _Layout]:
        full = [lay for lay in ins if self._channels(lay) == out_channels]
        for lay in ins:
            if self._channels(lay) != out_channels:
                # A broadcast input (one channel) cannot lose channels with the others.
                self._fix(lay, f"is broadcast by '{name}' ({cls})")
        ref = full[0]
        shape = (tuple(self.uf.size[g] for g in ref.segs), ref.repeats)
        if any((tuple(self.uf.size[g] for g in lay.segs), lay.repeats) != shape for lay in full[1:]):
            # Differently concatenated inputs would need channel-level groups: refuse to prune.
            return self._barrier(name, cls, ins, out_channels)
        for lay in full[1:]:
            for a, b in zip(ref.segs, lay.segs):
                self.uf.union(a, b)
        return TIE, ref

    # -- public summary -----------------------------------------------------------------
    def _finish(self) -> None:
        uf = self.uf
        reason_of_root: dict[int, str] = {}
        for g, why in sorted(self.fixed_reason.items()):
            reason_of_root.setdefault(uf.find(g), why)
        producers: dict[int, list[str]] = {}
        for node in self.graph.nodes:
            if node.name in self.producer_group:
                producers.setdefault(uf.find(self.producer_group[node.name]), []).append(node.name)
        members: dict[int, list[ChannelRef]] = {r: [] for r in producers}
        consumers: dict[int, list[ChannelRef]] = {r: [] for r in producers}
        for node in self.graph.nodes:
            if node.kind not in (PRODUCER, DEPTHWISE, NORM, PRELU):
                continue
            lay = self.out_layout[node.inputs[0]]
            period = sum(uf.size[g] for g in lay.segs)
            offset = 0
            for g in lay.segs:
                r = uf.find(g)
                if r in producers:
                    ref = ChannelRef(node.name, offset, period, lay.repeats)
                    (consumers if node.kind == PRODUCER else members)[r].append(ref)
                offset += uf.size[g]
        self.root_name: dict[int, str] = {}
        groups = []
        for r, names in producers.items():
            first = self.graph.by_name[names[0]]
            self.root_name[r] = names[0]
            why = reason_of_root.get(r)
            if why is None and not consumers[r]:
                why = "has no consumer layer"
            groups.append(FilterGroup(
                name=names[0], size=uf.size[r], producers=tuple(names), members=tuple(members[r]),
                consumers=tuple(consumers[r]), prunable=why is None, index=first.position, reason=why,
            ))
        groups.sort(key=lambda grp: grp.index)
        self.groups = groups
        self.group_by_name = {grp.name: grp for grp in groups}
        self.prunable_roots = {uf.find(self.producer_group[grp.name]) for grp in groups if grp.prunable}

    # -- helpers for surgery ------------------------------------------------------------
    def layout_keep(self, layout: _Layout, keep_by_root: dict[int, np.ndarray]) -> np.ndarray:
        """The boolean keep vector of a tensor's channel axis."""
        parts = [keep_by_root.get(self.uf.find(g), None) for g in layout.segs]
        vec = np.concatenate([
            p if p is not None else np.ones(self.uf.size[g], dtype=bool) for p, g in zip(parts, layout.segs)
        ]) if layout.segs else np.zeros(0, dtype=bool)
        return np.tile(vec, layout.repeats) if layout.repeats != 1 else vec

    def segments(self, layout: _Layout) -> list[tuple[str | None, int]]:
        """``(group name or None when fixed, size)`` per segment of a layout."""
        out = []
        for g in layout.segs:
            r = self.uf.find(g)
            out.append((self.root_name[r] if r in self.prunable_roots else None, self.uf.size[g]))
        return out


def _activation_name(layer: keras.layers.Layer) -> str:
    act = layer.get_config().get("activation")
    return act if isinstance(act, str) else getattr(act, "__name__", str(act))


_CACHE: "weakref.WeakKeyDictionary[keras.Model, Analysis]" = weakref.WeakKeyDictionary()


def analyse(model: keras.Model) -> Analysis:
    """The coupling analysis of ``model`` (cached per model object: graphs do not change).

    Args:
        model: A built functional or Sequential ``keras.Model``.

    Returns:
        The `Analysis`, whose ``groups`` are those of `filter_groups`.

    Raises:
        ValueError: For a layer the analysis cannot handle, a nested model or an unbuilt model.
    """
    try:
        return _CACHE[model]
    except (KeyError, TypeError):
        pass
    result = Analysis(model)
    try:
        _CACHE[model] = result
    except TypeError:
        pass
    return result


def filter_groups(model: keras.Model) -> list[FilterGroup]:
    """The coupling groups of a functional (or Sequential) Keras model.

    Conv -> BatchNormalization -> activation/padding/pooling/dropout share one group;
    DepthwiseConv ties its input and output channels; residual merges (``Add``...) unite
    every tensor they combine; ``Concatenate`` places each input's group at its offset;
    consumers (Conv, SeparableConv, Dense, also after global pooling or ``Flatten``) lose
    the matching input rows. Groups reaching the model output or a barrier layer are
    returned with ``prunable=False``.

    Args:
        model: A built functional or Sequential ``keras.Model`` (channels-last).

    Returns:
        The groups in topological order of their first producer.

    Raises:
        ValueError: ``"cannot analyse layer 'foo' (SomeLayer): supported are ..."`` for a
            layer type the analysis does not know, nested models, or unknown channel counts.
    """
    return list(analyse(model).groups)


_BLOCK_TOKEN = re.compile(r"^(.*?block_?\d+)(?:_|$)")
_STAGE_TOKEN = re.compile(r"^((?:conv|pool)\d+)(?:_|$)")
_MOBILENET_UNIT = re.compile(r"^(.*?)_(?:expand|depthwise|project|dw|pw)(?:_|$)")


def block_key(name: str) -> str | None:
    """The default block key of a layer name (Keras Applications' naming conventions).

    Rules, first match wins: the leading part through a ``block<N>``/``block_<N>`` token
    (``block_3_expand`` -> ``block_3``, ``conv4_block2_1_conv`` -> ``conv4_block2``,
    ``block3_conv1`` -> ``block3``); a leading ``conv<N>``/``pool<N>`` token (``conv1_conv``
    -> ``conv1``, ``pool2_conv`` -> ``pool2``); the part before ``_expand``/``_depthwise``/
    ``_project``/``_dw``/``_pw`` (``expanded_conv_project`` -> ``expanded_conv``). Other
    names have no key.

    Args:
        name: A layer name.

    Returns:
        The key, or ``None``.
    """
    for pattern in (_BLOCK_TOKEN, _STAGE_TOKEN, _MOBILENET_UNIT):
        m = pattern.match(name)
        if m and m.group(1):
            return m.group(1)
    return None


def _is_conv_like(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, (*_PRODUCERS, *_DEPTHWISE))


def model_blocks(model: keras.Model, *, key: Callable[[str], str | None] = block_key) -> list[Block]:
    """Split the layers (topological order) into blocks.

    A block starts at the first layer whose ``key(name)`` is the key of some conv-like layer
    (Conv, SeparableConv, DepthwiseConv, Dense) and differs from the current block's key; a
    conv-like layer whose name has no key starts a block of its own (named after it); every
    other layer joins the current block. With Keras Applications names this yields
    MobileNetV2's ``Conv1``, ``expanded_conv``, ``block_1`` ... ``block_16``, ``Conv_1``;
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
    graph = _Graph(model)
    conv_keys = {key(n.name) for n in graph.nodes if _is_conv_like(n.layer)} - {None}
    blocks: list[tuple[str, list[str], int]] = []
    current: str | None = None
    used: set[str] = set()
    pending: list[str] = []
    for node in graph.nodes:
        k = key(node.name)
        starts = None
        if k is not None and k in conv_keys and k != current and k not in used:
            starts = k
        elif k is None and _is_conv_like(node.layer):
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
