"""TASCNet's SGD training recipe: fine-tuning and scoring a candidate on cached activations."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import keras
import numpy as np

from evoprune_tf.train.tf_registry import released_custom_gradients

__all__ = ["TrainRecipe", "compile_sgd", "fine_tune", "evaluate_model"]


@dataclasses.dataclass(frozen=True)
class TrainRecipe:
    """TASCNet's SGD recipe.

    Attributes:
        lr: initial learning rate (TASCNet: 1e-3).
        momentum: SGD momentum (0.9, Nesterov).
        halve_every: epochs between learning-rate halvings (20).
        batch_size: mini-batch size (32).
    """

    lr: float = 1e-3
    momentum: float = 0.9
    halve_every: int = 20
    batch_size: int = 32

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of a (0-based, running) epoch index.

        Args:
            epoch: epochs trained so far.

        Returns:
            ``lr * 0.5 ** (epoch // halve_every)``.
        """
        return float(self.lr * 0.5 ** (int(epoch) // max(1, int(self.halve_every))))


def compile_sgd(model: keras.Model, recipe: TrainRecipe) -> None:
    """Compile with SGD-Nesterov, sparse cross-entropy and accuracy.

    Args:
        model: the model (or a `PairSimilarityModel` wrapper).
        recipe: the recipe (its lr is replaced each epoch by the schedule).
    """
    optimizer = keras.optimizers.SGD(learning_rate=recipe.lr, momentum=recipe.momentum, nesterov=True)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fine_tune(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    recipe: TrainRecipe,
    epoch_offset: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    compile_model: bool = True,
) -> keras.callbacks.History:
    """Train with the recipe, the schedule following a running epoch count.

    Args:
        model: the model to train (compiled here unless ``compile_model`` is False).
        train: ``(x, y)``.
        val: ``(x, y)`` validation data shown in the history, or None.
        epochs: epochs of this call.
        recipe: the `TrainRecipe`.
        epoch_offset: epochs already trained in this run (the halving counts them).
        callbacks: extra Keras callbacks.
        compile_model: compile with `compile_sgd` first.

    Returns:
        Keras' ``History``.
    """
    if compile_model:
        compile_sgd(model, recipe)
    schedule = keras.callbacks.LearningRateScheduler(recipe.learning_rate)
    with released_custom_gradients():  # else each traced step's graph stays in TensorFlow's registry
        return model.fit(
            train[0], train[1], validation_data=val if val is not None and len(val[1]) else None,
            epochs=int(epoch_offset) + int(epochs), initial_epoch=int(epoch_offset),
            batch_size=recipe.batch_size, shuffle=True, verbose=0, callbacks=[schedule, *callbacks],
        )


def evaluate_model(model: keras.Model, data: tuple[np.ndarray, np.ndarray], *, batch_size: int = 256) -> tuple[float, float]:
    """Cross-entropy and accuracy of a model on one split (no compile needed).

    Args:
        model: a model producing class probabilities.
        data: ``(x, y)`` with integer labels.
        batch_size: prediction batch size.

    Returns:
        ``(loss, accuracy)``; ``(nan, nan)`` for an empty split.
    """
    x, y = data
    if len(y) == 0:
        return math.nan, math.nan
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))
    return loss, float(np.mean(np.argmax(probs, axis=1) == y))
