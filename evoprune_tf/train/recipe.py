"""The Keras pieces of a training recipe: its optimizer and its loss.

Both read a `evoprune_tf.train.config.TrainConfig` (any object with its fields) and
import Keras only when called, so the config can check its names at load time without
importing this module's users.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["DEFAULT_LOSS", "make_optimizer", "make_loss"]

#: The default loss: cross-entropy on integer labels (one-hot when label smoothing is on).
DEFAULT_LOSS = "sparse_categorical_crossentropy"


def make_optimizer(config: Any, *, global_clipnorm: float | None = None) -> Any:
    """The Keras optimizer of a recipe.

    ``"sgd"`` (or ``{name = "sgd", ...}``) takes ``learning_rate``, ``momentum`` and
    ``nesterov`` from the config unless the dict sets them; other optimizers take the
    config's ``learning_rate`` unless the dict sets one.

    Args:
        config: the recipe.
        global_clipnorm: a gradient-norm clip applied unless the recipe's options set a
            clip of their own (the filter fine-tune uses 1.0).

    Returns:
        A new, unbuilt `keras.optimizers.Optimizer`.

    Raises:
        ValueError: unknown optimizer name or option.
    """
    import keras

    spec = config.optimizer
    name, options = (spec, {}) if isinstance(spec, str) else (spec["name"], {k: v for k, v in spec.items() if k != "name"})
    try:
        cls = type(keras.optimizers.get(name))
    except (ValueError, TypeError):
        raise ValueError(f"train.optimizer={name!r} is not a Keras optimizer; expected a keras.optimizers name "
                         f"such as 'sgd', 'adam', 'adamw' or 'rmsprop'") from None
    defaults: dict[str, Any] = {"learning_rate": config.learning_rate}
    if cls is keras.optimizers.SGD:
        defaults.update(momentum=config.momentum, nesterov=config.nesterov)
    if global_clipnorm is not None and not {"clipnorm", "clipvalue", "global_clipnorm"} & set(options):
        defaults["global_clipnorm"] = float(global_clipnorm)
    try:
        return cls(**{**defaults, **options})
    except (TypeError, ValueError) as error:
        raise ValueError(f"train.optimizer={spec!r}: {str(error).splitlines()[0]}") from None


def make_loss(config: Any, *, from_logits: bool) -> tuple[Any, bool]:
    """The Keras loss of a recipe, unreduced (one value per sample).

    Args:
        config: the recipe (``loss``, ``label_smoothing``).
        from_logits: whether the model outputs logits (else probabilities).

    Returns:
        ``(loss, sparse)``: a `keras.losses.Loss` with ``reduction=None`` and whether it
        takes integer labels (else one-hot).

    Raises:
        ValueError: unknown loss name or option.
    """
    import keras

    spec = config.loss
    name, options = (spec, {}) if isinstance(spec, str) else (spec["name"], {k: v for k, v in spec.items() if k != "name"})
    camel = name if not name.islower() else "".join(part.capitalize() for part in name.split("_"))
    if camel == "SparseCategoricalCrossentropy" and config.label_smoothing > 0:
        camel = "CategoricalCrossentropy"  # Keras' sparse cross-entropy has no label smoothing
    try:
        cls = type(keras.losses.get(camel))
        if not issubclass(cls, keras.losses.Loss):
            raise ValueError(camel)
    except (ValueError, TypeError):
        raise ValueError(f"train.loss={name!r} is not a Keras loss; expected a keras.losses name such as "
                         f"{DEFAULT_LOSS!r} or 'categorical_focal_crossentropy'") from None
    accepted = inspect.signature(cls.__init__).parameters
    extra: dict[str, Any] = {"reduction": None}
    if "from_logits" in accepted:
        extra["from_logits"] = from_logits
    if config.label_smoothing > 0:
        if "label_smoothing" not in accepted:
            raise ValueError(f"train.label_smoothing={config.label_smoothing}; the loss {name!r} has no label smoothing")
        extra["label_smoothing"] = config.label_smoothing
    try:
        return cls(**{**options, **extra}), camel.startswith("Sparse")
    except (TypeError, ValueError) as error:
        raise ValueError(f"train.loss={spec!r}: {str(error).splitlines()[0]}") from None
