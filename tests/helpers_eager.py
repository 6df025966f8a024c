"""Keras' train and predict functions run eagerly, for tests whose point is not the traced graph.

``tf.config.run_functions_eagerly(True)`` makes Keras' ``fit``/``predict``/``evaluate`` run
the same steps (same layers, losses, optimizer updates) without tracing a `tf.function`
per model. TASCNet builds a new model per candidate and per prune iteration, and on the
tiny data of the tests tracing is most of their CPU: a stage 1 + 2 run takes ~12 CPU-s
eagerly against ~35 traced. Graph mode stays covered where it matters: the latency test,
the pair-similarity training test and the stage-2 exact-resume test run traced.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

#: tf.data's functions stay traced and say so once: expected, not a problem.
EAGER_DATA_WARNING = "ignore:Even though the .tf.config.experimental_run_functions_eagerly.:UserWarning"


@contextlib.contextmanager
def eager_functions() -> Iterator[None]:
    """Run TensorFlow functions eagerly inside the block; the previous setting afterwards."""
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)

