"""Filter coupling groups read from a Keras call graph (the dependency graph of Torch-Pruning).

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

The graph is the model's call graph (`evoprune_tf.nn.coupling.graph`): nested functional or
Sequential models are expanded, a layer called several times is analysed per call (its
weights tie the channels of all its calls), and element-wise ``keras.ops`` calls recorded by
the graph (``x + 3.0``) are placed like layers. Custom layers are placed by the rules
declared with `register_channel_rule` (`evoprune_tf.nn.coupling.rules`); a layer without a
rule stops the analysis with a one-line error saying how to declare one.

Nothing here is a per-architecture table: every Keras Applications family, hand-built
functional CNNs and ``keras.Sequential`` models go through the same rules.
"""

from __future__ import annotations

import dataclasses
import weakref

import keras
import numpy as np

from evoprune_tf.nn.coupling.graph import Graph, Node
from evoprune_tf.nn.coupling.rules import (
    BARRIER_RULE, MERGE_RULE, ChannelRule, channel_rule, op_rule, registration_hint,
)

__all__ = ["Analysis", "ChannelRef", "FilterGroup", "analyse", "filter_groups", "is_conv_like"]

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
INPUT, PRODUCER, DEPTHWISE, NORM, PRELU, PERCHANNEL, CHANNELWISE, RESHAPE, TIE, CONCAT, FLATTEN, BARRIER = (
    "input", "producer", "depthwise", "norm", "prelu", "perchannel", "channelwise", "reshape", "tie",
    "concat", "flatten", "barrier",
)
#: Kinds whose layer holds per-channel weights sliced on the input channel axis.
SLICED_MEMBERS = (DEPTHWISE, NORM, PRELU, PERCHANNEL)


def is_conv_like(layer: object) -> bool:
    """Whether a layer is a convolution (any kind) or Dense: what starts a block."""
    return isinstance(layer, (*_PRODUCERS, *_DEPTHWISE))


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
class _Layout:
    """A tensor's channel axis: whole raw groups in order, repeated ``repeats`` times."""

    segs: tuple[int, ...]
    repeats: int = 1


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
        self.graph = Graph(model)
        self.uf = _UnionFind()
        self.out_layout: dict[str, _Layout] = {}
        self.in_layout: dict[str, _Layout] = {}
        self.fixed_reason: dict[int, str] = {}
        self.producer_group: dict[str, int] = {}
        self.rules: dict[str, ChannelRule] = {}
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
            ins = [self.out_layout[s] for s in node.inputs]
            if ins:
                self.in_layout[node.name] = ins[0]
            kind, out = self._rule(node, ins)
            node.kind = kind
            self.out_layout[node.name] = out
        for name in self.graph.output_names:
            self._fix(self.out_layout[name], f"reaches the model output ('{name}')")

    def _shared(self, node: Node, inp: _Layout) -> None:
        """A further call of a layer with weights: its input channels share the first call's rows."""
        if node.first_call is not None:
            self._tie(node.name, type(node.layer).__name__, [self.in_layout[node.first_call], inp],
                      self._channels(inp))

    def _rule(self, node: Node, ins: list[_Layout]) -> tuple[str, _Layout]:
        layer, name = node.layer, node.name
        cls = type(layer).__name__
        out_shape = node.output_shape
        out_channels = out_shape[-1] if out_shape else None
        if node.call is None:
            if out_channels is None:
                raise ValueError(f"cannot analyse input '{name}': its channel count (last axis) is None")
            return INPUT, self._new_fixed(out_channels, f"comes from the model input ('{name}')")
        if out_channels is None:
            raise ValueError(f"cannot analyse layer '{name}' ({cls}): its output channel count is unknown")
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            raise ValueError(f"cannot analyse layer '{name}' ({cls}): data_format='channels_first' is not supported")
        rule = channel_rule(layer) if isinstance(layer, keras.layers.Layer) else op_rule(layer, node.call)
        if rule is not None:
            return self._declared(node, rule, ins, out_channels)
        if isinstance(layer, _PRODUCERS):
            return self._producer(node, ins, out_channels)
        if isinstance(layer, (*_DEPTHWISE, L.BatchNormalization, L.PReLU)):
            return self._member(node, ins, out_channels)
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
            if inp.repeats == 1 and node.input_shape()[-1] == out_channels:
                return RESHAPE, inp
            return self._barrier(name, cls, ins, out_channels)
        if isinstance(layer, L.Flatten):
            (inp,) = ins
            spatial = node.input_shape()[1:-1]
            if inp.repeats != 1 or any(d is None for d in spatial):
                return self._barrier(name, cls, ins, out_channels)
            return FLATTEN, _Layout(inp.segs, int(np.prod(spatial, dtype=np.int64)) if spatial else 1)
        if isinstance(layer, L.Concatenate):
            if layer.axis in (-1, len(out_shape) - 1):
                if any(lay.repeats != 1 for lay in ins):
                    return self._barrier(name, cls, ins, out_channels)
                return CONCAT, _Layout(tuple(g for lay in ins for g in lay.segs))
            return self._tie(name, cls, ins, out_channels)
        if isinstance(layer, _TIE_MERGES):
            return self._tie(name, cls, ins, out_channels)
        if isinstance(layer, _BARRIERS):
            return self._barrier(name, cls, ins, out_channels)
        raise ValueError(registration_hint(name, cls))

    def _producer(self, node: Node, ins: list[_Layout], out_channels: int) -> tuple[str, _Layout]:
        layer, name = node.layer, node.name
        (inp,) = ins
        if getattr(layer, "groups", 1) != 1:
            self._fix(inp, f"feeds the grouped convolution '{name}'")
            return PRODUCER, self._new_fixed(out_channels, f"comes from the grouped convolution '{name}'")
        self._shared(node, inp)
        if node.first_call is not None:
            return PRODUCER, self.out_layout[node.first_call]
        g = self.uf.new(out_channels)
        self.producer_group[name] = g
        return PRODUCER, _Layout((g,))

    def _member(self, node: Node, ins: list[_Layout], out_channels: int) -> tuple[str, _Layout]:
        """DepthwiseConv, BatchNormalization, PReLU: per-channel weights on the input channels."""
        layer, name = node.layer, node.name
        (inp,) = ins
        if isinstance(layer, _DEPTHWISE) and layer.depth_multiplier != 1:
            self._fix(inp, f"feeds '{name}' with depth_multiplier={layer.depth_multiplier}")
            return BARRIER, self._new_fixed(out_channels, f"comes from '{name}' (depth_multiplier != 1)")
        if isinstance(layer, L.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
            if axis not in (-1, len(node.output_shape) - 1):
                self._fix(inp, f"feeds '{name}', which normalises axis {layer.axis}")
                return BARRIER, self._new_fixed(out_channels, f"comes from '{name}'")
        if isinstance(layer, L.PReLU) and not (tuple(layer.alpha.shape)[-1] == out_channels != 1):
            return CHANNELWISE, inp
        self._shared(node, inp)
        if isinstance(layer, _DEPTHWISE):
            return DEPTHWISE, inp
        return (NORM if isinstance(layer, L.BatchNormalization) else PRELU), inp

    def _declared(self, node: Node, rule: ChannelRule, ins: list[_Layout], out_channels: int) -> tuple[str, _Layout]:
        """A registered layer or a ``keras.ops`` operation."""
        name, cls = node.name, type(node.layer).__name__
        self.rules[name] = rule
        if rule.kind == MERGE_RULE:
            return self._tie(name, cls, ins, out_channels)
        if rule.kind == BARRIER_RULE or len(ins) != 1 or self._channels(ins[0]) != out_channels:
            return self._barrier(name, cls, ins, out_channels)
        (inp,) = ins
        weights = getattr(node.layer, "weights", [])
        if any(tuple(w.shape)[-1:] == (out_channels,) for w in weights):
            self._shared(node, inp)
            return PERCHANNEL, inp
        return CHANNELWISE, inp

    def _barrier(self, name: str, cls: str, ins: list[_Layout], out_channels: int,
                 why: str = "which mixes channels") -> tuple[str, _Layout]:
        for lay in ins:
            self._fix(lay, f"feeds '{name}' ({cls}), {why}")
        return BARRIER, self._new_fixed(out_channels, f"comes from '{name}' ({cls}), {why}")

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
            return self._barrier(name, cls, ins, out_channels, "which merges differently split channels")
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
            if node.kind != PRODUCER and node.kind not in SLICED_MEMBERS:
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
        ValueError: For a layer the analysis cannot place or an unbuilt model.
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
    returned with ``prunable=False``. Nested models are analysed through (group and layer
    names are those of the inner layers).

    Args:
        model: A built functional or Sequential ``keras.Model`` (channels-last).

    Returns:
        The groups in topological order of their first producer.

    Raises:
        ValueError: ``"cannot analyse layer 'foo' (SomeLayer): no channel rule for SomeLayer;
            declare one with evoprune_tf.nn.register_channel_rule(...)"`` for a layer the
            analysis cannot place, or for unknown channel counts.
    """
    return list(analyse(model).groups)


