"""Head builders for tests (``TrainConfig(head="head_builders:dropout_head")`` with tests/ on sys.path).

A head builder is ``builder(spec: HeadSpec) -> keras.Model``: features
``(batch, spec.n_features)`` to ``(batch, spec.n_classes)`` logits or softmax
probabilities, with one `MaskedDense` per layer of ``spec.widths``.
"""

from __future__ import annotations

import keras

from evoprune_tf.encodings import HeadSpec
from evoprune_tf.nn.layers import MaskedDense


def dropout_head(spec: HeadSpec) -> keras.Model:
    """ReLU `MaskedDense` layers with L2 kernels and seeded Dropout, softmax output.

    Args:
        spec: the head's widths.

    Returns:
        The uncompiled model.
    """
    inputs = keras.Input((spec.n_features,))
    x = inputs
    for i, units in enumerate(spec.hidden):
        x = MaskedDense(units, activation="relu", use_bias=spec.use_bias,
                        kernel_regularizer=keras.regularizers.L2(1e-3), name=f"masked_dense_{i}")(x)
        x = keras.layers.Dropout(0.25, seed=7 + i)(x)
    outputs = MaskedDense(spec.n_classes, activation="softmax", name="masked_output")(x)
    return keras.Model(inputs, outputs, name="dropout_head")


def tanh_head(spec: HeadSpec) -> keras.Model:
    """A head the NumPy forward cannot reproduce (tanh hidden layer, seeded He-normal kernels).

    Args:
        spec: the head's widths.

    Returns:
        The uncompiled model (logits).
    """
    inputs = keras.Input((spec.n_features,))
    x = inputs
    for i, units in enumerate(spec.hidden):
        x = MaskedDense(units, activation="tanh", kernel_initializer=keras.initializers.HeNormal(seed=i))(x)
    return keras.Model(inputs, MaskedDense(spec.n_classes)(x))


def no_masked_head(spec: HeadSpec) -> keras.Model:
    """A bad builder: plain Dense layers only."""
    inputs = keras.Input((spec.n_features,))
    return keras.Model(inputs, keras.layers.Dense(spec.n_classes)(inputs))


def wrong_width_head(spec: HeadSpec) -> keras.Model:
    """A bad builder: its input is one feature too wide."""
    inputs = keras.Input((spec.n_features + 1,))
    x = MaskedDense(spec.hidden[0], activation="relu")(inputs)
    return keras.Model(inputs, MaskedDense(spec.n_classes)(x))


def lone_keras_logits(spec: HeadSpec, data, cfg, init, seed: int):
    """Validation logits of a plain Keras MLP trained alone as the engine trains a head.

    The reference the population paths must equal: the same initial weights ``init``
    (``trainer._init``: ``(kernel, bias)`` pairs), ``make_optimizer(cfg)``, from-logits
    cross-entropy and the engine's mini-batch order (``derive_seed(seed, "batches")``),
    one ``fit`` epoch per permutation.
    """
    import numpy as np

    from evoprune_tf.train import derive_seed
    from evoprune_tf.train.keras_engine import make_optimizer

    inputs = keras.Input((spec.n_features,))
    x = inputs
    for width in spec.hidden:
        x = keras.layers.Dense(width, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(spec.n_classes)(x))
    model.set_weights([w for pair in init for w in pair])
    model.compile(optimizer=make_optimizer(cfg), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    order = np.random.default_rng(derive_seed(seed, "batches"))
    for _ in range(cfg.epochs):
        perm = order.permutation(len(data.y_train))
        model.fit(data.x_train[perm], data.y_train[perm], batch_size=cfg.batch_size, epochs=1, shuffle=False,
                  verbose=0)
    return model.predict(data.x_val, verbose=0)
