"""KernelTrajectoryRecorder: layer selection and trajectory shapes/values after real fits."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.methods.tascnet.trajectories import (
    KernelTrajectoryRecorder,
    conv_kernels,
    filter_matrix,
    find_conv_layers,
)


def _conv1d_model() -> keras.Model:
    inputs = keras.Input((12, 4))
    a = keras.layers.Conv1D(6, 3, activation="relu", name="c_small")(inputs)
    b = keras.layers.Conv1D(10, 2, activation="relu", name="c_wide")(a)
    x = keras.layers.GlobalMaxPooling1D()(b)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def _conv2d_model_with_nested_backbone() -> keras.Model:
    inner_in = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(9, 3, name="bb_conv")(inner_in)
    y = keras.layers.DepthwiseConv2D(3, name="bb_dw")(y)
    backbone = keras.Model(inner_in, y, name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = backbone(inputs)
    x = keras.layers.Conv2D(5, 1, name="head_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _fit(model: keras.Model, x, y, recorder, epochs=2) -> None:
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[recorder])


def test_selection_by_min_filters_or_names_includes_nested_models():
    model = _conv2d_model_with_nested_backbone()
    assert [layer.name for layer in find_conv_layers(model, min_filters=4)] == ["bb_conv", "head_conv"]
    assert [layer.name for layer in find_conv_layers(model, min_filters=5)] == ["bb_conv"]
    assert [layer.name for layer in find_conv_layers(model, layer_names=["head_conv"])] == ["head_conv"]
    with pytest.raises(ValueError, match="more than min_filters=9"):
        find_conv_layers(model, min_filters=9)
    with pytest.raises(ValueError, match=r"\['bb_dw'\] are not Conv1D/Conv2D"):
        find_conv_layers(model, layer_names=["bb_dw"])


def test_filter_matrix_is_one_row_per_filter():
    kernel = np.arange(3 * 2 * 4).reshape(3, 2, 4)
    rows = filter_matrix(kernel)
    assert rows.shape == (4, 6)
    assert np.array_equal(rows[1], kernel[..., 1].ravel())


def test_conv1d_recording_after_two_epochs_matches_kernels():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12, 4)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 0).astype("int64")
    model = _conv1d_model()
    initial = filter_matrix(model.get_layer("c_wide").get_weights()[0])
    recorder = KernelTrajectoryRecorder(min_filters=8)
    _fit(model, x, y, recorder, epochs=2)
    assert recorder.layer_names == ["c_wide"]
    assert recorder.n_snapshots == 3 and recorder.epochs_recorded == [0, 1]
    fan_in = 2 * 6
    trajectories = recorder.trajectories()
    assert list(trajectories) == ["c_wide"]
    assert trajectories["c_wide"].shape == (10, 3 * fan_in)
    snaps = recorder.snapshots()["c_wide"]
    assert snaps.shape == (3, 10, fan_in)
    np.testing.assert_array_equal(trajectories["c_wide"][:, :fan_in], initial)
    final = filter_matrix(model.get_layer("c_wide").get_weights()[0])
    np.testing.assert_array_equal(trajectories["c_wide"][:, -fan_in:], final)
    # Training moved the weights, so the epochs' snapshots differ.
    assert not np.allclose(snaps[0], snaps[1]) and not np.allclose(snaps[1], snaps[2])


def test_conv2d_recording_in_a_nested_backbone_and_fresh_per_fit():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=32)
    model = _conv2d_model_with_nested_backbone()
    recorder = KernelTrajectoryRecorder(["bb_conv", "head_conv"], include_initial=False)
    _fit(model, x, y, recorder, epochs=2)
    shapes = {name: t.shape for name, t in recorder.trajectories().items()}
    assert shapes == {"bb_conv": (9, 2 * 27), "head_conv": (5, 2 * 9)}
    _fit(model, x, y, recorder, epochs=1)  # a new fit starts a new recording
    assert recorder.n_snapshots == 1
    kernels, biases = conv_kernels(model, ["head_conv"])
    np.testing.assert_array_equal(recorder.trajectories()["head_conv"], filter_matrix(kernels["head_conv"]))
    assert biases["head_conv"].shape == (5,)


def test_errors():
    with pytest.raises(RuntimeError, match="no snapshot"):
        KernelTrajectoryRecorder().trajectories()
    with pytest.raises(ValueError, match="min_filters"):
        KernelTrajectoryRecorder(min_filters=-1)
