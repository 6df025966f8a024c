"""Analytic MACs/FLOPs of a Keras model from layer configs and static shapes (batch 1).

Convention (never mixed under one name):

- ``macs``: multiply-accumulates of the kernels of Conv1D/2D/3D (with ``groups``),
  DepthwiseConv, SeparableConv (depthwise + pointwise) and Dense. ``flops`` is exactly
  ``2 * macs``: the number that papers call "FLOPs" for conv nets and that TensorFlow's
  profiler reports for Conv2D/DepthwiseConv2dNative/MatMul.
- ``other_flops``: everything else, counted as plain FLOPs (no MAC equivalent): a bias add
  is 1 per output element; inference BatchNormalization 2 (scale and shift); an activation
  1 (whatever its formula); ``Add``/``Subtract``/``Multiply``/``Maximum``/``Minimum``
  ``n_inputs - 1`` and ``Average`` ``n_inputs``; max/average pooling one per window element
  per output; global pooling one per input element; `ChannelMask` 1; layer and group
  normalisation 5 (mean, variance, normalise, scale, shift); a layer declared with
  `register_channel_rule` or an element-wise ``keras.ops`` call its rule's
  ``flops_per_element`` (default 1) per output element, times ``n_inputs - 1`` for merges.
- Zero: input, reshape, flatten, concatenate, padding, cropping, nearest upsampling,
  dropout/noise (identity at inference), embedding lookups.

``total_flops = flops + other_flops``. Parameters are counted per layer with Keras'
``count_params()`` (at a shared layer's first call) so the sum equals ``model.count_params()``.
Nested models are counted through their layers (the rows name the inner layers).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from evoprune_tf.nn.coupling import Graph, Node
from evoprune_tf.nn.coupling.rules import channel_rule, op_rule

__all__ = ["FlopCount", "LayerFlops", "count_flops"]

L = keras.layers

_KERNEL_CONVS = (L.Conv1D, L.Conv2D, L.Conv3D)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_ELEMENTWISE_ACT = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Softmax)
_MERGES = (L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum)
_WINDOW_POOLS = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
                 L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
_GLOBAL_POOLS = (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
                 L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)
_FREE = (L.InputLayer, L.Reshape, L.Flatten, L.Concatenate, L.Permute, L.RepeatVector,
         L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
         L.Cropping1D, L.Cropping2D, L.Cropping3D, L.Dropout, L.SpatialDropout1D,
         L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout,
         L.AlphaDropout, L.ActivityRegularization, L.Identity, L.Embedding, L.Masking)
_SUPPORTED = (*_KERNEL_CONVS, *_DEPTHWISE, *_SEPARABLE, L.Dense, L.BatchNormalization, *_ELEMENTWISE_ACT,
              *_MERGES, L.Average, *_WINDOW_POOLS, *_GLOBAL_POOLS, *_FREE, L.Rescaling,
              L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Normalization, L.LayerNormalization,
              L.GroupNormalization)


@dataclasses.dataclass(frozen=True)
class LayerFlops:
    """One layer's cost (batch 1).

    Attributes:
        name: Layer name.
        class_name: Layer class.
        macs: Kernel multiply-accumulates.
        flops: ``2 * macs``.
        other_flops: Bias, normalisation, activation, merge and pooling FLOPs.
        params: ``layer.count_params()``.
        output_shape: Static output shape without the batch axis.
    """

    name: str
    class_name: str
    macs: int
    flops: int
    other_flops: int
    params: int
    output_shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """A model's cost (batch 1), with per-layer rows.

    Attributes:
        macs: Kernel multiply-accumulates (conv, depthwise, separable, dense).
        flops: ``2 * macs``.
        other_flops: FLOPs outside kernels (see the module docstring).
        params: Parameter count (equals ``model.count_params()``).
        layers: Per-layer rows in topological order.
    """

    macs: int
    flops: int
    other_flops: int
    params: int
    layers: tuple[LayerFlops, ...]

    @property
    def total_flops(self) -> int:
        """``flops + other_flops``."""
        return self.flops + self.other_flops

    def by_layer(self) -> dict[str, LayerFlops]:
        """The rows keyed by layer name.

        Returns:
            Layer name -> `LayerFlops`.
        """
        return {row.name: row for row in self.layers}


def _static(shape, name: str) -> tuple[int, ...]:
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(f"layer '{name}' has a dynamic shape {tuple(shape)}: FLOPs need a static input shape")
    return tuple(int(d) for d in dims)


def _layer_cost(node: Node) -> tuple[int, int]:
    """``(macs, other_flops)`` of one call at batch 1."""
    layer, name, cls = node.layer, node.name, type(node.layer).__name__
    out = _static(node.output.shape, name)
    out_elems = int(np.prod(out, dtype=np.int64))
    ins = node.in_tensors
    if node.call is None:
        return 0, 0
    rule = channel_rule(layer) if isinstance(layer, keras.layers.Layer) else op_rule(layer, node.call)
    if rule is not None:
        return 0, int(round(rule.flops_per_element * out_elems * max(1, len(ins) - 1)))
    in_shape = _static(ins[0].shape, name)
    bias = out_elems if getattr(layer, "use_bias", False) else 0
    if isinstance(layer, _SEPARABLE):
        k = int(np.prod(layer.kernel_size))
        mult = layer.depth_multiplier
        spatial = out_elems // out[-1]
        depthwise = spatial * in_shape[-1] * mult * k
        pointwise = spatial * in_shape[-1] * mult * out[-1]
        return depthwise + pointwise, bias
    if isinstance(layer, _DEPTHWISE):
        return out_elems * int(np.prod(layer.kernel_size)), bias
    if isinstance(layer, _KERNEL_CONVS):
        k = int(np.prod(layer.kernel_size))
        return out_elems * k * (in_shape[-1] // layer.groups), bias
    if isinstance(layer, L.Dense):
        return out_elems * in_shape[-1], bias
    if isinstance(layer, L.BatchNormalization):
        return 0, 2 * out_elems
    if isinstance(layer, _ELEMENTWISE_ACT):
        return 0, out_elems
    if isinstance(layer, _MERGES):
        return 0, (len(ins) - 1) * out_elems
    if isinstance(layer, L.Average):
        return 0, len(ins) * out_elems
    if isinstance(layer, _WINDOW_POOLS):
        return 0, out_elems * int(np.prod(layer.pool_size))
    if isinstance(layer, _GLOBAL_POOLS):
        return 0, int(np.prod(in_shape, dtype=np.int64))
    if isinstance(layer, (L.Rescaling, L.Normalization)):
        return 0, 2 * out_elems
    if isinstance(layer, (L.LayerNormalization, L.GroupNormalization)):
        return 0, 5 * out_elems
    if isinstance(layer, (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)):
        return 0, 0 if getattr(layer, "interpolation", "nearest") == "nearest" else 4 * out_elems
    if type(layer).__name__ == "ChannelMask":
        return 0, out_elems
    if isinstance(layer, _FREE):
        return 0, 0
    supported = ", ".join(sorted({c.__name__ for c in _SUPPORTED} | {"ChannelMask"}))
    raise ValueError(f"cannot count FLOPs of layer '{name}' ({cls}): supported are {supported}, and layers "
                     "declared with evoprune_tf.nn.register_channel_rule")


def count_flops(model: keras.Model) -> FlopCount:
    """Count MACs, FLOPs and parameters of a functional or Sequential model (batch 1).

    Works on any sub-model, e.g. the suffix of `split_model`, so callers can report the
    cost of the searched blocks as well as of the whole network.

    Args:
        model: A built model with static input shapes (channels-last).

    Returns:
        The `FlopCount` with per-layer rows.

    Raises:
        ValueError: For a dynamic shape or a layer type without a cost rule.
    """
    graph = Graph(model)
    rows = []
    for node in graph.nodes:
        layer = node.layer
        macs, other = _layer_cost(node)
        # A shared layer's weights count at its first call; keras.ops hold none.
        owns = node.first_call is None and isinstance(layer, keras.layers.Layer)
        rows.append(LayerFlops(
            name=node.name, class_name=type(layer).__name__, macs=int(macs), flops=2 * int(macs),
            other_flops=int(other), params=int(layer.count_params()) if owns else 0,
            output_shape=_static(node.output.shape, node.name),
        ))
    macs = sum(r.macs for r in rows)
    return FlopCount(
        macs=macs, flops=2 * macs, other_flops=sum(r.other_flops for r in rows),
        params=sum(r.params for r in rows), layers=tuple(rows),
    )
