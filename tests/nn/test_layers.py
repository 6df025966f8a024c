"""Tests for evoprune_tf.nn.layers: MaskedDense, FeatureGather, masked heads and compact export."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from evoprune_tf.encodings import ConnectionPruning, FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.nn.layers import (
    FeatureGather,
    MaskedDense,
    build_masked_head,
    compact,
    count_active_parameters,
    masked_dense_layers,
    set_head_masks,
    set_head_weights,
    strip_masks,
)

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


def head_types(model: keras.Model) -> list[type]:
    return [type(layer) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, size=32)
    return x, y


def random_mask(shape: tuple[int, int], seed: int, p: float = 0.5) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


# ------------------------------------------------------------------------- MaskedDense


def test_mask_multiplies_kernel_and_zeroes_the_stored_kernel(data):
    x, _ = data
    layer = MaskedDense(HIDDEN, activation="relu", bias_initializer="random_normal")
    layer.build((None, N_FEATURES))
    kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
    bias = keras.ops.convert_to_numpy(layer.bias)
    mask = random_mask((N_FEATURES, HIDDEN), seed=0)

    layer.set_mask(mask)

    expected = np.maximum(x @ (kernel * mask) + bias, 0.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer.get_mask(), mask)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), kernel * mask)


def test_kernel_mask_is_a_non_trainable_float32_weight_of_ones():
    layer = MaskedDense(HIDDEN, use_bias=False)
    layer.build((None, N_FEATURES))
    assert [w.name for w in layer.non_trainable_weights] == ["kernel_mask"]
    assert [w.name for w in layer.trainable_weights] == ["kernel"]
    assert layer.kernel_mask.dtype == "float32"
    assert layer.bias is None
    np.testing.assert_array_equal(layer.get_mask(), np.ones((N_FEATURES, HIDDEN), np.float32))


def test_set_mask_accepts_booleans_and_backend_tensors():
    layer = MaskedDense(4)
    layer.build((None, 5))
    mask = random_mask((5, 4), seed=3)
    layer.set_mask(mask.astype(bool))
    np.testing.assert_array_equal(layer.get_mask(), mask)
    layer.set_mask(keras.ops.convert_to_tensor(1.0 - mask))
    np.testing.assert_array_equal(layer.get_mask(), 1.0 - mask)


def test_set_mask_rejects_a_bad_shape_bad_values_and_an_unbuilt_layer():
    layer = MaskedDense(HIDDEN, name="hidden")
    layer.build((None, N_FEATURES))
    with pytest.raises(ValueError, match=r"^hidden: mask has shape \(8, 12\); expected \(12, 8\)$"):
        layer.set_mask(np.ones((HIDDEN, N_FEATURES)))
    with pytest.raises(ValueError, match="other than 0 and 1"):
        layer.set_mask(np.full((N_FEATURES, HIDDEN), 0.5))
    np.testing.assert_array_equal(layer.get_mask(), 1.0)  # nothing was assigned
    with pytest.raises(ValueError, match="built"):
        MaskedDense(3).set_mask(np.ones((2, 3)))


class CountingMaskedDense(MaskedDense):
    """Counts Python executions of `call`: compiled functions run it only when tracing."""

    traces = 0

    def call(self, inputs):
        CountingMaskedDense.traces += 1
        return super().call(inputs)


def test_set_mask_on_a_compiled_model_changes_outputs_without_retracing(data):
    x, y = data
    inputs = keras.Input((N_FEATURES,))
    hidden = CountingMaskedDense(HIDDEN, activation="relu")(inputs)
    model = keras.Model(inputs, CountingMaskedDense(N_CLASSES, activation="softmax")(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    before = predict(model, x)
    layers = masked_dense_layers(model)
    mask_variables = [layer.kernel_mask for layer in layers]
    traces = CountingMaskedDense.traces

    set_head_masks(model, [random_mask(layer.kernel_shape, seed=i) for i, layer in enumerate(layers)])
    expected = numpy_forward(model, x)
    after = predict(model, x)
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)

    assert CountingMaskedDense.traces == traces
    assert all(layer.kernel_mask is variable for layer, variable in zip(layers, mask_variables))
    assert not np.allclose(after, before, atol=1e-4)
    np.testing.assert_allclose(after, expected, atol=1e-5)


def test_pruned_connections_get_no_gradient_and_stay_zero_after_fit(data):
    x, y = data
    model = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN,), use_bias=True, seed=0)
    layers = masked_dense_layers(model)
    masks = [random_mask(layer.kernel_shape, seed=10 + i) for i, layer in enumerate(layers)]
    set_head_masks(model, masks)
    # Put non-zero values back under the pruned entries: the mask itself, not the stored
    # zeros, must keep them out of the output and away from the optimizer.
    rng = np.random.default_rng(2)
    for layer in layers:
        layer.kernel.assign(rng.normal(size=layer.kernel_shape).astype(np.float32))
    before = [keras.ops.convert_to_numpy(layer.kernel).copy() for layer in layers]

    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), loss="sparse_categorical_crossentropy"
    )
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)

    for layer, mask, old in zip(layers, masks, before):
        new = keras.ops.convert_to_numpy(layer.kernel)
        pruned = mask == 0
        np.testing.assert_array_equal(new[pruned], old[pruned])
        assert np.abs(new[~pruned] - old[~pruned]).max() > 1e-3  # the active ones did train
        assert np.all(keras.ops.convert_to_numpy(layer.masked_kernel)[pruned] == 0)
    np.testing.assert_allclose(predict(model, x), numpy_forward(model, x), atol=1e-5)


def _kernel_gradient(layer: MaskedDense, x: np.ndarray) -> np.ndarray:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, layer.kernel.value).numpy()
    if backend == "jax":
        import jax

        def loss(kernel):
            values = [kernel if v is layer.kernel else v.value for v in layer.trainable_variables]
            out, _ = layer.stateless_call(values, [v.value for v in layer.non_trainable_variables], x)
            return (out**2).sum()

        return np.asarray(jax.grad(loss)(layer.kernel.value))
    pytest.skip(f"no gradient helper for the {backend} backend")


def test_pruned_connections_receive_a_zero_gradient(data):
    x, _ = data
    layer = MaskedDense(HIDDEN, activation="tanh")
    layer.build((None, N_FEATURES))
    mask = random_mask((N_FEATURES, HIDDEN), seed=4)
    layer.set_mask(mask)
    layer.kernel.assign(np.ones((N_FEATURES, HIDDEN), np.float32))
    grad = _kernel_gradient(layer, x)
    assert np.all(grad[mask == 0] == 0)
    assert np.all(grad[mask == 1] != 0)


def test_get_config_round_trips():
    layer = MaskedDense(
        5, activation="tanh", use_bias=False, kernel_initializer=keras.initializers.HeNormal(seed=3), name="md"
    )
    clone = MaskedDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert (clone.units, clone.use_bias, clone.activation) == (5, False, keras.activations.tanh)

    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is MaskedDense and restored.get_config() == layer.get_config()

    gather = FeatureGather([4, 0, 2], name="gather")
    assert FeatureGather.from_config(gather.get_config()).get_config() == gather.get_config()
    assert gather.get_config()["indices"] == [4, 0, 2]


def test_masked_head_saves_and_loads_as_keras_file(tmp_path, data):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN, 6), use_bias=True)
    genome = np.random.default_rng(5).integers(0, 2, NeuronPruning(spec).genome_length)
    model = build_masked_head(
        N_FEATURES, N_CLASSES, spec.hidden, use_bias=True, kernel_masks=NeuronPruning(spec).kernel_masks(genome)
    )
    randomize(model)
    path = tmp_path / "head.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)

    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    assert [type(layer) for layer in masked_dense_layers(loaded)] == [MaskedDense] * 3
    for original, restored in zip(masked_dense_layers(model), masked_dense_layers(loaded)):
        np.testing.assert_array_equal(restored.get_mask(), original.get_mask())


def test_feature_gather_takes_columns_and_checks_range(data):
    x, _ = data
    gather = FeatureGather([5, 1, 1])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(gather(x)), x[:, [5, 1, 1]])
    assert gather.compute_output_shape((None, N_FEATURES)) == (None, 3)
    with pytest.raises(ValueError, match="out of range"):
        FeatureGather([N_FEATURES])(keras.Input((N_FEATURES,)))
    with pytest.raises(ValueError, match="non-negative"):
        FeatureGather([-1])


# ----------------------------------------------------------------------- masked heads


@pytest.mark.parametrize("use_bias", [False, True])
def test_build_masked_head_names_layers_and_honours_use_bias(use_bias):
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN, 6), use_bias=use_bias)
    model = build_masked_head(N_FEATURES, N_CLASSES, spec.hidden, use_bias=use_bias)
    layers = masked_dense_layers(model)
    assert [layer.name for layer in layers] == ["masked_dense_0", "masked_dense_1", "masked_output"]
    assert [layer.bias is not None for layer in layers] == [use_bias, use_bias, True]
    assert layers[-1].activation is keras.activations.softmax
    assert layers[0].activation is keras.activations.relu
    # Trainable parameters of the unpruned head (count_params() would add the masks).
    assert trainable_count(model) == spec.n_parameters()


def test_build_masked_head_is_seeded_and_applies_masks():
    masks = FeatureSelection(HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,))).kernel_masks([1, 0] * 6)
    a = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN,), seed=7, kernel_masks=masks)
    b = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN,), seed=7)
    c = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN,), seed=8)
    ka, kb, kc = (keras.ops.convert_to_numpy(masked_dense_layers(m)[0].kernel) for m in (a, b, c))
    np.testing.assert_array_equal(ka, kb * masks[0])
    assert not np.allclose(kb, kc)
    for layer, mask in zip(masked_dense_layers(a), masks):
        np.testing.assert_array_equal(layer.get_mask(), mask)


def test_set_head_masks_and_weights_check_counts_and_shapes():
    model = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN,))
    with pytest.raises(ValueError, match="got 1 kernel masks; expected 2"):
        set_head_masks(model, [np.ones((N_FEATURES, HIDDEN))])
    kernels = [np.full((N_FEATURES, HIDDEN), 0.5, np.float32), np.full((HIDDEN, N_CLASSES), -1.0, np.float32)]
    with pytest.raises(ValueError, match="expected None"):
        set_head_weights(model, kernels, [np.zeros(HIDDEN), np.zeros(N_CLASSES)])
    with pytest.raises(ValueError, match=r"kernel has shape \(8, 12\); expected \(12, 8\)"):
        set_head_weights(model, [kernels[0].T, kernels[1]], [None, np.zeros(N_CLASSES)])

    mask = random_mask((N_FEATURES, HIDDEN), seed=6)
    set_head_masks(model, [mask, np.ones((HIDDEN, N_CLASSES))])
    set_head_weights(model, kernels, [None, np.arange(N_CLASSES)])
    hidden, output = masked_dense_layers(model)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(hidden.kernel), kernels[0] * mask)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(output.kernel), kernels[1])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(output.bias), np.arange(N_CLASSES))


# --------------------------------------------------------------------------- compact


def assert_compact_matches(model: keras.Model, x: np.ndarray) -> keras.Model:
    small = compact(model)
    np.testing.assert_allclose(predict(small, x), predict(model, x), atol=1e-5)
    np.testing.assert_allclose(predict(small, x), numpy_forward(model, x), atol=1e-5)
    assert not any(isinstance(layer, MaskedDense) for layer in small.layers)
    return small


def test_compact_drops_pruned_input_features(data):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,), use_bias=True)
    genome = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1])
    masks = FeatureSelection(spec).decode(genome)
    model = build_masked_head(N_FEATURES, N_CLASSES, spec.hidden, use_bias=True, kernel_masks=masks.kernel_masks())
    randomize(model)

    small = assert_compact_matches(model, x)

    assert head_types(small) == [FeatureGather, keras.layers.Dense, keras.layers.Dense]
    assert small.get_layer("feature_gather").indices == tuple(np.flatnonzero(genome))
    assert [tuple(layer.kernel.shape) for layer in dense_layers(small)] == [(7, HIDDEN), (HIDDEN, N_CLASSES)]
    assert small.count_params() == masks.active_parameters(spec) < spec.n_parameters()
    assert count_active_parameters(model) == masks.active_parameters(spec)
    assert [layer.name for layer in dense_layers(small)] == ["compact_dense_0", "compact_output"]


@pytest.mark.parametrize("use_bias", [False, True])
def test_compact_removes_pruned_neurons(data, use_bias):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN, 6), use_bias=use_bias)
    genome = np.array([1, 0, 1, 1, 0, 0, 1, 1] + [0, 1, 1, 0, 1, 0])
    masks = NeuronPruning(spec).decode(genome)
    model = build_masked_head(
        N_FEATURES, N_CLASSES, spec.hidden, use_bias=use_bias, kernel_masks=masks.kernel_masks()
    )
    randomize(model)

    small = assert_compact_matches(model, x)

    assert head_types(small) == [keras.layers.Dense] * 3  # every feature is still used
    assert [tuple(layer.kernel.shape) for layer in dense_layers(small)] == [(N_FEATURES, 5), (5, 3), (3, 3)]
    assert [layer.bias is not None for layer in dense_layers(small)] == [use_bias, use_bias, True]
    assert small.count_params() == masks.active_parameters(spec) == count_active_parameters(model)
    assert small.count_params() < spec.n_parameters()


def test_compact_folds_constant_neurons_into_the_next_bias(data):
    """A neuron that receives nothing still outputs activation(bias or 0): keep its effect."""
    x, _ = data
    model = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN, 6), use_bias=False, hidden_activation="sigmoid")
    masks = [np.ones(layer.kernel_shape, np.float32) for layer in masked_dense_layers(model)]
    masks[0][:, [2, 5]] = 0  # hidden-0 neurons 2 and 5 receive nothing: sigmoid(0) = 0.5
    masks[1][3, :] = 0  # hidden-0 neuron 3 sends nothing
    masks[1][:, 4] = 0  # hidden-1 neuron 4 receives nothing ...
    masks[2][1, :] = 0  # ... and hidden-1 neuron 1 sends nothing
    set_head_masks(model, masks)
    randomize(model)

    small = assert_compact_matches(model, x)

    dense = dense_layers(small)
    assert [tuple(layer.kernel.shape) for layer in dense] == [(N_FEATURES, 5), (5, 4), (4, 3)]
    # The masked hidden layers had no bias; the compact ones gain one to hold the constants.
    assert dense[1].bias is not None and dense[2].bias is not None and dense[0].bias is None


def test_compact_bakes_single_pruned_connections_and_drops_dead_rows(data):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,))
    connections = random_mask((N_FEATURES, HIDDEN), seed=8, p=0.6)
    connections[[0, 7], :] = 0  # two features lose every connection
    encoding = ConnectionPruning(spec, layer=0)
    masks = encoding.decode(connections.ravel().astype(int))
    model = build_masked_head(N_FEATURES, N_CLASSES, spec.hidden, kernel_masks=masks.kernel_masks())
    randomize(model)

    small = assert_compact_matches(model, x)

    assert small.get_layer("feature_gather").indices == tuple(i for i in range(N_FEATURES) if i not in (0, 7))
    kernel = keras.ops.convert_to_numpy(small.get_layer("compact_dense_0").kernel)
    kept_mask = connections[[i for i in range(N_FEATURES) if i not in (0, 7)]]
    assert np.all(kernel[kept_mask == 0] == 0) and np.all(kernel[kept_mask == 1] != 0)
    assert small.count_params() == 10 * HIDDEN + HIDDEN * N_CLASSES + N_CLASSES < spec.n_parameters()
    # The dense storage still holds the zeros inside kept rows; the sparse count does not.
    assert count_active_parameters(model) == masks.active_parameters(spec) < small.count_params()


def test_compact_of_a_fully_pruned_input_keeps_a_valid_constant_model(data):
    x, _ = data
    model = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN,), use_bias=True)
    set_head_masks(model, [np.zeros((N_FEATURES, HIDDEN)), np.ones((HIDDEN, N_CLASSES))])
    randomize(model)
    small = assert_compact_matches(model, x)
    assert [tuple(layer.kernel.shape) for layer in dense_layers(small)] == [(1, 1), (1, N_CLASSES)]


def test_compact_model_saves_and_loads_as_keras_file(tmp_path, data):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,))
    model = build_masked_head(
        N_FEATURES, N_CLASSES, spec.hidden, kernel_masks=FeatureSelection(spec).kernel_masks([0, 1] * 6)
    )
    randomize(model)
    small = strip_masks(model)
    path = tmp_path / "compact.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(predict(loaded, x), predict(small, x))
    assert head_types(loaded) == [FeatureGather, keras.layers.Dense, keras.layers.Dense]


def _backbone_then_head(kind: str, head: keras.Model) -> tuple[keras.Model, keras.layers.Layer]:
    backbone = keras.layers.Dense(N_FEATURES, activation="tanh", name="backbone")
    if kind == "sequential":
        return keras.Sequential([keras.Input((5,)), backbone, head]), backbone
    if kind == "functional_nested":
        inputs = keras.Input((5,))
        return keras.Model(inputs, head(backbone(inputs))), backbone
    inputs = keras.Input((5,))
    x = backbone(inputs)
    for layer in masked_dense_layers(head):  # the head's layers inlined in the outer graph
        x = layer(x)
    return keras.Model(inputs, x), backbone


@pytest.mark.parametrize("kind", ["sequential", "functional_nested", "functional_flat"])
def test_compact_keeps_a_backbone_in_front_of_the_head(kind):
    x = np.random.default_rng(9).normal(size=(16, 5)).astype(np.float32)
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,))
    head = build_masked_head(
        N_FEATURES, N_CLASSES, spec.hidden, kernel_masks=FeatureSelection(spec).kernel_masks([1, 1, 0] * 4)
    )
    randomize(head)
    model, backbone = _backbone_then_head(kind, head)

    small = compact(model)

    np.testing.assert_allclose(predict(small, x), predict(model, x), atol=1e-5)
    assert small.get_layer("backbone") is backbone  # shared, not copied
    assert head_types(small) == [keras.layers.Dense, FeatureGather, keras.layers.Dense, keras.layers.Dense]
    # The masked model's count_params() includes the masks: compare trainable weights.
    assert small.count_params() == trainable_count(model) - 4 * HIDDEN


def test_compact_rejects_a_model_without_a_masked_head():
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="does not end with MaskedDense"):
        compact(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


# ------------------------------------------------------------------------ other backend

_JAX_SCRIPT = textwrap.dedent(
    """
    import numpy as np, keras
    from evoprune_tf.nn.layers import build_masked_head, compact, masked_dense_layers, set_head_masks
    assert keras.backend.backend() == "jax"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12)).astype("float32"); y = rng.integers(0, 3, 16)
    model = build_masked_head(12, 3, (8,), use_bias=True, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", jit_compile=True)
    before = model.predict(x, verbose=0)
    masks = [(rng.random(l.kernel_shape) < 0.5).astype("float32") for l in masked_dense_layers(model)]
    masks[0][[1, 4], :] = 0
    set_head_masks(model, masks)
    assert np.abs(model.predict(x, verbose=0) - before).max() > 1e-4  # the jitted predict sees the new mask
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for layer, mask in zip(masked_dense_layers(model), masks):
        assert np.all(keras.ops.convert_to_numpy(layer.kernel)[mask == 0] == 0)
    small = compact(model)
    a, b = model.predict(x, verbose=0), small.predict(x, verbose=0)
    assert np.abs(a - b).max() < 1e-5, np.abs(a - b).max()
    kept = small.get_layer("feature_gather").indices
    assert 1 not in kept and 4 not in kept and small.count_params() < 12 * 8 + 8 + 8 * 3 + 3, kept
    print("ok")
    """
)


@pytest.mark.skipif(
    keras.backend.backend() == "jax" or importlib.util.find_spec("jax") is None,
    reason="needs jax, and a session on another backend",
)
def test_layers_work_on_the_jax_backend():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_feature_scaling_is_exact_for_tiny_features_and_round_trips(tmp_path):
    from evoprune_tf.nn.layers import FeatureScaling

    rng = np.random.default_rng(0)
    mean = rng.normal(0, 1e-11, 6).astype(np.float32)
    std = rng.uniform(1e-12, 2e-12, 6).astype(np.float32)
    x = (mean + std * rng.normal(size=(5, 6))).astype(np.float32)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, FeatureScaling(mean, std)(inputs))
    np.testing.assert_allclose(np.asarray(model(x)), (x - mean) / std, rtol=1e-4, atol=1e-4)
    model.save(tmp_path / "s.keras")
    again = keras.saving.load_model(tmp_path / "s.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-6)
    with pytest.raises(ValueError, match="positive std"):
        FeatureScaling([0.0], [0.0])
