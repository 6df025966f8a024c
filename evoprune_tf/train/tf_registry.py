"""Releasing what TensorFlow's global gradient registry keeps of each traced train step.

Why a fresh Keras model per fit grew the process by ~10 MB on the TensorFlow backend
(``clear_session`` or not): tracing a train step calls ``optimizer.apply``, whose TF
backend all-reduces the gradients through the default replica context; in graph mode
that all-reduce is a ``tf.custom_gradient``, and every ``tf.custom_gradient`` traced in
graph mode registers its gradient function in TensorFlow's module-level gradient
registry under a new name (``"CustomGradient-<uid>"``), for good. The registered
closure holds the traced tensors, so the whole ``FuncGraph`` of the step (every op,
every captured variable handle) outlives the model, the optimizer and the
``tf.function``: two graphs per fine-tune, never freed.

The registered function is only looked up while the step's gradient graph is being
built, inside the trace. `released_custom_gradients` removes the entries that the
block added once the block has ended, which lets the graphs go; a model trained inside
the block keeps working (its traced functions already hold their gradient graphs) and a
later retrace registers afresh. Nothing is released on another backend.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

__all__ = ["custom_gradient_count", "released_custom_gradients"]

_PREFIX = "CustomGradient-"


def _registry() -> dict | None:
    """TensorFlow's gradient registry dict, or None when TensorFlow is not loaded."""
    ops = sys.modules.get("tensorflow.python.framework.ops")
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def custom_gradient_count() -> int:
    """How many ``tf.custom_gradient`` functions TensorFlow's registry holds now.

    Returns:
        The number of ``"CustomGradient-*"`` entries (0 without TensorFlow).
    """
    registry = _registry()
    return 0 if registry is None else sum(1 for name in list(registry) if str(name).startswith(_PREFIX))


@contextlib.contextmanager
def released_custom_gradients() -> Iterator[None]:
    """Drop the custom-gradient registrations made inside the block when it ends.

    Use it around a ``compile`` + ``fit`` (or any tracing of a train step) of a model
    built for one job. Registrations made before the block stay.

    Yields:
        Nothing.
    """
    registry = _registry()
    before = set(registry) if registry is not None else None
    try:
        yield
    finally:
        registry = _registry()  # TensorFlow may have been imported inside the block
        if registry is not None:
            added = [n for n in list(registry) if str(n).startswith(_PREFIX) and (before is None or n not in before)]
            for name in added:
                registry.pop(name, None)
