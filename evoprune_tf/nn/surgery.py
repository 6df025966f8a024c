"""Physical filter surgery and channel masking driven by coupling groups.

`prune_filters` rebuilds a model layer by layer from the layers' configs with fewer
filters/units and sliced weights; `mask_filters` rebuilds it at full width with a
`ChannelMask` in front of every consumer, so that pruned channels contribute nothing. The
two give the same outputs (up to float round-off): the pruned model is the compact export
of the masked one. Keep masks map a group name (see `filter_groups`) to a boolean vector of
the group's size; groups left out are kept whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import numpy as np

from evoprune_tf.nn.coupling.analysis import (
    DEPTHWISE, INPUT, NORM, PERCHANNEL, PRELU, PRODUCER, RESHAPE, SLICED_MEMBERS, Analysis, FilterGroup, analyse,
)
from evoprune_tf.nn.coupling.graph import Graph, Node

__all__ = [
    "ChannelMask",
    "expected_param_count",
    "mask_filters",
    "prune_filters",
    "repair_masks",
    "set_filter_masks",
]

L = keras.layers


@keras.saving.register_keras_serializable(package="evoprune_tf")
class ChannelMask(keras.layers.Layer):
    """Multiplies the last axis by a fixed 0/1 vector (a non-trainable weight).

    The mask is a weight, so `set_mask` changes it without retracing a compiled model. The
    ``segments`` record which coupling group each stretch of channels belongs to, so that
    `set_filter_masks` can assign keep masks by group name (also after a save/load).

    Args:
        segments: ``[group name or None, size]`` per stretch of one channel vector; ``None``
            marks channels that are never masked.
        repeats: How many times the channel vector repeats along the axis (``Flatten``).
        **kwargs: Base ``Layer`` arguments (``name``, ``dtype``...).

    Input shape:
        Any tensor whose last axis has ``sum(sizes) * repeats`` entries.

    Output shape:
        Same as the input.
    """

    def __init__(self, segments: list | tuple = (), repeats: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.segments = [[None if n is None else str(n), int(s)] for n, s in segments]
        self.repeats = int(repeats)

    def build(self, input_shape: tuple) -> None:
        channels = int(input_shape[-1])
        expected = sum(s for _, s in self.segments) * self.repeats
        if self.segments and channels != expected:
            raise ValueError(f"ChannelMask '{self.name}': input has {channels} channels, segments imply {expected}")
        self.mask = self.add_weight(name="mask", shape=(channels,), initializer="ones", trainable=False)

    def call(self, inputs):
        return inputs * keras.ops.cast(self.mask, inputs.dtype)

    def set_mask(self, mask: np.ndarray) -> None:
        """Assign a new 0/1 mask of the layer's channel count.

        Args:
            mask: Boolean or 0/1 vector.
        """
        self.mask.assign(np.asarray(mask, dtype=self.mask.dtype))

    def mask_from_keep(self, keep: Mapping[str, np.ndarray]) -> np.ndarray:
        """The 0/1 mask implied by group keep masks (missing groups: all kept).

        Args:
            keep: Group name -> boolean keep mask.

        Returns:
            Float32 vector over this layer's channel axis.
        """
        parts = [np.asarray(keep[n], dtype=bool) if n is not None and n in keep else np.ones(s, dtype=bool)
                 for n, s in self.segments]
        vec = np.concatenate(parts) if parts else np.ones(0, dtype=bool)
        return np.tile(vec, self.repeats).astype(np.float32)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(segments=self.segments, repeats=self.repeats)
        return config


# -- keep masks ---------------------------------------------------------------------------
def _check_keep(analysis: Analysis, keep: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validated copies of the keep masks (boolean, right length, only prunable groups cut)."""
    out: dict[str, np.ndarray] = {}
    for name, mask in keep.items():
        group = analysis.group_by_name.get(name)
        if group is None:
            sample = ", ".join(g.name for g in analysis.groups[:5])
            raise ValueError(f"unknown filter group {name!r}: expected a name from filter_groups(model) ({sample}, ...)")
        arr = np.asarray(mask)
        if arr.ndim != 1 or arr.shape[0] != group.size:
            raise ValueError(f"keep mask for group {name!r} has shape {arr.shape}: expected ({group.size},)")
        if arr.dtype != bool:
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"keep mask for group {name!r} holds values other than 0/1: expected booleans")
            arr = arr.astype(bool)
        if not group.prunable and not arr.all():
            raise ValueError(f"group {name!r} is not prunable ({group.reason}): expected an all-True keep mask")
        out[name] = arr.copy()
    return out


def _producer_l1(layer: keras.layers.Layer) -> np.ndarray:
    """L1 norm of each output filter's kernel (the repair criterion)."""
    weights = {w.name: w for w in layer.weights}
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        kernel = keras.ops.convert_to_numpy(weights["pointwise_kernel"])
    else:
        kernel = keras.ops.convert_to_numpy(weights["kernel"])
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def repair_masks(
    model: keras.Model, keep: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], int]:
    """Validate keep masks and give every all-False group back one filter.

    The filter kept is the one with the largest L1 norm of its producers' kernels (summed
    over the group's producers), so a repaired group keeps its strongest channel.

    Args:
        model: The model the masks refer to.
        keep: Group name -> boolean (or 0/1) keep mask of length ``group.size``.

    Returns:
        The repaired masks (new arrays) and how many groups were repaired.

    Raises:
        ValueError: For an unknown group name, a wrong length or non-0/1 values, or a cut in
            a group that is not prunable.
    """
    analysis = analyse(model)
    masks = _check_keep(analysis, keep)
    repairs = 0
    graph = analysis.graph
    for name, arr in masks.items():
        if arr.any():
            continue
        group = analysis.group_by_name[name]
        score = sum(_producer_l1(graph.by_name[p].layer) for p in group.producers)
        arr[int(np.argmax(score))] = True
        repairs += 1
    return masks, repairs


def _keep_by_root(analysis: Analysis, masks: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    return {analysis.uf.find(analysis.producer_group[name]): m for name, m in masks.items()}


# -- rebuilding ---------------------------------------------------------------------------
LayerFactory = Callable[[Node], tuple[keras.layers.Layer, list[np.ndarray] | None]]


def _copy_layer(node: Node) -> tuple[keras.layers.Layer, list[np.ndarray] | None]:
    """A fresh layer from the node's config, carrying a copy of its weights.

    ``keras.ops`` operations hold no state and are reused as they are.
    """
    layer = node.layer
    if not isinstance(layer, keras.layers.Layer):
        return layer, None
    return _from_config(node, layer.get_config()), layer.get_weights()


def _from_config(node: Node, config: dict) -> keras.layers.Layer:
    """A new layer of the node's class; renamed where the flat graph renamed a nested layer."""
    if config.get("name") != node.name:
        config = {**config, "name": node.name}
    return type(node.layer).from_config(config)


def _rebuild(
    graph: Graph,
    nodes: list[Node],
    inputs: dict[str, keras.KerasTensor],
    factory: LayerFactory,
    *,
    outputs: list[str],
    name: str,
    wrap_input: Callable[[Node, keras.KerasTensor], keras.KerasTensor] | None = None,
) -> keras.Model:
    """Replay ``nodes`` (topological order) on new tensors with layers from ``factory``.

    Each call is replayed with its recorded arguments (constants, keyword arguments); a
    layer called several times is made once, at its first call, and shared by the others.
    The result is flat: calls of nested models become calls of the outer model.

    Args:
        graph: The source graph.
        nodes: Nodes to rebuild (their inputs must be in ``inputs`` or rebuilt earlier).
        inputs: Node name -> new tensor that stands for that node's output; these are
            the new model's inputs, in this order.
        factory: Gives the new layer and the weights to set after it is built.
        outputs: Names of the nodes whose outputs are the new model's outputs.
        name: The new model's name.
        wrap_input: Optional hook applied to a single-input node's input tensor.

    Returns:
        The new functional model.
    """
    tensors = dict(inputs)
    made: dict[str, keras.layers.Layer] = {}
    for node in nodes:
        if node.name in tensors:
            continue
        if node.first_call is not None and node.first_call in made:
            new_layer, weights = made[node.first_call], None
        else:
            new_layer, weights = factory(node)
            made[node.name] = new_layer
        args = [tensors[s] for s in node.inputs]
        if wrap_input is not None and len(args) == 1:
            args = [wrap_input(node, args[0])]
        call_args, call_kwargs = node.call.arguments.fill_in({id(t): a for t, a in zip(node.in_tensors, args)})
        tensors[node.name] = new_layer(*call_args, **call_kwargs)
        if weights:
            new_layer.set_weights(weights)
    model_inputs = list(inputs.values())
    model_inputs = model_inputs[0] if len(model_inputs) == 1 else model_inputs
    outs = [tensors[n] for n in outputs]
    return keras.Model(model_inputs, outs if len(outs) > 1 else outs[0], name=name)


def _fresh_inputs(graph: Graph) -> dict[str, keras.KerasTensor]:
    new = {}
    for n in graph.input_names:
        t = graph.by_name[n].output
        new[n] = keras.Input(shape=tuple(t.shape)[1:], dtype=t.dtype, name=n)
    return new


def _sliced(node: Node, in_keep: np.ndarray | None, out_keep: np.ndarray | None, analysis: Analysis):
    """The layer config and weights of ``node`` with channels removed."""
    layer = node.layer
    config = layer.get_config()
    if node.kind == PERCHANNEL:
        # A declared channel-wise layer: every weight whose last axis is the channel axis.
        rule = analysis.rules[node.name]
        if rule.width_key is not None:
            config[rule.width_key] = int(in_keep.sum())
        return config, [v[..., in_keep] if v.shape[-1:] == in_keep.shape else v for v in layer.get_weights()]
    names = [w.name for w in layer.weights]
    values = layer.get_weights()
    w = dict(zip(names, values))
    if node.kind == PRODUCER:
        n_out = int(out_keep.sum())
        if isinstance(layer, L.Dense):
            config["units"] = n_out
            w["kernel"] = w["kernel"][in_keep][:, out_keep]
        elif isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
            config["filters"] = n_out
            mult = w["depthwise_kernel"].shape[-1]
            w["depthwise_kernel"] = w["depthwise_kernel"][..., in_keep, :]
            w["pointwise_kernel"] = w["pointwise_kernel"][..., np.repeat(in_keep, mult), :][..., out_keep]
        else:
            config["filters"] = n_out
            w["kernel"] = w["kernel"][..., in_keep, :][..., out_keep]
        if "bias" in w:
            w["bias"] = w["bias"][out_keep]
    elif node.kind == DEPTHWISE:
        w["kernel"] = w["kernel"][..., in_keep, :]
        if "bias" in w:
            w["bias"] = w["bias"][in_keep]
    elif node.kind == NORM:
        w = {k: v[in_keep] for k, v in w.items()}
    elif node.kind == PRELU:
        w["alpha"] = w["alpha"][..., in_keep]
    elif node.kind == RESHAPE:
        target = list(config["target_shape"])
        if target[-1] != -1:
            target[-1] = int(out_keep.sum())
        config["target_shape"] = tuple(target)
    unexpected = set(w) - set(names)
    if unexpected or len(w) != len(names):
        raise ValueError(f"cannot slice layer '{node.name}' ({type(layer).__name__}): unexpected weights {names}")
    return config, [w[n] for n in names]


def prune_filters(
    model: keras.Model,
    keep: Mapping[str, np.ndarray],
    *,
    return_repairs: bool = False,
    name: str | None = None,
) -> keras.Model | tuple[keras.Model, int]:
    """A new, physically smaller model without the filters that ``keep`` drops.

    Every layer is rebuilt from its config (fewer ``filters``/``units``, a ``Reshape``'s
    channel count) and given sliced weights: producer kernels on the output axis, every
    consumer kernel on its input axis (Dense rows per spatial position after ``Flatten``),
    BatchNormalization's gamma/beta/moving statistics, depthwise kernels and biases. The
    original model is untouched. All-False masks are repaired (see `repair_masks`).

    Args:
        model: A built functional or Sequential model (Sequential comes back functional).
        keep: Group name -> boolean keep mask of length ``group.size``; missing groups are
            kept whole.
        return_repairs: Also return how many all-False masks were repaired.
        name: Name of the new model (default: the original's).

    Returns:
        The pruned model, or ``(model, n_repairs)`` with ``return_repairs=True``.

    Raises:
        ValueError: For bad masks (see `repair_masks`).
    """
    analysis = analyse(model)
    masks, repairs = repair_masks(model, keep)
    by_root = _keep_by_root(analysis, masks)
    graph = analysis.graph
    layout = analysis.out_layout

    def factory(node: Node):
        if not by_root or (node.kind not in (PRODUCER, RESHAPE, *SLICED_MEMBERS)):
            return _copy_layer(node)
        in_keep = analysis.layout_keep(layout[node.inputs[0]], by_root)
        out_keep = analysis.layout_keep(layout[node.name], by_root)
        if in_keep.all() and out_keep.all():
            return _copy_layer(node)
        config, weights = _sliced(node, in_keep, out_keep, analysis)
        return _from_config(node, config), weights

    pruned = _rebuild(graph, graph.nodes, _fresh_inputs(graph), factory, outputs=graph.output_names,
                      name=name or graph.name)
    return (pruned, repairs) if return_repairs else pruned


def mask_filters(
    model: keras.Model, keep: Mapping[str, np.ndarray] | None = None, *, name: str | None = None
) -> keras.Model:
    """The same network at full width, with a `ChannelMask` before every consumer.

    Masks sit where channels enter a consumer (Conv/SeparableConv/Dense), not after the
    producer: after a BatchNormalization a zeroed channel would become ``beta`` again
    (DenseNet's pre-activation after a concatenation), whereas at the consumer a masked
    channel contributes exactly nothing, as in the pruned model. Weights are copied: the
    original model is untouched. Only consumers of prunable groups get a mask.

    Args:
        model: A built functional or Sequential model.
        keep: Group name -> boolean keep mask (``None``: all kept); all-False masks are
            repaired as in `prune_filters`.
        name: Name of the new model (default: the original's name + ``"_masked"``).

    Returns:
        The masked model; update its masks with `set_filter_masks`.
    """
    analysis = analyse(model)
    masks, _ = repair_masks(model, keep or {})
    graph = analysis.graph
    layout = analysis.out_layout

    def wrap(node: Node, x: keras.KerasTensor) -> keras.KerasTensor:
        if node.kind != PRODUCER:
            return x
        lay = layout[node.inputs[0]]
        segments = analysis.segments(lay)
        if all(n is None for n, _ in segments):
            return x
        mask = ChannelMask(segments=segments, repeats=lay.repeats, name=f"{node.name}_channel_mask")
        y = mask(x)
        mask.set_mask(mask.mask_from_keep(masks))
        return y

    return _rebuild(graph, graph.nodes, _fresh_inputs(graph), _copy_layer, outputs=graph.output_names,
                    name=name or f"{graph.name}_masked", wrap_input=wrap)


def set_filter_masks(masked_model: keras.Model, keep: Mapping[str, np.ndarray]) -> int:
    """Assign keep masks to every `ChannelMask` of a model from `mask_filters` (no retracing).

    Args:
        masked_model: A model built by `mask_filters` (also after a save/load).
        keep: Group name -> boolean keep mask; missing groups are kept whole. Masks must
            already be repaired (no all-False mask: use `repair_masks` on the original).

    Returns:
        The number of `ChannelMask` layers updated.

    Raises:
        ValueError: For an all-False mask or one of the wrong length.
    """
    sizes: dict[str, int] = {}
    layers = [lay for lay in masked_model.layers if isinstance(lay, ChannelMask)]
    for lay in layers:
        for n, s in lay.segments:
            if n is not None:
                sizes[n] = s
    for n, m in keep.items():
        arr = np.asarray(m, dtype=bool)
        if n in sizes and arr.shape != (sizes[n],):
            raise ValueError(f"keep mask for group {n!r} has shape {arr.shape}: expected ({sizes[n]},)")
        if n in sizes and not arr.any():
            raise ValueError(f"keep mask for group {n!r} is all False: expected at least one kept filter (repair_masks)")
    for lay in layers:
        lay.set_mask(lay.mask_from_keep(keep))
    return len(layers)


def expected_param_count(model: keras.Model, keep: Mapping[str, np.ndarray]) -> int:
    """The parameter count a pruned model must have, computed from group descriptions only.

    Independent of the surgery code path: it reads kept channel counts per layer off the
    `FilterGroup` refs and applies each layer type's parameter formula.

    Args:
        model: The unpruned model.
        keep: Repaired keep masks (group name -> boolean vector).

    Returns:
        The parameter count.
    """
    groups: list[FilterGroup] = analyse(model).groups
    graph = analyse(model).graph
    dropped_in: dict[str, int] = {}
    dropped_out: dict[str, int] = {}
    for g in groups:
        lost = g.size - int(np.asarray(keep.get(g.name, np.ones(g.size, bool)), bool).sum())
        for ref in (*g.consumers, *g.members):
            dropped_in[ref.layer] = dropped_in.get(ref.layer, 0) + lost * ref.repeats
        for p in g.producers:
            dropped_out[p] = lost
    total = 0
    for node in graph.nodes:
        layer = node.layer
        if node.kind == INPUT or node.first_call is not None or not isinstance(layer, keras.layers.Layer):
            continue  # inputs, further calls of a shared layer and keras.ops hold no weights of their own
        if node.kind != PRODUCER and node.kind not in SLICED_MEMBERS:
            total += layer.count_params()
            continue
        full_in = int(node.input_shape()[-1])
        cin = full_in - dropped_in.get(node.name, 0)
        cout = int(node.output_shape[-1]) - dropped_out.get(node.name, 0)
        if node.kind == PERCHANNEL:
            total += sum(int(np.prod(w.shape[:-1])) * (cin if tuple(w.shape)[-1] == full_in else int(w.shape[-1]))
                         for w in layer.weights)
        elif node.kind == NORM:
            total += len(layer.weights) * cin
        elif node.kind == PRELU:
            total += int(np.prod(layer.alpha.shape[:-1])) * cin
        elif node.kind == DEPTHWISE:
            k = int(np.prod(layer.kernel_size))
            total += k * cin + (cin if layer.use_bias else 0)
        elif isinstance(layer, L.Dense):
            total += cin * cout + (cout if layer.use_bias else 0)
        elif isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
            k = int(np.prod(layer.kernel_size))
            m = layer.depth_multiplier
            total += k * cin * m + cin * m * cout + (cout if layer.use_bias else 0)
        else:  # a grouped convolution's channels are never pruned (its groups are fixed)
            k = int(np.prod(layer.kernel_size))
            total += k * (cin // getattr(layer, "groups", 1)) * cout + (cout if layer.use_bias else 0)
    return total
