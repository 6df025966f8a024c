"""The global Keras seed and seed-generator state, saved in checkpoints and restored on resume.

These use private Keras APIs (``keras.src``), so both are best effort: a Keras without
them leaves the state out (None) instead of breaking a checkpoint.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["keras_random_state", "restore_keras_random"]


def keras_random_state() -> dict | None:
    """The global Keras seed and seed-generator state, when Keras is loaded."""
    if "keras" not in sys.modules:
        return None
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils

        generator = global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)
        state = None
        if generator is not None:
            import keras

            state = np.asarray(keras.ops.convert_to_numpy(generator.state)).copy()
        return {"seed": rng_utils.get_random_seed(), "generator_state": state}
    except Exception:  # noqa: BLE001 - private Keras API: never let it break a checkpoint
        return None


def restore_keras_random(saved: dict | None) -> None:
    if not saved:
        return
    try:
        import keras
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils

        global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, saved.get("seed"))
        generator = None
        if saved.get("generator_state") is not None:
            generator = keras.random.SeedGenerator(seed=0)
            generator.state.assign(np.asarray(saved["generator_state"]).astype(generator.state.dtype))
        global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, generator)
    except Exception:  # noqa: BLE001 - private Keras API: best effort
        pass
