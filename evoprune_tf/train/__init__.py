"""Training of pruned heads during the search and in the final report.

`make_trainer` is the one entry point: it returns the Keras engine
(`keras_engine.KerasTrainer`, the default) or, with ``TrainConfig(engine="numpy")``,
the opt-in NumPy engine (`numpy_engine.HeadTrainer`). Both have the same interface
(``plan(masks)``, ``train(list_of_masks) -> list[TrainedHead]``) and share the compaction
plan (`plan`).
"""

from __future__ import annotations

from typing import Any

from evoprune_tf.encodings import HeadSpec
from evoprune_tf.train.config import TrainConfig, derive_seed
from evoprune_tf.train.heads import TrainedHead, training_flops, unstack_heads
from evoprune_tf.train.keras_engine import KerasTrainer  # imports Keras only when it first trains
from evoprune_tf.train.numpy_engine import HeadTrainer
from evoprune_tf.train.plan import HeadPlan, plan_head

__all__ = ["make_trainer", "TrainConfig", "TrainedHead", "HeadPlan", "plan_head", "derive_seed", "training_flops",
           "unstack_heads"]


def make_trainer(spec: HeadSpec, data: Any, config: TrainConfig | None = None, *, seed: int) -> Any:
    """The trainer of a recipe: the Keras engine, or the NumPy engine when ``config.engine == "numpy"``.

    Args:
        spec: the full head.
        data: cached features (`evoprune_tf.features.splits.FeatureSplits`).
        config: the recipe (default `TrainConfig()`).
        seed: drives initial weights, mini-batch order and dropout.

    Returns:
        An object with ``plan(masks)`` and ``train(heads) -> list[TrainedHead]``.

    Raises:
        ValueError: features of the wrong width, a bad optimizer, loss or head builder.
    """
    config = config or TrainConfig()
    if config.engine_name == "numpy":
        return HeadTrainer(spec, data, config, seed=seed)
    return KerasTrainer(spec, data, config, seed=seed)
