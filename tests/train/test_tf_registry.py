"""TensorFlow's gradient registry keeps every traced train step alive unless released (issue 24)."""

from __future__ import annotations

import gc

import keras
import numpy as np
import pytest

from evoprune_tf.train.tf_registry import custom_gradient_count, released_custom_gradients

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's registry")


def live_func_graphs() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "FuncGraph")


def fit_fresh_model(batch_size: int = 8) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    model.fit(x, np.arange(16) % 3, batch_size=batch_size, epochs=1, verbose=0)
    return model


def test_a_fit_leaves_custom_gradients_and_graphs_behind_without_the_release():
    fit_fresh_model()  # warm-up: whatever Keras keeps once
    count, graphs = custom_gradient_count(), live_func_graphs()
    for _ in range(3):
        fit_fresh_model()
    # The mechanism the release undoes: each fresh model's traced step stays registered, with its graph.
    assert custom_gradient_count() >= count + 3
    assert live_func_graphs() >= graphs + 3


def test_released_fits_leave_nothing_and_the_model_still_trains():
    with released_custom_gradients():
        fit_fresh_model()
    count, graphs = custom_gradient_count(), live_func_graphs()
    for _ in range(3):
        with released_custom_gradients():
            model = fit_fresh_model()
        del model
    assert custom_gradient_count() == count
    assert live_func_graphs() == graphs
    with released_custom_gradients():
        model = fit_fresh_model()
    before = model.get_weights()[0].copy()
    x = np.ones((5, 4), np.float32)
    model.fit(x, np.zeros(5, int), batch_size=5, epochs=1, verbose=0)  # a new batch shape retraces afresh
    assert not np.array_equal(before, model.get_weights()[0])


def test_registrations_made_before_the_block_stay():
    fit_fresh_model()
    count = custom_gradient_count()
    assert count > 0
    with released_custom_gradients():
        fit_fresh_model()
    assert custom_gradient_count() == count


def test_tascnet_fine_tunes_of_fresh_models_leave_no_registration_behind():
    from evoprune_tf.methods.tascnet.recipe import TrainRecipe, fine_tune

    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    y = np.arange(16) % 3

    def tune_fresh_model() -> None:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        fine_tune(model, (x, y), None, epochs=1, recipe=TrainRecipe(batch_size=8))

    tune_fresh_model()
    count, graphs = custom_gradient_count(), live_func_graphs()
    for _ in range(3):
        tune_fresh_model()
    assert custom_gradient_count() == count and live_func_graphs() <= graphs
