"""Compact export of masked heads: masks baked into plain, physically smaller layers.

`compact` (alias `strip_masks`, after tfmot's pruning vocabulary) walks back from a
model's output through the trailing chain of `MaskedDense` layers, decides on NumPy
which input features and hidden neurons still matter, and rebuilds the chain as plain
`keras.layers.Dense` layers: unused input features are dropped by a leading
`FeatureGather`, dead hidden neurons are removed (constant ones folded into the next
bias) and the remaining masked connections are stored as zeros. The outputs equal the
masked model's up to float32 rounding. `count_active_parameters` is the sparse
parameter count of that same compact form.

The layers themselves live in `evoprune_tf.nn.layers`; this module only reads them.
Reading the functional graph needs Keras-private tensor history: that access is kept in
`_producer`, the only function here that touches it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import keras
import numpy as np
from keras import ops

from evoprune_tf.nn.layers import FeatureGather, MaskedDense

__all__ = ["compact", "strip_masks", "count_active_parameters"]

# Activations that couple the units of a layer: a neuron cannot be removed or replaced
# by a constant without changing the others, so `compact` keeps every unit of such a
# hidden layer.
_NON_ELEMENTWISE = (keras.activations.softmax, keras.activations.log_softmax)


# ------------------------------------------------------------------ graph access


def _producer(tensor: Any) -> tuple[Any, Any]:
    """The operation that produced a symbolic tensor and the tensors it consumed there.

    Keras-private on purpose: a layer of the head may have been called in several graphs
    (the head model, and again inlined in a backbone model), and the public
    ``layer.input`` only ever returns the tensors of its *first* call. The tensor's
    ``_keras_history`` names the call that produced *this* tensor; its node holds that
    call's inputs. Checked on Keras 3.15.1 (``KerasHistory(operation, node_index,
    tensor_index)`` and ``Operation._inbound_nodes[i].input_tensors``).

    Returns:
        ``(operation, input tensors)``; ``(None, None)`` for a tensor without history
        (a ``keras.Input`` tensor has history: its `InputLayer`, with no inputs).
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None, None
    node = history.operation._inbound_nodes[history.node_index]
    return history.operation, node.input_tensors


def _producer_name(tensor: Any) -> str | None:
    """Name of the layer that produced ``tensor`` (the `InputLayer` for an input), if any."""
    operation, _ = _producer(tensor)
    return None if operation is None else operation.name


def _trailing_chain(model: keras.Model) -> tuple[list[MaskedDense], Any]:
    """The linear chain of `MaskedDense` layers that ends ``model`` and the tensor feeding it.

    Nested models at the end of the chain (such as a head from `build_masked_head`
    inside a backbone model) are looked into when they are themselves a pure chain
    ``Input -> MaskedDense -> ...``.
    """
    outputs = getattr(model, "outputs", None)
    if not outputs:
        raise ValueError(f"model {model.name!r} has no symbolic outputs; build it on an Input first")
    if len(outputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(outputs)} outputs; expected one (a head)")
    chain: list[MaskedDense] = []
    tensor = outputs[0]
    while True:
        operation, inputs = _producer(tensor)
        if isinstance(operation, MaskedDense) and len(inputs) == 1:
            chain.append(operation)
            tensor = inputs[0]
        elif isinstance(operation, keras.Model) and len(inputs) == 1 and _is_pure_chain(operation):
            inner, _ = _trailing_chain(operation)
            chain.extend(reversed(inner))
            tensor = inputs[0]
        else:
            break
    if not chain:
        raise ValueError(
            f"model {model.name!r} does not end with MaskedDense layers; compact needs a head built from them"
        )
    return chain[::-1], tensor


def _is_pure_chain(model: keras.Model) -> bool:
    try:
        _, feed = _trailing_chain(model)
    except ValueError:
        return False
    return len(model.inputs) == 1 and feed is model.inputs[0]


# ------------------------------------------------------------------ NumPy plan


@dataclasses.dataclass
class _CompactLayer:
    """NumPy plan of one compact `Dense` layer: the masked layer it replaces, its baked
    kernel, the kept part of the mask (for sparse counts) and its bias (or ``None``)."""

    source: MaskedDense
    kernel: np.ndarray
    mask: np.ndarray
    bias: np.ndarray | None


def _numpy(value: Any) -> np.ndarray:
    """NumPy copy of a backend tensor or Keras variable."""
    return np.asarray(ops.convert_to_numpy(value))


def _plan_compact(chain: Sequence[MaskedDense]) -> tuple[np.ndarray, list[_CompactLayer]]:
    """Decide which units survive and compute the compact weights.

    Returns:
        The kept input-feature indices and one `_CompactLayer` per layer of the chain.
    """
    kernels = [_numpy(layer.masked_kernel).astype(np.float64) for layer in chain]
    masks = [layer.get_mask() != 0 for layer in chain]
    biases = [None if layer.bias is None else _numpy(layer.bias).astype(np.float64) for layer in chain]
    n = len(chain)
    # Units at every boundary: boundary 0 = input features, boundary i + 1 = outputs of
    # layer i. A hidden layer with a non-elementwise activation keeps all its units.
    forced = [False] + [chain[i].activation in _NON_ELEMENTWISE for i in range(n - 1)] + [True]

    # Backward: a unit is used when it reaches a used unit of the next boundary.
    used = [None] * (n + 1)
    used[n] = np.ones(chain[-1].units, dtype=bool)
    for i in range(n - 1, -1, -1):
        reaches = masks[i][:, used[i + 1]].any(axis=1)
        used[i] = np.ones_like(reaches) if forced[i] else reaches

    # Forward: a unit is variable when some variable unit feeds it; otherwise it is the
    # constant activation(bias) (activation(0) without bias), folded into the next bias.
    variable = [np.ones(kernels[0].shape[0], dtype=bool)]
    constants = [np.zeros(kernels[0].shape[0])]
    for i in range(n):
        fed = masks[i][variable[i], :].any(axis=0)
        if forced[i + 1]:
            fed = np.ones_like(fed)
        pre = constants[i] @ kernels[i]
        if biases[i] is not None:
            pre = pre + biases[i]
        const = np.zeros(chain[i].units)
        if i < n - 1 and not fed.all():
            values = _activate(chain[i].activation, pre.astype(np.float32)).astype(np.float64)
            const[~fed] = values[~fed]
        variable.append(fed)
        constants.append(const)

    keep = [np.flatnonzero(used[0])]
    for i in range(1, n):
        keep.append(np.flatnonzero(variable[i] & used[i]))
    keep.append(np.arange(chain[-1].units))
    # Every Dense needs a non-empty kernel: when a boundary loses all its units, keep
    # unit 0 and cut its outgoing weights (its constant, if any, is already folded).
    silent = [False] * (n + 1)
    for b in range(n):
        if keep[b].size == 0:
            keep[b] = np.array([0])
            silent[b] = True

    plans = []
    for i, layer in enumerate(chain):
        rows, cols = keep[i], keep[i + 1]
        kernel = kernels[i][np.ix_(rows, cols)]
        mask = masks[i][np.ix_(rows, cols)]
        if silent[i]:
            kernel = np.zeros_like(kernel)
            mask = np.zeros_like(mask)
        # Constant inputs of layer i (dropped from the kernel) move into its bias.
        shift = (constants[i] @ kernels[i])[cols]
        bias = None if biases[i] is None else biases[i][cols] + shift
        if bias is None and np.any(shift != 0):
            bias = shift
        plans.append(
            _CompactLayer(
                layer,
                kernel.astype(np.float32),
                mask,
                None if bias is None else bias.astype(np.float32),
            )
        )
    return keep[0], plans


def _activate(activation: Callable | None, values: np.ndarray) -> np.ndarray:
    # The layer's own activation, so the folded constants match what the model computes.
    if activation is None:
        return values
    return _numpy(activation(ops.convert_to_tensor(values)))


# ------------------------------------------------------------------ public API


def compact(model: keras.Model, *, name: str | None = None) -> keras.Model:
    """Bake the masks of a masked head into plain, physically smaller `Dense` layers.

    ``model`` must end with a linear chain of `MaskedDense` layers: a head from
    `build_masked_head`, or ``backbone -> ... -> head`` (functional or `Sequential`, the
    head possibly a nested pure-head model). Layers before the chain are reused, shared
    with ``model`` (not copied); a head-only model gets a fresh `Input`.

    What is removed (all outputs stay equal to the masked model's up to float32 rounding):

    * input features whose row is zero in the first mask (also when they only feed
      removed neurons), through a leading `FeatureGather`; omitted when nothing is cut;
    * hidden neurons that send nothing (their row in the next mask is zero, or they only
      feed removed neurons);
    * hidden neurons that receive nothing (their column in their mask is zero). Such a
      neuron outputs the constant ``activation(bias)`` (``activation(0)`` without bias,
      which is 0 for relu): the constant times its outgoing weights is folded into the
      next layer's bias, which the compact layer gains if it had none and the constant is
      non-zero. Hidden layers with softmax / log_softmax keep all their neurons.

    Remaining masked connections are stored as zeros (``kernel * mask``). The output
    layer keeps every class. A layer ``name`` becomes ``compact_*`` when it starts with
    ``masked_`` (so ``masked_dense_0 -> compact_dense_0``, ``masked_output ->
    compact_output``), else ``<name>_compact``.

    Args:
        model: the masked model.
        name: name of the compact model (default ``<model.name>_compact``).

    Returns:
        A new functional model holding only `Dense` (and `FeatureGather`) layers after
        the shared prefix.

    Raises:
        ValueError: the model does not end with a chain of `MaskedDense` layers.
    """
    chain, feed = _trailing_chain(model)
    features, plans = _plan_compact(chain)

    if len(model.inputs) == 1 and feed is model.inputs[0]:
        source = model.inputs[0]
        inputs = keras.Input(
            shape=tuple(source.shape[1:]), dtype=source.dtype, name=_producer_name(source) or "features"
        )
        x = inputs
    else:
        inputs, x = model.inputs, feed
    if features.size != chain[0].kernel_shape[0]:
        x = FeatureGather(features.tolist(), name="feature_gather")(x)
    for plan in plans:
        layer = plan.source
        dense = keras.layers.Dense(
            plan.kernel.shape[1],
            activation=layer.activation,
            use_bias=plan.bias is not None,
            dtype=layer.dtype_policy,
            name=_compact_name(layer.name),
        )
        x = dense(x)
        dense.set_weights([plan.kernel] if plan.bias is None else [plan.kernel, plan.bias])
    return keras.Model(inputs, x, name=name or f"{model.name}_compact")


strip_masks = compact


def count_active_parameters(model: keras.Model) -> int:
    """Unpruned kernel entries plus biases of the compact form of ``model``'s head.

    This is the sparse count (masked connections inside kept rows and columns are not
    counted), so it is at most the head part of ``compact(model).count_params()`` and
    equals it when no single connection is pruned. Layers before the head are ignored.

    Args:
        model: a model ending with a chain of `MaskedDense` layers (see `compact`).

    Returns:
        The number of parameters the compact head really uses.

    Raises:
        ValueError: the model does not end with a chain of `MaskedDense` layers.
    """
    chain, _ = _trailing_chain(model)
    _, plans = _plan_compact(chain)
    return int(sum(int(p.mask.sum()) + (0 if p.bias is None else p.bias.size) for p in plans))


def _compact_name(name: str) -> str:
    return "compact_" + name[len("masked_") :] if name.startswith("masked_") else f"{name}_compact"
