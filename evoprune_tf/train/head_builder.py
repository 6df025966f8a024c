"""Head builders: the default `MaskedDense` head, user builders by name, and checks of what they build.

A head builder is ``builder(spec: HeadSpec) -> keras.Model`` (see
`evoprune_tf.train.keras_engine` for the contract). Keras and `evoprune_tf.nn` are
imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Sequence

import numpy as np

from evoprune_tf.encodings import HeadSpec
from evoprune_tf.train.config import TrainConfig, derive_seed

__all__ = ["HeadBuilder", "default_head", "resolve_head", "check_head", "layout", "outputs_probabilities",
           "numpy_forward_ok", "seeded_value"]

HeadBuilder = Callable[[HeadSpec], Any]


def default_head(spec: HeadSpec, *, dropout: float = 0.0, l2: float = 0.0, seed: int = 0) -> Any:
    """The default head: ``MaskedDense`` ReLU hidden layers (optional dropout after each) and linear logits.

    Args:
        spec: widths (hidden layers have a bias only with ``spec.use_bias``).
        dropout: dropout rate after every hidden layer (0: no Dropout layer).
        l2: L2 factor of every kernel regularizer (0: none).
        seed: seeds the Dropout layers (the kernels are assigned by the trainer).

    Returns:
        An uncompiled functional model ``features -> logits``.
    """
    import keras

    from evoprune_tf.nn.layers import MaskedDense  # nn imports Keras: not at module import

    reg = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input((spec.n_features,), name="features")
    x = inputs
    for i, units in enumerate(spec.hidden):
        x = MaskedDense(units, activation="relu", use_bias=spec.use_bias, kernel_regularizer=reg,
                        name=f"masked_dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=int(derive_seed(seed, "dropout", i) % 2**31), name=f"dropout_{i}")(x)
    outputs = MaskedDense(spec.n_classes, activation=None, use_bias=True, kernel_regularizer=reg,
                          name="masked_output")(x)
    return keras.Model(inputs, outputs, name="head")


def resolve_head(head: Any, config: TrainConfig | None = None, *, seed: int = 0) -> HeadBuilder:
    """The head builder of ``TrainConfig.head``.

    Args:
        head: ``""`` (the default head with the config's dropout and l2), a callable
            ``builder(spec) -> keras.Model`` or a ``"module:function"`` string naming one.
        config: the recipe (for the default head's dropout and l2).
        seed: seeds the default head's Dropout layers.

    Returns:
        The builder.

    Raises:
        ValueError: the string does not name an importable callable.
    """
    if callable(head):
        return head
    if head == "":
        cfg = config or TrainConfig()
        return functools.partial(default_head, dropout=cfg.dropout, l2=cfg.l2, seed=seed)
    module_name, _, attr = str(head).partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"train.head={head!r} cannot be imported ({type(error).__name__}: {error}); "
                         f"expected 'module:function' naming a head builder") from None
    if not callable(builder):
        raise ValueError(f"train.head={head!r} is not callable; expected a function builder(spec) -> keras.Model")
    return builder


def check_head(model: Any, spec: HeadSpec, where: str = "head builder") -> list[Any]:
    """Check that a built head fits the spec; return its `MaskedDense` layers.

    Args:
        model: what the builder returned.
        spec: the widths it was built for.
        where: names the builder in errors.

    Returns:
        The model's `MaskedDense` layers in order.

    Raises:
        ValueError: not a Keras model, no (or the wrong number of) `MaskedDense` layers,
            wrong kernel shapes, or an input width that does not match the features.
    """
    import keras

    from evoprune_tf.nn.layers import masked_dense_layers  # nn imports Keras: not at module import

    if not isinstance(model, keras.Model):
        raise ValueError(f"{where} returned {type(model).__name__}; expected a keras.Model")
    layers = masked_dense_layers(model)
    if not layers:
        raise ValueError(f"{where} returned model {model.name!r} with no MaskedDense layer; expected "
                         f"{spec.n_layers} MaskedDense layers for the encodings to mask")
    inputs = getattr(model, "inputs", None) or []
    width = inputs[0].shape[-1] if len(inputs) == 1 else None
    if width != spec.n_features:
        raise ValueError(f"{where} returned model {model.name!r} with input width {width}; "
                         f"expected one input of width {spec.n_features} (the features)")
    if len(layers) != spec.n_layers:
        raise ValueError(f"{where} returned {len(layers)} MaskedDense layers; expected {spec.n_layers} "
                         f"for head widths {spec.widths}")
    for l, layer in enumerate(layers):
        want = (spec.widths[l], spec.widths[l + 1])
        if tuple(layer.kernel_shape) != want:
            raise ValueError(f"{where}: MaskedDense {layer.name!r} has kernel {tuple(layer.kernel_shape)}; "
                             f"expected {want} for head widths {spec.widths}")
    out = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if out != spec.n_classes:
        raise ValueError(f"{where} returned outputs of width {out}; expected {spec.n_classes} classes")
    return layers


def layout(model: Any, layers: Sequence[Any] | None) -> list[tuple[str, tuple[int, ...]]]:
    """Each variable of ``model`` (in ``model.variables`` order) as ``("masked"|"other", shape)``."""
    from evoprune_tf.nn.layers import masked_dense_layers  # nn imports Keras: not at module import

    layers = masked_dense_layers(model) if layers is None else layers
    owned = {id(v) for layer in layers for v in layer.variables}
    return [("masked" if id(v) in owned else "other", tuple(v.shape)) for v in model.variables]


def outputs_probabilities(model: Any) -> bool:
    """Whether the model ends with a softmax (its outputs are probabilities, not logits)."""
    import keras

    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax):
        return True
    return activation is keras.activations.softmax


def numpy_forward_ok(model: Any, layers: Sequence[Any]) -> bool:
    """Whether `TrainedHead`'s NumPy forward (ReLU hidden, linear logits) reproduces the model at inference."""
    import keras

    from evoprune_tf.nn.layers import MaskedDense  # nn imports Keras: not at module import

    allowed = (keras.layers.InputLayer, MaskedDense, keras.layers.Dropout)
    if not all(isinstance(layer, allowed) for layer in model.layers):
        return False
    hidden_ok = all(layer.activation is keras.activations.relu for layer in layers[:-1])
    out = layers[-1].activation
    return hidden_ok and out in (None, keras.activations.linear, keras.activations.softmax)


def seeded_value(initializer: Any, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The value of a Keras initializer at ``shape``, with its seed (when it takes one) set to ``seed``."""
    import keras

    config = initializer.get_config()
    if "seed" in config:
        initializer = type(initializer).from_config({**config, "seed": int(seed % 2**31)})
    return np.asarray(keras.ops.convert_to_numpy(initializer(shape, dtype="float32")), np.float32)
