"""Shared helpers of the masked-head tests (tests/nn/test_layers.py, tests/nn/test_export.py)."""

from __future__ import annotations

import keras
import numpy as np

from evoprune_tf.nn.layers import masked_dense_layers

N_FEATURES, HIDDEN, N_CLASSES = 12, 8, 3

_ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "softmax": lambda z: _softmax(z),
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_forward(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """What a masked head must compute, from its weights, in float64 NumPy."""
    out = x.astype(np.float64)
    for layer in masked_dense_layers(model):
        kernel = keras.ops.convert_to_numpy(layer.kernel) * layer.get_mask()
        out = out @ kernel
        if layer.bias is not None:
            out = out + keras.ops.convert_to_numpy(layer.bias)
        out = _ACTIVATIONS[layer.activation.__name__](out)
    return out


def randomize(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial kernels and biases (Keras starts biases at zero)."""
    rng = np.random.default_rng(seed)
    for layer in masked_dense_layers(model):
        layer.kernel.assign(rng.normal(0.0, 0.6, size=layer.kernel_shape).astype(np.float32) * layer.get_mask())
        if layer.bias is not None:
            layer.bias.assign(rng.normal(0.0, 0.5, size=(layer.units,)).astype(np.float32))


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=len(x), verbose=0))


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)
