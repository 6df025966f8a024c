"""`TrainConfig`: how a head is trained during the search (and in the final retrain).

Kept free of Keras and NumPy-heavy imports: the application builds it from the
``[train]`` table of a config file (``TrainConfig(**table)``) before anything long
starts, so every field is a plain TOML value. Names that need Keras to check (an
optimizer or loss that is not the default) are resolved lazily, once, at construction,
so a typo fails with a one-line `ValueError` before the search starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Literal

from evoprune_tf.train.recipe import DEFAULT_LOSS, make_loss, make_optimizer

__all__ = ["TrainConfig", "derive_seed", "DEFAULT_LOSS", "ENGINES", "BACKENDS"]

EarlyStopping = Literal["none", "val_loss", "train_loss"]
ClassWeight = Literal["none", "balanced"]
Engine = Literal["keras", "numpy", "jax"]

#: Accepted ``engine`` values; ``"jax"`` is a deprecated alias of ``"keras"``.
ENGINES = ("keras", "numpy", "jax")
#: Accepted ``backend`` values: the Keras backend a run asks for (``"auto"``: the fastest
#: installed one for its method, chosen by `evoprune_tf.experiment.backend.choose_backend`).
BACKENDS = ("auto", "tensorflow", "jax")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (run seed, purpose, genome bytes, ...).

    Args:
        *parts: values whose ``repr`` (or bytes) identify the purpose of the seed.

    Returns:
        A non-negative integer below ``2**63``.
    """
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "little") >> 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a head is trained during the search (and, with `reference`, in the final retrain).

    Attributes:
        epochs: maximum epochs (a fixed budget by default: on the shared RPS copy
            validation accuracy saturates within it).
        batch_size: mini-batch size (reference: 32).
        learning_rate: learning rate of the optimizer unless ``optimizer`` sets one
            (reference SGD: 1e-3).
        momentum: SGD momentum when ``optimizer`` is ``"sgd"`` (reference: 0.9).
        nesterov: SGD Nesterov momentum when ``optimizer`` is ``"sgd"`` (reference: True).
        optimizer: any `keras.optimizers` name (``"sgd"``, ``"adam"``, ``"AdamW"``, ...)
            or a dict ``{name = "adam", learning_rate = 1e-3, ...}`` of its options.
            The default ``"sgd"`` is the reference SGD built from the three fields above.
            Element-wise optimizers keep population-batched heads independent.
        loss: a `keras.losses` name (or ``{name = ..., options}``). Names starting with
            ``sparse_`` get integer labels, others one-hot labels; a sparse
            cross-entropy with ``label_smoothing > 0`` becomes the one-hot one.
        dropout: dropout rate after every hidden layer of the default head (0: none).
        l2: L2 factor of the kernel regularizer of every `MaskedDense` of the default
            head (0: none); it is part of the loss, as in Keras.
        label_smoothing: label smoothing of the cross-entropy (0: none).
        class_weight: ``"none"`` or ``"balanced"`` (``n / (n_classes * count)`` per
            class, as scikit-learn's), applied like Keras' ``fit(class_weight=...)``.
        head: ``""`` (the default head: ``MaskedDense`` ReLU layers, linear logits) or a
            head builder, ``builder(spec: HeadSpec) -> keras.Model``, given as a callable
            or a ``"module:function"`` string (see `evoprune_tf.train.keras_engine`).
        early_stopping: ``"none"`` (fixed budget), ``"val_loss"`` (Keras'
            ``EarlyStopping(monitor="val_loss", restore_best_weights=True)`` per head) or
            ``"train_loss"`` (the reference recipe, which in practice never triggers).
        patience: epochs without improvement before a head stops.
        min_delta: smallest decrease that counts as an improvement.
        bucket: active widths are rounded up to a multiple of this so that compiled
            shapes repeat; 1 trains exact shapes; 0 is the engine's default (Keras 64,
            NumPy 1).
        group_size: at most this many heads are trained as one population-batched
            computation; 0 is the engine's default (Keras on JAX on a GPU or TPU
            32; on CPU, and for the NumPy engine, 1).
        engine: ``"keras"`` (the default: Keras models on the backend Keras runs on) or
            ``"numpy"`` (the opt-in hand-written NumPy engine: default head and SGD
            only). ``"jax"`` is a deprecated alias of ``"keras"``.
        blas_threads: BLAS threads of the NumPy engine (0: the library's default).
        backend: the Keras backend the run asks for: ``"auto"`` (the default:
            TensorFlow when it is installed, JAX when only JAX is), ``"tensorflow"`` or
            ``"jax"``. Keras' backend is process-wide and fixed when
            Keras is first imported, so the application resolves this before that
            (``KERAS_BACKEND`` in the environment wins); the trainers themselves run on
            whatever backend the process has.
    """

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    optimizer: Any = "sgd"
    loss: Any = DEFAULT_LOSS
    dropout: float = 0.0
    l2: float = 0.0
    label_smoothing: float = 0.0
    class_weight: ClassWeight = "none"
    head: Any = ""
    early_stopping: EarlyStopping = "none"
    patience: int = 10
    min_delta: float = 0.0
    bucket: int = 0
    group_size: int = 0
    engine: Engine = "keras"
    blas_threads: int = 1
    backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"train.{name}={value!r}; expected a positive integer")
        for name in ("bucket", "group_size", "blas_threads"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"train.{name}={value!r}; expected 0 (default) or a positive integer")
        if not (_is_number(self.learning_rate) and self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"train.learning_rate={self.learning_rate!r}; expected a positive number")
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"train.momentum={self.momentum!r}; expected a value in [0, 1)")
        if not (_is_number(self.dropout) and 0 <= self.dropout < 1):
            raise ValueError(f"train.dropout={self.dropout!r}; expected a rate in [0, 1)")
        if not (_is_number(self.l2) and self.l2 >= 0 and math.isfinite(self.l2)):
            raise ValueError(f"train.l2={self.l2!r}; expected a non-negative number")
        if not (_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"train.label_smoothing={self.label_smoothing!r}; expected a value in [0, 1)")
        if self.class_weight not in ("none", "balanced"):
            raise ValueError(f"train.class_weight={self.class_weight!r}; expected 'none' or 'balanced'")
        if self.backend not in BACKENDS:
            raise ValueError(f"train.backend={self.backend!r}; expected 'auto', 'tensorflow' or 'jax'")
        if self.engine not in ENGINES:
            raise ValueError(f"train.engine={self.engine!r}; expected 'keras' or 'numpy'")
        if self.early_stopping not in ("none", "val_loss", "train_loss"):
            raise ValueError(
                f"train.early_stopping={self.early_stopping!r}; expected 'none', 'val_loss' or 'train_loss'"
            )
        _check_named("optimizer", self.optimizer)
        _check_named("loss", self.loss)
        if not (callable(self.head) or (isinstance(self.head, str) and (self.head == "" or ":" in self.head))):
            raise ValueError(
                f"train.head={self.head!r}; expected '' (the default head), 'module:function' or a callable"
            )
        if self.engine == "numpy" and not self.uses_reference_maths():
            raise ValueError(
                "train.engine='numpy' trains the default head with SGD and cross-entropy only; "
                "expected engine='keras' for optimizer, loss, dropout, l2, label_smoothing, class_weight or head"
            )
        if self.optimizer != "sgd" or self.loss != DEFAULT_LOSS:
            # Fail at the boundary (config loading), not minutes later inside a worker.
            make_optimizer(self)
            make_loss(self, from_logits=True)

    @property
    def engine_name(self) -> str:
        """The engine actually used: ``"keras"`` or ``"numpy"`` (``"jax"`` means Keras)."""
        return "numpy" if self.engine == "numpy" else "keras"

    def uses_reference_maths(self) -> bool:
        """True when the recipe is what the NumPy engine implements (default head, SGD, plain cross-entropy)."""
        return (
            self.optimizer == "sgd"
            and self.loss == DEFAULT_LOSS
            and self.dropout == 0
            and self.l2 == 0
            and self.label_smoothing == 0
            and self.class_weight == "none"
            and self.head == ""
        )

    @classmethod
    def reference(cls, **overrides: Any) -> "TrainConfig":
        """The EvoPruneDeepTL recipe: up to 600 epochs, early stopping on training loss, patience 10.

        Args:
            **overrides: fields to change on top of the recipe.

        Returns:
            The config.
        """
        return cls(**{"epochs": 600, "early_stopping": "train_loss", "patience": 10, **overrides})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith("int")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or type(value).__name__.startswith("float")


def _check_named(field: str, value: Any) -> None:
    """A name or a ``{name = ..., options}`` dict (checked for shape only; Keras resolves it)."""
    if isinstance(value, str) and value:
        return
    if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
        return
    raise ValueError(f"train.{field}={value!r}; expected a Keras {field} name or a dict with a 'name' key")
