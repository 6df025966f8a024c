"""Masked dense layers and masked heads.

`MaskedDense` is a `Dense` layer whose kernel is multiplied by a 0/1 mask held in a
non-trainable weight named ``kernel_mask``. The mask is assigned in place with
`MaskedDense.set_mask`, so one compiled model can be reused for many genomes without
being rebuilt or retraced. Pruned connections get a zero gradient (the multiplication
sees to that), so training never revives them. `FeatureGather` (the first layer of a
compact export whose input features were pruned) and `FeatureScaling` (fixed feature
standardisation in front of an exported head) are plain, serialisable layers.

Baking the masks into physically smaller plain layers is `evoprune_tf.nn.export.compact`.

Everything that runs inside a model is written with `keras.ops`, so the layers work on
the TensorFlow, JAX and torch backends.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
from keras import ops

__all__ = [
    "MaskedDense",
    "FeatureGather",
    "FeatureScaling",
    "build_masked_head",
    "masked_dense_layers",
    "set_head_masks",
    "set_head_weights",
]

_PACKAGE = "evoprune_tf"

@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedDense(keras.layers.Dense):
    """A `keras.layers.Dense` whose kernel is multiplied by a binary mask.

    Computes ``activation(matmul(inputs, kernel * kernel_mask) + bias)``. The mask is a
    non-trainable float32 weight named ``kernel_mask``, initialised to ones (nothing
    pruned), saved with the model's weights, and changed with `set_mask`, which assigns
    into the existing variable: a compiled model keeps its traced functions. A pruned
    connection receives a zero gradient, so training leaves its stored kernel entry
    unchanged and its effective weight at zero.

    Being a `Dense`, it takes every `Dense` argument (initializers, regularizers,
    constraints); a kernel regularizer sees the stored kernel, whose pruned entries
    `set_mask` zeroes. Quantization and LoRA are not supported (they replace the kernel).

    The mask is deliberately not a ``mask`` call argument: Keras reserves that name
    for its own masking machinery.

    ``kernel_premasked`` (attribute, default False, not saved) is a promise made by the
    code that traces the layer: the kernel already holds zeros wherever the mask does
    and its training keeps them there. ``call`` then skips the multiply, which gives the
    same numbers (a product with 1 is exact) one pass over the kernel cheaper in the
    forward and again in the backward pass. The training engine sets it on its compact
    built-in heads, where the mask only marks zero-initialised padding.

    Args:
        units: dimensionality of the output space.
        activation: activation function (name or callable); ``None`` is linear.
        use_bias: whether the layer adds a bias vector.
        kernel_initializer: initializer of the kernel.
        bias_initializer: initializer of the bias.
        **kwargs: other `keras.layers.Dense` arguments (``kernel_regularizer``,
            ``kernel_constraint``, ...) and base layer arguments (``name``, ``dtype``).

    Input shape:
        N-D tensor ``(batch_size, ..., input_dim)``; most often ``(batch_size, input_dim)``.

    Output shape:
        N-D tensor ``(batch_size, ..., units)``.
    """

    def __init__(
        self,
        units: int,
        activation: str | Callable | None = None,
        use_bias: bool = True,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        bias_initializer: str | keras.initializers.Initializer = "zeros",
        **kwargs: Any,
    ) -> None:
        if int(units) < 1:
            raise ValueError(f"units={units}; expected a positive integer")
        if kwargs.get("lora_rank"):
            raise ValueError(f"lora_rank={kwargs['lora_rank']}; MaskedDense does not support LoRA (expected None)")
        super().__init__(
            int(units),
            activation=activation,
            use_bias=bool(use_bias),
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        self.kernel_premasked = False

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"MaskedDense needs a known last input dimension; got input shape {input_shape}")
        super().build(input_shape)
        self.kernel_mask = self.add_weight(
            name="kernel_mask", shape=(int(input_dim), self.units), initializer="ones", dtype="float32",
            trainable=False,
        )

    @property
    def kernel_shape(self) -> tuple[int, int]:
        """``(input_dim, units)``; the layer must be built."""
        self._require_built("kernel_shape")
        return tuple(int(d) for d in self.kernel.shape)

    @property
    def masked_kernel(self) -> Any:
        """The effective kernel ``kernel * kernel_mask`` as a backend tensor."""
        return ops.multiply(self.kernel, ops.cast(self.kernel_mask, self.kernel.dtype))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs = ops.matmul(inputs, self.kernel if self.kernel_premasked else self.masked_kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def quantize(self, mode: Any = None, **kwargs: Any) -> None:
        raise ValueError(f"{self.name}: quantize(mode={mode!r}) is not supported; expected a float MaskedDense "
                         f"(compact it to plain Dense layers first)")

    def save_own_variables(self, store: Any) -> None:
        # Dense saves only kernel and bias; the base Layer format saves every variable,
        # kernel_mask included, in tracking order.
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store: Any) -> None:
        keras.layers.Layer.load_own_variables(self, store)

    def set_mask(self, mask: Any) -> None:
        """Assign a new 0/1 kernel mask in place and zero the pruned kernel entries.

        The mask variable is assigned, not replaced, so a compiled model is neither
        rebuilt nor retraced. The stored kernel is multiplied by the mask too, so the
        weights a user reads back (or exports) hold zeros where connections are pruned.
        Pruned entries get no gradient afterwards, but an optimizer that still carries
        momentum from before the mask was set can move their stored values; the
        effective kernel (`masked_kernel`) stays zero there regardless. Reset the
        optimizer's variables when reusing a model for a new mask.

        Args:
            mask: array-like or backend tensor of shape ``(input_dim, units)`` holding
                only 0 and 1 (booleans are accepted).

        Raises:
            ValueError: the layer is not built, or the mask has the wrong shape or values
                other than 0 and 1.
        """
        self._require_built("set_mask")
        values = _to_numpy(mask)
        expected = self.kernel_shape
        if values.shape != expected:
            raise ValueError(f"{self.name}: mask has shape {values.shape}; expected {expected}")
        values = values.astype(np.float32)
        if not np.all((values == 0.0) | (values == 1.0)):
            raise ValueError(f"{self.name}: mask holds values other than 0 and 1; expected a binary mask")
        self.kernel_mask.assign(values)
        self.kernel.assign(ops.multiply(self.kernel, ops.cast(values, self.kernel.dtype)))

    def get_mask(self) -> np.ndarray:
        """The current kernel mask as a float32 NumPy array ``(input_dim, units)``.

        Returns:
            The mask.
        """
        self._require_built("get_mask")
        return np.asarray(ops.convert_to_numpy(self.kernel_mask), dtype=np.float32)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("lora_rank", None)
        config.pop("lora_alpha", None)
        config.pop("quantization_config", None)
        return config

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"{self.name}: {what} needs a built layer; call it on an input (or build it) first")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeatureGather(keras.layers.Layer):
    """Keeps a fixed subset of the input features (last axis), in the given order.

    The first layer of a compact model whose input features were pruned: it replaces
    the all-zero rows of the first kernel.

    Args:
        indices: non-negative integer positions on the last axis to keep.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape:
        N-D tensor ``(batch_size, ..., input_dim)`` with ``input_dim > max(indices)``.

    Output shape:
        N-D tensor ``(batch_size, ..., len(indices))``.
    """

    def __init__(self, indices: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        values = np.asarray(list(indices))
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"indices have shape {values.shape}; expected a non-empty 1-D sequence")
        if not np.issubdtype(values.dtype, np.integer) or values.min() < 0:
            raise ValueError(f"indices={values[:5].tolist()}...; expected non-negative integers")
        self.indices = tuple(int(i) for i in values)
        self.supports_masking = True

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        input_dim = input_shape[-1]
        if input_dim is not None and max(self.indices) >= input_dim:
            raise ValueError(
                f"{self.name}: index {max(self.indices)} is out of range for {input_dim} input features"
            )

    def call(self, inputs: Any) -> Any:
        return ops.take(inputs, np.asarray(self.indices, dtype="int32"), axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], len(self.indices))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["indices"] = list(self.indices)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeatureScaling(keras.layers.Layer):
    """Standardises features with fixed per-feature statistics: ``(x - mean) / std``.

    Unlike `keras.layers.Normalization`, the std is used as given (Normalization clamps
    it at 1e-7, which breaks the ~1e-11-scale features of random-weight backbones).

    Args:
        mean: per-feature means.
        std: per-feature standard deviations (positive).

    Input shape:
        ``(batch, n_features)``.

    Output shape:
        ``(batch, n_features)``.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = [float(v) for v in np.asarray(mean).ravel()]
        self.std = [float(v) for v in np.asarray(std).ravel()]
        if len(self.mean) != len(self.std) or not all(v > 0 for v in self.std):
            raise ValueError(f"FeatureScaling needs equal-length mean and positive std; got {len(self.mean)} and {len(self.std)} values")

    def call(self, inputs: Any) -> Any:
        mean = ops.convert_to_tensor(np.asarray(self.mean, np.float32))
        std = ops.convert_to_tensor(np.asarray(self.std, np.float32))
        return ops.divide(ops.subtract(inputs, mean), std)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def build_masked_head(
    n_features: int,
    n_classes: int,
    hidden: Sequence[int] = (512,),
    *,
    use_bias: bool = False,
    hidden_activation: str | Callable = "relu",
    kernel_masks: Sequence[Any] | None = None,
    seed: int | None = None,
    name: str = "masked_head",
) -> keras.Model:
    """A functional head ``features -> MaskedDense(h) ... -> MaskedDense(n_classes, softmax)``.

    Layer names: the input is ``features``, the hidden layers ``masked_dense_0``,
    ``masked_dense_1``, ..., and the output layer ``masked_output``.

    Args:
        n_features: width of the input features.
        n_classes: number of classes (softmax output, always with a bias).
        hidden: units of each hidden layer (may be empty).
        use_bias: whether the hidden layers have a bias.
        hidden_activation: activation of the hidden layers.
        kernel_masks: optional per-layer ``(in, out)`` 0/1 masks, one per layer (hidden
            layers then output), e.g. from `HeadMasks.kernel_masks()`.
        seed: seeds the kernel initializers (layer ``i`` uses ``seed + i``); ``None``
            draws from Keras' global RNG (see `keras.utils.set_random_seed`).
        name: model name.

    Returns:
        The uncompiled model.

    Raises:
        ValueError: bad widths, or masks of the wrong number or shape.
    """
    if int(n_features) < 1 or int(n_classes) < 1 or any(int(h) < 1 for h in hidden):
        raise ValueError(
            f"n_features={n_features}, n_classes={n_classes}, hidden={tuple(hidden)}; expected positive widths"
        )

    def initializer(i: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=None if seed is None else int(seed) + i)

    inputs = keras.Input(shape=(int(n_features),), name="features")
    x = inputs
    for i, units in enumerate(hidden):
        x = MaskedDense(
            int(units),
            activation=hidden_activation,
            use_bias=use_bias,
            kernel_initializer=initializer(i),
            name=f"masked_dense_{i}",
        )(x)
    outputs = MaskedDense(
        int(n_classes),
        activation="softmax",
        use_bias=True,
        kernel_initializer=initializer(len(hidden)),
        name="masked_output",
    )(x)
    model = keras.Model(inputs, outputs, name=name)
    if kernel_masks is not None:
        set_head_masks(model, kernel_masks)
    return model


def masked_dense_layers(model: keras.Model) -> list[MaskedDense]:
    """The `MaskedDense` layers of a model in layer order, looking into nested models.

    Args:
        model: any Keras model.

    Returns:
        The layers in `model.layers` order, a nested model's own layers in its place.
    """
    found: list[MaskedDense] = []
    for layer in model.layers:
        if isinstance(layer, MaskedDense):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(masked_dense_layers(layer))
    return found


def set_head_masks(model: keras.Model, kernel_masks: Sequence[Any]) -> None:
    """Assign one kernel mask per `MaskedDense` layer of ``model``, in layer order.

    Args:
        model: a model holding `MaskedDense` layers (nested models are searched).
        kernel_masks: ``(in, out)`` 0/1 masks, one per `MaskedDense` layer.

    Raises:
        ValueError: the number of masks differs from the number of layers, or a mask
            has the wrong shape or values.
    """
    layers = masked_dense_layers(model)
    if len(kernel_masks) != len(layers):
        raise ValueError(
            f"got {len(kernel_masks)} kernel masks; expected {len(layers)}, "
            f"one per MaskedDense layer of {model.name!r}"
        )
    for layer, mask in zip(layers, kernel_masks):
        layer.set_mask(mask)


def set_head_weights(
    model: keras.Model,
    kernels: Sequence[Any],
    biases: Sequence[Any | None],
) -> None:
    """Assign trained kernels and biases to the `MaskedDense` layers, in layer order.

    Each kernel is stored multiplied by the layer's current mask, like `set_mask` does,
    so the stored weights hold zeros where connections are pruned.

    Args:
        model: a model holding `MaskedDense` layers (nested models are searched).
        kernels: one ``(in, out)`` array per layer.
        biases: one ``(out,)`` array per layer, ``None`` for a layer without bias.

    Raises:
        ValueError: wrong number of entries, wrong shapes, or a bias given to a layer
            without one (or missing for a layer with one).
    """
    layers = masked_dense_layers(model)
    if len(kernels) != len(layers) or len(biases) != len(layers):
        raise ValueError(
            f"got {len(kernels)} kernels and {len(biases)} biases; expected {len(layers)} of each, "
            f"one per MaskedDense layer of {model.name!r}"
        )
    for layer, kernel, bias in zip(layers, kernels, biases):
        kernel = _to_numpy(kernel).astype(np.float32)
        if kernel.shape != layer.kernel_shape:
            raise ValueError(f"{layer.name}: kernel has shape {kernel.shape}; expected {layer.kernel_shape}")
        if bias is not None and layer.bias is None:
            raise ValueError(f"{layer.name}: a bias was given; expected None (the layer has no bias)")
        if bias is None and layer.bias is not None:
            raise ValueError(f"{layer.name}: bias is None; expected an array of shape {(layer.units,)}")
        if bias is not None:
            bias = _to_numpy(bias).astype(np.float32)
            if bias.shape != (layer.units,):
                raise ValueError(f"{layer.name}: bias has shape {bias.shape}; expected {(layer.units,)}")
        layer.kernel.assign(kernel * layer.get_mask())
        if bias is not None:
            layer.bias.assign(bias)


def _to_numpy(value: Any) -> np.ndarray:
    """NumPy view of an array, a nested list, a backend tensor or a Keras variable."""
    if isinstance(value, (np.ndarray, list, tuple, bool, int, float)):
        return np.asarray(value)
    return np.asarray(ops.convert_to_numpy(value))
