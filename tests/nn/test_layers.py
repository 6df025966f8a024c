"""Tests for evoprune_tf.nn.layers: MaskedDense, FeatureGather, FeatureScaling and masked heads.

The compact export of these heads is tested in test_export.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.encodings import FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.nn.layers import (
    FeatureGather,
    FeatureScaling,
    MaskedDense,
    build_masked_head,
    masked_dense_layers,
    set_head_masks,
    set_head_weights,
)

from masked_heads import HIDDEN, N_CLASSES, N_FEATURES, numpy_forward, predict, randomize, trainable_count


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


def test_kernel_premasked_skips_the_multiply_and_is_not_saved(data):
    x, _ = data
    layer = MaskedDense(HIDDEN, activation="relu")
    layer.build((None, N_FEATURES))
    layer.set_mask(random_mask((N_FEATURES, HIDDEN), seed=3))  # zeroes the stored kernel where the mask is 0
    multiplied = keras.ops.convert_to_numpy(layer(x))
    layer.kernel_premasked = True
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), multiplied)
    layer.kernel.assign(np.ones((N_FEATURES, HIDDEN), np.float32))  # a broken promise shows: the mask is skipped
    assert not np.allclose(keras.ops.convert_to_numpy(layer(x)), multiplied)
    assert "kernel_premasked" not in layer.get_config()
    assert MaskedDense.from_config(layer.get_config()).kernel_premasked is False


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


def test_feature_scaling_is_exact_for_tiny_features_and_round_trips(tmp_path):
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
    with pytest.raises(ValueError, match="got 2 and 1 values"):
        FeatureScaling([0.0, 1.0], [1.0])
