"""How a layer treats channels: the built-in tables and the registry of user rules.

The coupling analysis knows Keras' own layers (convolutions, normalisation, pooling,
merges...) and the element-wise operations of ``keras.ops`` that functional models record
(``x + 3.0``, ``x * y``, ``keras.ops.relu(x)``). A custom layer is declared once with
`register_channel_rule`::

    register_channel_rule(MyScale, "channelwise", width_key="units")   # x * gamma, gamma per channel
    register_channel_rule(MyResidual, "merge")                         # inputs[0] + a * inputs[1]
    register_channel_rule(MyAttention, "barrier")                      # mixes channels

InceptionResNetV2's ``CustomScaleLayer`` (``x + scale * r``) and ConvNeXt's ``LayerScale``
(``x * gamma``) are declared here with the same call.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["BARRIER_RULE", "CHANNELWISE_RULE", "MERGE_RULE", "ChannelRule", "channel_rule", "op_rule",
           "register_channel_rule", "registration_hint"]

CHANNELWISE_RULE, MERGE_RULE, BARRIER_RULE = "channelwise", "merge", "barrier"
_RULE_KINDS = (CHANNELWISE_RULE, MERGE_RULE, BARRIER_RULE)


@dataclasses.dataclass(frozen=True)
class ChannelRule:
    """A declared channel behaviour of a layer class.

    Attributes:
        kind: ``"channelwise"``: output channel ``c`` depends on input channel ``c`` only
            (activations, per-channel scales); every weight whose last axis has the channel
            count is per-channel and loses the pruned entries. ``"merge"``: an element-wise
            combination of same-width inputs (sum, product, ``x + a * y``); the inputs are
            pruned together. ``"barrier"``: the layer mixes channels; the channels entering
            it are not prunable and its output is a new, fixed set of channels.
        width_key: For ``"channelwise"`` layers whose config holds the channel count (e.g.
            ConvNeXt's ``LayerScale.projection_dim``): surgery writes the kept count there.
        flops_per_element: FLOPs per output element for `count_flops` (``other_flops``).
    """

    kind: str
    width_key: str | None = None
    flops_per_element: float = 1.0


_REGISTRY: dict[type, ChannelRule] = {}


def register_channel_rule(layer_class: type, kind: str, *, width_key: str | None = None,
                          flops_per_element: float = 1.0) -> None:
    """Declare how a (custom) layer class treats channels, for coupling, surgery and FLOPs.

    The rule applies to subclasses too; registering a class again replaces its rule. The
    layer must round-trip through ``get_config``/``from_config`` (surgery rebuilds it).

    Args:
        layer_class: A ``keras.layers.Layer`` subclass.
        kind: ``"channelwise"``, ``"merge"`` or ``"barrier"`` (see `ChannelRule`).
        width_key: Config key holding the channel count (``"channelwise"`` only).
        flops_per_element: FLOPs per output element counted by `count_flops`.

    Raises:
        ValueError: For an unknown ``kind``, a non-class, or ``width_key`` on another kind.
    """
    if not isinstance(layer_class, type):
        raise ValueError(f"layer_class={layer_class!r}: expected a Layer class")
    if kind not in _RULE_KINDS:
        raise ValueError(f"kind={kind!r} for {layer_class.__name__}: expected one of {', '.join(_RULE_KINDS)}")
    if width_key is not None and kind != CHANNELWISE_RULE:
        raise ValueError(f"width_key={width_key!r} for {layer_class.__name__}: only 'channelwise' layers take one")
    if not flops_per_element >= 0:
        raise ValueError(f"flops_per_element={flops_per_element!r}: expected a number >= 0")
    _REGISTRY[layer_class] = ChannelRule(kind, width_key, float(flops_per_element))


def channel_rule(layer: Any) -> ChannelRule | None:
    """The registered rule of a layer (its class or nearest registered base class), or ``None``."""
    for cls in type(layer).__mro__:
        rule = _REGISTRY.get(cls)
        if rule is not None:
            return rule
    return None


def registration_hint(name: str, cls: str) -> str:
    """The one-line error for a layer without a rule, saying how to declare one."""
    return (f"cannot analyse layer '{name}' ({cls}): no channel rule for {cls}; declare one with "
            f"evoprune_tf.nn.register_channel_rule({cls}, 'channelwise' | 'merge' | 'barrier') "
            "(see docs/filter-coverage.md)")


# -- keras.ops operations recorded in functional graphs ----------------------------------------
_UNARY_OPS = frozenset({
    "Abs", "Absolute", "Negative", "Exp", "Exp2", "Expm1", "Log", "Log1p", "Log2", "Log10", "Sqrt", "Square",
    "Reciprocal", "Sign", "Tanh", "Sin", "Cos", "Floor", "Ceil", "Round", "Clip", "Copy", "NanToNum",
    "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu", "HardSilu", "Gelu", "Elu", "Selu", "Celu", "LeakyRelu",
    "Softplus", "Softsign", "LogSigmoid", "HardTanh", "TanhShrink", "HardShrink", "SoftShrink", "Squareplus",
})
_BINARY_OPS = frozenset({
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "DivideNoNan", "Maximum", "Minimum", "Fmax", "Fmin",
    "Power", "Mod", "FloorDivide",
})


def _broadcasts_over_channels(value: Any) -> bool:
    """A constant that is the same for every channel (scalar, or last axis of length 1)."""
    shape = np.shape(value) if not hasattr(value, "shape") else tuple(value.shape)
    return len(shape) == 0 or shape[-1] == 1


def op_rule(op: Any, call: Any) -> ChannelRule | None:
    """The rule of a ``keras.ops`` operation call, or ``None`` when the operation is not known.

    Element-wise unary operations are channel-wise; a binary operation on two tensors is a
    merge, with a constant that is the same on every channel it is channel-wise, and with a
    per-channel constant (which surgery cannot slice) a barrier.
    """
    module = type(op).__module__
    if not module.startswith("keras.src.ops"):
        return None
    cls = type(op).__name__
    if cls in _UNARY_OPS:
        return ChannelRule(CHANNELWISE_RULE)
    if cls not in _BINARY_OPS:
        return None
    tensors = call.input_tensors
    if len(tensors) >= 2:
        return ChannelRule(MERGE_RULE)
    constants = [a for a in call.arguments.args if not any(a is t for t in tensors)]
    if all(_broadcasts_over_channels(c) for c in constants):
        return ChannelRule(CHANNELWISE_RULE)
    return ChannelRule(BARRIER_RULE, flops_per_element=1.0)


def _register_applications() -> None:
    """Rules for the custom layers of ``keras.applications``."""
    try:
        from keras.src.applications.convnext import LayerScale
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    except ImportError:  # another Keras layout: those families then fail with the hint
        return
    register_channel_rule(CustomScaleLayer, MERGE_RULE, flops_per_element=2.0)  # inputs[0] + scale * inputs[1]
    register_channel_rule(LayerScale, CHANNELWISE_RULE, width_key="projection_dim")  # x * gamma


_register_applications()
