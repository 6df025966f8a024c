"""The Keras engine: every genome is scored by training a Keras model of `MaskedDense` layers.

`KerasTrainer` trains pruned heads with a Keras optimizer (`make_optimizer`) and a Keras
loss (`make_loss`) on the backend Keras runs on in this process
(``keras.backend.backend()``).

Compaction (cost follows sparsity): a head is trained as a *compact* Keras model,
built by the head builder at the padded active widths of its genome
(`evoprune_tf.train.plan`): pruned features are gathered away, pruned neurons dropped,
widths rounded up to ``TrainConfig.bucket`` so that compiled shapes repeat. Padded
slots and pruned connections are zeros of the layers' ``kernel_mask``; on the built-in
head without connection masks the padding's weights start at zero and stay there, so
its layers skip the multiply (`MaskedDense.kernel_premasked`).

Two routes, the one that measured fastest on each backend (``benchmarks/fitness.py``):

* **JAX**: a group of same-shape heads is one jitted program: `jax.vmap` over
  ``model.stateless_call`` and ``optimizer.stateless_apply`` with per-head stacked
  variables, ``jax.lax.scan`` over mini-batches and epochs (all epochs in one call
  without early stopping). Element-wise optimizers keep vmapped heads independent
  (even ``global_clipnorm`` is per head under `vmap`). A group of one head runs the
  same program unbatched: vmapped over one head, XLA:CPU transposed every weight
  gradient (`_heads_vmap`).
* **TensorFlow** (`TF_ROUTE`, ``"auto"``): where one fit is long enough for XLA to pay
  (`evoprune_tf.train.tf_stacked.xla_pays`), a group's heads train as one
  population-stacked computation (`evoprune_tf.train.tf_stacked`: kernels ``(P, in,
  out)``, the sum of the heads' losses, one XLA-compiled ``tf.function`` over every
  mini-batch); otherwise, and for heads the stacked route cannot express, one compiled
  model per compact shape is reused through assignment (weights, masks and optimizer
  variables reset per head: a fresh model per genome leaks ~15 MB on TensorFlow), trained
  by one ``tf.function`` whose ``tf.range`` loop runs every mini-batch of every epoch
  with ``optimizer.apply``.

Reproducibility: every head starts from the same full-size initial weights drawn once
from the seed (`evoprune_tf.train.plan.initial_weights` for Glorot-uniform kernels, as
the NumPy engine), restricted to its active units, and sees the same mini-batch order;
the last partial batch is padded to the batch size with zero-weight rows (the loss is
still the mean over its real rows, as Keras computes it), so one shape serves every
batch. A genome therefore gets the same fitness alone, in a batch, in any order and in
another process.

Resampled fitness: ``train(heads, rows)`` gives every head its own training and
validation rows of the train split (`evoprune_tf.train.plan.RowSplit`), so the heads of
all cross-validation folds train in one call. Heads of equal shape and partition size
form one group; the mini-batch order is the one a trainer built on the head's rows
draws, mapped to its rows, and on JAX each head gathers its batch inside the vmapped
step (features shared, rows per head). On TensorFlow the stacked route takes each
head's rows too; head by head, each head trains on its own rows.

Head builders: ``builder(spec: HeadSpec) -> keras.Model`` maps ``(batch,
spec.n_features)`` features to ``(batch, spec.n_classes)`` logits (or softmax
probabilities, when the last layer is a softmax) and holds exactly ``spec.n_layers``
`MaskedDense` layers with kernels ``(spec.widths[l], spec.widths[l + 1])``, in order;
the encodings mask those. It is called with the full spec and with compact specs (the
padded active widths); a builder whose other variables depend on the widths (e.g. a
`BatchNormalization` between layers) is trained at full width with masks instead.
Layers other than `MaskedDense` should seed their random initializers and dropout for
results that repeat across processes. Validation early stopping restores each head's
best weights, as ``keras.callbacks.EarlyStopping(restore_best_weights=True)`` does.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from evoprune_tf.encodings import HeadMasks, HeadSpec
from evoprune_tf.rng import isolated_global_rng
from evoprune_tf.train.config import DEFAULT_LOSS, TrainConfig, derive_seed
from evoprune_tf.train.heads import TrainedHead
from evoprune_tf.train.plan import HeadPlan, RowSplit, compact_weights, initial_weights, input_indices, plan_head, \
    train_by_shape, with_zero_column

__all__ = ["KerasTrainer", "default_head", "resolve_head", "make_optimizer", "make_loss", "check_head",
           "DEFAULT_BUCKET", "JAX_GROUP_SIZE", "MAX_CACHED_SHAPES", "MAX_CACHED_PROGRAMS", "compiled_program_count"]

HeadBuilder = Callable[[HeadSpec], Any]

#: ``TrainConfig.bucket = 0`` means this for the Keras engine.
DEFAULT_BUCKET = 64
#: ``TrainConfig.group_size = 0`` means this on the JAX backend on an accelerator (GPU,
#: TPU), and 1 on CPU, on either backend. On 2 CPU cores a vmapped group trains no faster
#: per head than one head at a time (measured: 40 genomes, 3 epochs, warm: 5.36 s in
#: groups of up to 32, 5.12 s one by one), and every (width, group size) is one more XLA
#: program with its working set: 500 evaluations of distinct genomes grew the peak RSS
#: by 291 MB in groups, 70 MB one by one.
JAX_GROUP_SIZE = 32
#: Compiled compact models kept per process (least recently used evicted).
MAX_CACHED_SHAPES = 64
#: JAX: compiled XLA programs (one per compact shape, group size and call signature) kept
#: per process; beyond it the least recently used shapes are evicted with their programs.
#: Each costs about 9 MB of host memory for a 1280 -> 512 head on CPU, so this caps
#: the compiled code near 1 GB; a feature-selection search at bucket 64 needs at most
#: 20 widths x 6 group sizes = 120 of them.
MAX_CACHED_PROGRAMS = 128

# Compact models with their optimizers and compiled functions, shared by every trainer of
# the process: a fresh evaluator (a report's retrain, a new run) reuses what an earlier one
# compiled. Data and initial values are arguments, never closed over, so sharing is safe.
_SHARED: "OrderedDict[tuple, _Compiled]" = OrderedDict()


# --------------------------------------------------------------------------- recipe pieces


def make_optimizer(config: TrainConfig, *, global_clipnorm: float | None = None) -> Any:
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


def make_loss(config: TrainConfig, *, from_logits: bool) -> tuple[Any, bool]:
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


def default_head(spec: HeadSpec, *, dropout: float = 0.0, l2: float = 0.0, seed: int = 0) -> Any:
    """The default head: ``MaskedDense`` ReLU hidden layers (optional dropout after each) and linear logits.

    Args:
        spec: widths (hidden layers have a bias only with ``spec.use_bias``).
        dropout: dropout rate after every hidden layer (0: no Dropout layer).
        l2: L2 factor of every kernel regularizer (0: none).
        seed: seeds the Dropout layers (the kernels are assigned by the trainer).

    Returns:
        An uncompiled functional model ``features -> logits``.
    """
    import keras

    from evoprune_tf.nn.layers import MaskedDense  # nn imports Keras: not at module import

    reg = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input((spec.n_features,), name="features")
    x = inputs
    for i, units in enumerate(spec.hidden):
        x = MaskedDense(units, activation="relu", use_bias=spec.use_bias, kernel_regularizer=reg,
                        name=f"masked_dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=int(derive_seed(seed, "dropout", i) % 2**31), name=f"dropout_{i}")(x)
    outputs = MaskedDense(spec.n_classes, activation=None, use_bias=True, kernel_regularizer=reg,
                          name="masked_output")(x)
    return keras.Model(inputs, outputs, name="head")


def resolve_head(head: Any, config: TrainConfig | None = None, *, seed: int = 0) -> HeadBuilder:
    """The head builder of ``TrainConfig.head``.

    Args:
        head: ``""`` (the default head with the config's dropout and l2), a callable
            ``builder(spec) -> keras.Model`` or a ``"module:function"`` string naming one.
        config: the recipe (for the default head's dropout and l2).
        seed: seeds the default head's Dropout layers.

    Returns:
        The builder.

    Raises:
        ValueError: the string does not name an importable callable.
    """
    if callable(head):
        return head
    if head == "":
        cfg = config or TrainConfig()
        return functools.partial(default_head, dropout=cfg.dropout, l2=cfg.l2, seed=seed)
    module_name, _, attr = str(head).partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"train.head={head!r} cannot be imported ({type(error).__name__}: {error}); "
                         f"expected 'module:function' naming a head builder") from None
    if not callable(builder):
        raise ValueError(f"train.head={head!r} is not callable; expected a function builder(spec) -> keras.Model")
    return builder


def check_head(model: Any, spec: HeadSpec, where: str = "head builder") -> list[Any]:
    """Check that a built head fits the spec; return its `MaskedDense` layers.

    Args:
        model: what the builder returned.
        spec: the widths it was built for.
        where: names the builder in errors.

    Returns:
        The model's `MaskedDense` layers in order.

    Raises:
        ValueError: not a Keras model, no (or the wrong number of) `MaskedDense` layers,
            wrong kernel shapes, or an input width that does not match the features.
    """
    import keras

    from evoprune_tf.nn.layers import masked_dense_layers  # nn imports Keras: not at module import

    if not isinstance(model, keras.Model):
        raise ValueError(f"{where} returned {type(model).__name__}; expected a keras.Model")
    layers = masked_dense_layers(model)
    if not layers:
        raise ValueError(f"{where} returned model {model.name!r} with no MaskedDense layer; expected "
                         f"{spec.n_layers} MaskedDense layers for the encodings to mask")
    inputs = getattr(model, "inputs", None) or []
    width = inputs[0].shape[-1] if len(inputs) == 1 else None
    if width != spec.n_features:
        raise ValueError(f"{where} returned model {model.name!r} with input width {width}; "
                         f"expected one input of width {spec.n_features} (the features)")
    if len(layers) != spec.n_layers:
        raise ValueError(f"{where} returned {len(layers)} MaskedDense layers; expected {spec.n_layers} "
                         f"for head widths {spec.widths}")
    for l, layer in enumerate(layers):
        want = (spec.widths[l], spec.widths[l + 1])
        if tuple(layer.kernel_shape) != want:
            raise ValueError(f"{where}: MaskedDense {layer.name!r} has kernel {tuple(layer.kernel_shape)}; "
                             f"expected {want} for head widths {spec.widths}")
    out = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if out != spec.n_classes:
        raise ValueError(f"{where} returned outputs of width {out}; expected {spec.n_classes} classes")
    return layers


# --------------------------------------------------------------------------- the trainer


class _Compiled:
    """A compact Keras model of one padded shape with its optimizer and compiled functions."""

    def __init__(self, model: Any, optimizer: Any, layers: list[Any]) -> None:
        self.model = model
        self.optimizer = optimizer
        self.layers = layers
        self.functions: dict[Any, Any] = {}
        self.optimizer_init: list[np.ndarray] = []
        # JAX: the call signatures compiled by this entry's jitted functions (what
        # `MAX_CACHED_PROGRAMS` counts; they are freed with the entry).
        self.programs: set[tuple] = set()


def compiled_program_count() -> int:
    """The compiled JAX programs that the process-wide compact-model cache holds.

    Returns:
        Distinct (shape, group size, call signature) programs of the cached entries (0
        off JAX, where each trainer keeps its own models).
    """
    return sum(len(entry.programs) for entry in list(_SHARED.values()))


class KerasTrainer:
    """Trains pruned heads as Keras models (`MaskedDense` layers, Keras optimizer and loss).

    Args:
        spec: the full head.
        data: cached features; ``train`` is trained on, ``val`` drives ``val_loss`` early stopping.
        config: training recipe.
        seed: drives the shared initial weights, the mini-batch order and dropout.

    Raises:
        ValueError: features of the wrong width, an unknown optimizer or loss, or a head
            builder whose model does not fit the spec.
    """

    def __init__(self, spec: HeadSpec, data: Any, config: TrainConfig, *, seed: int) -> None:
        import keras

        if data.n_features != spec.n_features:
            raise ValueError(f"features have width {data.n_features}; the head expects {spec.n_features}")
        self.spec = spec
        self.data = data
        self.config = config
        self.seed = int(seed)
        self.backend = keras.backend.backend()
        self.bucket = config.bucket or DEFAULT_BUCKET
        self.group_size = config.group_size or _default_group_size(self.backend)
        self.builder = resolve_head(config.head, config, seed=self.seed)
        self._x_train = with_zero_column(data.x_train)
        self._x_val = with_zero_column(data.x_val)
        self._y_train = np.asarray(data.y_train, dtype=np.int64)
        self._y_val = np.asarray(data.y_val, dtype=np.int64)
        self._sample_weight = self._class_weights()[self._y_train].astype(np.float32)

        full = self.builder(spec)
        layers = check_head(full, spec)
        self._from_logits = not _outputs_probabilities(full)
        make_optimizer(config)  # fail now on a bad name, not inside the first group
        self._loss, self._sparse = make_loss(config, from_logits=self._from_logits)
        self._init = self._initial_weights(layers)
        self._other_order = [np.asarray(keras.ops.convert_to_numpy(v)) for v in full.variables]
        self._full_layout = _layout(full, layers)
        self.compact = self._widths_only_in_masked_dense(full)
        self.numpy_forward = _numpy_forward_ok(full, layers)
        head_key = ("default", config.dropout, config.l2) if config.head == "" else ("user", config.head)
        # Shared across trainers on JAX only (pure, stateless functions). On TensorFlow a
        # reused model shared between trainers changed later results in the last bits
        # (measured: an evolution in a long-lived process diverged from a fresh one), so
        # each trainer compiles its own (tracing is cheap there).
        self._shared_key = (self.backend, head_key, repr(config.optimizer), config.learning_rate, config.momentum,
                            config.nesterov, repr(config.loss), config.label_smoothing, self._from_logits)
        self._cache: "OrderedDict[tuple, _Compiled]" = _SHARED if self.backend == "jax" else OrderedDict()
        self._device: dict[str, Any] = {}

    # ----------------------------------------------------------------- set-up

    def _class_weights(self, y: np.ndarray | None = None) -> np.ndarray:
        """Per-class weights of training labels ``y`` (default: the train split's)."""
        n_classes = self.spec.n_classes
        if self.config.class_weight == "none":
            return np.ones(n_classes, np.float64)
        y = np.asarray(self.data.y_train if y is None else y, dtype=np.int64)
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        # scikit-learn's "balanced": n / (n_classes * count); absent classes get weight 0.
        return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)

    def _initial_weights(self, layers: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Full-size kernels and biases: NumPy Glorot from the seed (as the NumPy engine) or the layer's own initializer, seeded."""
        glorot = initial_weights(self.spec, self.seed)
        out = []
        for l, layer in enumerate(layers):
            shape = tuple(layer.kernel_shape)
            if type(layer.kernel_initializer).__name__ == "GlorotUniform":
                kernel = glorot[l][0]
            else:
                kernel = _seeded(layer.kernel_initializer, shape, derive_seed(self.seed, "init", l, "kernel"))
            bias = None
            if layer.bias is not None:
                if type(layer.bias_initializer).__name__ == "Zeros":
                    bias = np.zeros(shape[1], np.float32)
                else:
                    bias = _seeded(layer.bias_initializer, (shape[1],), derive_seed(self.seed, "init", l, "bias"))
            out.append((np.asarray(kernel, np.float32), bias))
        return out

    def _widths_only_in_masked_dense(self, full: Any) -> bool:
        """Whether a compact build keeps every non-MaskedDense variable's shape (compaction is then safe)."""
        probe_spec = HeadSpec(max(1, self.spec.n_features // 2 + 1), self.spec.n_classes,
                              tuple(max(1, h // 2 + 1) for h in self.spec.hidden), self.spec.use_bias)
        probe = self.builder(probe_spec)
        check_head(probe, probe_spec, "head builder (with compact widths)")
        mine, theirs = _layout(full, None), _layout(probe, None)
        return [s for kind, s in mine if kind == "other"] == [s for kind, s in theirs if kind == "other"]

    def plan(self, masks: HeadMasks) -> HeadPlan:
        """The compact layout of a head at this trainer's bucket (full width when the head cannot be compacted).

        Args:
            masks: decoded masks.

        Returns:
            The plan; heads with equal ``plan.key`` train as one group.
        """
        if self.compact:
            return plan_head(masks, self.bucket)
        indices = [np.arange(w, dtype=np.int64) for w in self.spec.widths]
        conn = {l: m for l, m in enumerate(masks.kernel_masks())}
        return HeadPlan(indices, conn, tuple(self.spec.widths) + tuple(conn))

    def _compiled(self, plan: HeadPlan) -> _Compiled:
        key = (self._shared_key, plan.key)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            self._evict()
            return entry
        widths = plan.widths
        spec = HeadSpec(widths[0], widths[-1], tuple(widths[1:-1]), self.spec.use_bias)
        # Building a model draws Keras' default seeds from Python's global `random`, which
        # the search's operators own: build in isolation, or a resumed run diverges.
        with isolated_global_rng():
            model = self.builder(spec)
            layers = check_head(model, spec, "head builder (with compact widths)")
            if self.config.head == "" and not plan.conn:
                # The built-in head's compact masks only mark padding, whose weights
                # start at zero and, with zero inputs or zero downstream weights, get
                # zero gradients and zero updates: the mask multiply changes nothing.
                for layer in layers:
                    layer.kernel_premasked = True
            optimizer = make_optimizer(self.config)
            optimizer.build(model.trainable_variables)
        entry = _Compiled(model, optimizer, layers)
        import keras

        entry.optimizer_init = [np.asarray(keras.ops.convert_to_numpy(v)) for v in optimizer.variables]
        self._cache[key] = entry
        self._evict()
        return entry

    def _evict(self) -> None:
        """Drop least recently used entries beyond `MAX_CACHED_SHAPES` or `MAX_CACHED_PROGRAMS` (never the newest)."""
        while len(self._cache) > 1 and (len(self._cache) > MAX_CACHED_SHAPES or
                                        sum(len(e.programs) for e in self._cache.values()) > MAX_CACHED_PROGRAMS):
            # The evicted entry's jitted functions die with it and so do their programs:
            # nothing else refers to them (routes pass data as arguments, never close over it).
            self._cache.popitem(last=False)

    def _values(self, entry: _Compiled, plan: HeadPlan) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Initial trainable and non-trainable values of one head in the compact model's variable order."""
        kernels, biases = compact_weights(self._init, plan)
        masks = plan.kernel_masks()
        role = {}
        for l, layer in enumerate(entry.layers):
            role[id(layer.kernel)] = kernels[l]
            role[id(layer.kernel_mask)] = masks[l]
            if layer.bias is not None:
                role[id(layer.bias)] = biases[l]
        model = entry.model
        others = iter([v for kind, v in zip((k for k, _ in self._full_layout), self._other_order) if kind == "other"])
        by_var: dict[int, np.ndarray] = {}
        for v in model.variables:
            by_var[id(v)] = role[id(v)] if id(v) in role else next(others)
        return ([by_var[id(v)] for v in model.trainable_variables],
                [by_var[id(v)] for v in model.non_trainable_variables])

    # ----------------------------------------------------------------- training

    def train(self, heads: Sequence[HeadMasks], rows: Sequence[RowSplit] | None = None) -> list[TrainedHead]:
        """Train every head; returns them in input order.

        Heads with the same compact shape train as one population-batched group (JAX)
        of at most ``group_size`` heads, split into power-of-two parts so that compiled
        programs repeat; a head's result does not depend on the grouping.

        Args:
            heads: decoded masks, one per genome.
            rows: optional, one `RowSplit` per head: the head trains on its own rows of
                this trainer's train split (class weights from those rows) and is
                validated on its own rows, so every partition of a resampled fitness
                trains in this one call (on JAX: heads of equal shape and partition
                size as one vmapped program). A head equals the one a trainer built on
                exactly those rows returns. None: the train and validation splits.

        Returns:
            One `TrainedHead` per entry of ``heads``.
        """
        if rows is not None and len(rows) != len(heads):
            raise ValueError(f"got {len(rows)} row splits for {len(heads)} heads; expected one per head")
        return train_by_shape([self.plan(m) for m in heads], heads, self._train_group,
                              lambda members: _power_of_two_chunks(members, self.group_size), rows=rows)

    def _batches(self, epochs: int, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """Row indices ``(epochs, n_batches, batch)`` in the shared order; padded rows repeat row 0."""
        n, batch = len(self._y_train) if n is None else n, self.config.batch_size
        n_batches = -(-n // batch)
        rows = np.zeros((epochs, n_batches * batch), np.int32)
        for e in range(epochs):
            rows[e, :n] = rng.permutation(n)
        return rows.reshape(epochs, n_batches, batch)

    def _real(self, n: int | None = None) -> np.ndarray:
        n, batch = len(self._y_train) if n is None else n, self.config.batch_size
        n_batches = -(-n // batch)
        real = np.zeros(n_batches * batch, np.float32)
        real[:n] = 1
        return real.reshape(n_batches, batch)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if self._sparse:
            return y.astype(np.int32)
        return np.eye(self.spec.n_classes, dtype=np.float32)[y]

    def _train_group(self, plans: Sequence[HeadPlan], heads: Sequence[HeadMasks],
                     rows: Sequence[RowSplit] | None = None) -> list[TrainedHead]:
        cfg = self.config
        entry = self._compiled(plans[0])
        values = [self._values(entry, p) for p in plans]
        in_idx = np.stack([input_indices(p, self.spec.n_features) for p in plans]).astype(np.int32)
        full_input = in_idx.shape[1] == self.spec.n_features and bool((in_idx == np.arange(self.spec.n_features)).all())
        own = None if rows is None else _OwnRows(self, rows)
        route = _JaxRoute(self, entry, values, in_idx, full_input, own) if self.backend == "jax" else \
            _tf_route(self, entry, values, in_idx, full_input, own)
        rng = np.random.default_rng(derive_seed(self.seed, "batches"))
        n_heads = len(plans)
        epochs_run = np.zeros(n_heads, np.int64)
        # A group's heads share one partition size n: the batch order (indices in [0, n)) is
        # what a trainer on n rows draws; `_OwnRows` maps it to each head's rows.
        n = len(self._y_train) if own is None else own.n
        real = self._real(n)
        if cfg.early_stopping == "none":
            route.fit(self._batches(cfg.epochs, rng, n), np.ones(n_heads, bool))
            epochs_run[:] = cfg.epochs
        else:
            restore = cfg.early_stopping == "val_loss"
            active = np.ones(n_heads, bool)
            best = np.full(n_heads, np.inf)
            wait = np.zeros(n_heads, np.int64)
            best_state = None
            for epoch in range(cfg.epochs):
                epochs_run += active
                losses = route.fit(self._batches(1, rng, n), active)  # (1, n_batches, P)
                if restore:
                    monitored = route.val_loss()
                else:  # Keras' logged "loss": the epoch's batch losses weighted by their sizes
                    monitored = (np.asarray(losses, np.float64)[0] * real.sum(axis=1)[:, None]).sum(axis=0) / n
                # keras.callbacks.EarlyStopping, per head
                if restore and best_state is None:
                    best_state = route.snapshot()
                wait += active
                improved = active & (monitored < best - cfg.min_delta)
                best = np.where(improved, monitored, best)
                if restore and improved.any():
                    best_state = route.merge(best_state, route.snapshot(), improved)
                wait[improved] = 0
                stopping = active & ~improved & (wait >= cfg.patience) & (epoch > 0)
                active &= ~stopping
                if not active.any():
                    break
            if restore and best_state is not None:
                route.restore(best_state)
        return route.heads(plans, heads, epochs_run)

    def _keras_logits(self, entry: _Compiled, trainable: list[np.ndarray], non_trainable: list[np.ndarray]):
        """A forward function of one trained head with its compact Keras model (user heads)."""
        import keras

        from_logits = self._from_logits

        def logits(a: np.ndarray) -> np.ndarray:
            out, _ = entry.model.stateless_call(
                [keras.ops.convert_to_tensor(v) for v in trainable],
                [keras.ops.convert_to_tensor(v) for v in non_trainable],
                keras.ops.convert_to_tensor(np.asarray(a, np.float32)), training=False)
            out = np.asarray(keras.ops.convert_to_numpy(out), np.float32)
            return out if from_logits else np.log(np.maximum(out, np.finfo(np.float32).tiny))

        return logits

    def _make_head(self, entry: _Compiled, plan: HeadPlan, masks: HeadMasks, trainable: list[np.ndarray],
                   non_trainable: list[np.ndarray], epochs: int) -> TrainedHead:
        by_id = dict(zip((id(v) for v in entry.model.trainable_variables), trainable))
        by_id.update(zip((id(v) for v in entry.model.non_trainable_variables), non_trainable))
        kernels, biases = [], []
        for layer in entry.layers:
            kernels.append(np.ascontiguousarray(by_id[id(layer.kernel)] * by_id[id(layer.kernel_mask)], np.float32))
            biases.append(None if layer.bias is None else np.ascontiguousarray(by_id[id(layer.bias)], np.float32))
        head = TrainedHead(spec=self.spec, masks=masks, indices=[i.copy() for i in plan.indices], kernels=kernels,
                           biases=biases, epochs_run=int(epochs))
        if not self.numpy_forward:
            head.keras_logits = self._keras_logits(entry, trainable, non_trainable)
            head.keras_model = functools.partial(self._trained_model, plan, trainable, non_trainable)
        return head

    def _trained_model(self, plan: HeadPlan, trainable: list[np.ndarray], non_trainable: list[np.ndarray]) -> Any:
        """A fresh Keras model of one trained head (user heads): compact inputs -> probabilities."""
        import keras

        widths = plan.widths
        spec = HeadSpec(widths[0], widths[-1], tuple(widths[1:-1]), self.spec.use_bias)
        with isolated_global_rng():  # as `_compiled` builds: the same variables in the same order
            model = self.builder(spec)
        for variable, value in zip(model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            variable.assign(value)
        if not self._from_logits:
            return model
        return keras.Model(model.inputs, keras.layers.Softmax(name="probabilities")(model.outputs[0]),
                           name=f"{model.name}_probabilities")


# --------------------------------------------------------------------------- routes


class _JaxRoute:
    """A group of heads as one vmapped, jitted program on the JAX backend."""

    def __init__(self, trainer: KerasTrainer, entry: _Compiled, values, in_idx: np.ndarray, full_input: bool,
                 own: "_OwnRows | None" = None) -> None:
        self.t, self.entry, self.full_input, self.own = trainer, entry, full_input, own
        p = len(values)
        tv = [_on_device(np.stack([v[0][i] for v in values])) for i in range(len(values[0][0]))]
        ntv = [_on_device(np.stack([v[1][i] for v in values])) for i in range(len(values[0][1]))]
        ov = [_on_device(np.broadcast_to(o, (p, *o.shape))) for o in entry.optimizer_init]
        self.state = (tv, ntv, ov)
        self.in_idx = _on_device(in_idx)
        self.data = trainer._device.get("jax")
        if self.data is None:
            self.data = trainer._device["jax"] = {
                "x": _on_device(trainer._x_train), "t": _on_device(trainer._targets(trainer._y_train)),
                "sw": _on_device(trainer._sample_weight), "real": _on_device(trainer._real()),
                "x_val": _on_device(trainer._x_val), "t_val": _on_device(trainer._targets(trainer._y_val)),
            }
        if own is not None:
            self.own_sw, self.own_val = _on_device(own.sample_weight), _on_device(own.val)
            self.own_real = _on_device(trainer._real(own.n))
        self.key = key = ("jax", full_input, own is not None)
        if key not in entry.functions:
            entry.functions[key] = _jax_functions(entry, trainer._loss, full_input, own_rows=own is not None)
        self.fns = entry.functions[key]

    def fit(self, rows: np.ndarray, active: np.ndarray) -> np.ndarray:
        d = self.data
        on = _on_device(np.asarray(active, np.float32))
        if self.own is None:
            self.state, losses = self._run("train", self.state, d["x"], d["t"], d["sw"], d["real"], self.in_idx,
                                                   _on_device(rows), on)
        else:  # per-head rows (epochs, n_batches, P, batch) gathered inside the vmapped step
            self.state, losses = self._run("train", self.state, d["x"], d["t"], self.own_sw, self.own_real,
                                                   self.in_idx, _on_device(self.own.heads_rows(rows)), on)
        return losses

    def val_loss(self) -> np.ndarray:
        tv, ntv, _ = self.state
        if self.own is None:
            return np.asarray(self._run("val", tv, ntv, self.data["x_val"], self.data["t_val"], self.in_idx),
                              np.float64)
        return np.asarray(self._run("val", tv, ntv, self.data["x"], self.data["t"], self.own_val, self.in_idx),
                          np.float64)

    def snapshot(self):
        return self.state  # JAX arrays are immutable

    def merge(self, old, new, mask: np.ndarray):
        return self._run("merge", old, new, _on_device(np.asarray(mask, bool)))

    def _run(self, name: str, *args):
        """Call one of the entry's jitted functions, counting the programs it compiles."""
        import jax

        signature = (self.key, name, tuple((a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(args)))
        out = self.fns[name](*args)
        if signature not in self.entry.programs:
            self.entry.programs.add(signature)
            self.t._evict()  # this entry is the newest: older ones go if the programs are over the cap
            _release_freed_heap()  # compiling leaves its scratch memory in the heap
        return out

    def restore(self, state) -> None:
        self.state = state

    def heads(self, plans, masks, epochs_run) -> list[TrainedHead]:
        tv, ntv, _ = self.state
        tv = [np.asarray(v) for v in tv]
        ntv = [np.asarray(v) for v in ntv]
        return [self.t._make_head(self.entry, plan, m, [v[p] for v in tv], [v[p] for v in ntv], epochs_run[p])
                for p, (plan, m) in enumerate(zip(plans, masks))]


def _jax_functions(entry: _Compiled, loss_obj: Any, full_input: bool, own_rows: bool = False) -> dict[str, Any]:
    """The jitted group programs; with ``own_rows`` every head gathers its own mini-batch and validation rows."""
    import jax
    import jax.numpy as jnp

    model, optimizer = entry.model, entry.optimizer

    def inputs(xb, in_idx):
        return xb[:, :-1] if full_input else jnp.take(xb, in_idx, axis=1)

    def loss_fn(tv, ntv, xb, tb, wb, n_real):
        pred, ntv, losses = model.stateless_call(tv, ntv, xb, training=True, return_losses=True)
        loss = jnp.sum(loss_obj(tb, pred) * wb) / n_real
        for extra in losses:
            loss = loss + extra
        return loss, ntv

    def step_on(tv, ntv, ov, xb, tb, wb, n_real, active):  # xb: the compact inputs of the batch
        (loss, new_ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, xb, tb, wb, n_real)
        new_tv, new_ov = optimizer.stateless_apply(ov, grads, tv)
        keep = active > 0  # a stopped head keeps its state exactly (no optimizer drift)
        pick = lambda new, old: [jnp.where(keep, a, b) for a, b in zip(new, old)]  # noqa: E731
        return pick(new_tv, tv), pick(new_ntv, ntv), pick(new_ov, ov), loss

    def step(tv, ntv, ov, xb_full, tb, wb, n_real, in_idx, active):
        return step_on(tv, ntv, ov, inputs(xb_full, in_idx), tb, wb, n_real, active)

    # Full-width inputs go in head-major, broadcast to (P, batch, in): every product is then
    # a plain batched GEMM. A shared 2-D input would make XLA transpose the stacked kernels
    # (P, in, out) to (in, P, out) and back in every step (neuron pruning: 1.6x slower).
    vstep = _heads_vmap(step_on, (0, 0, 0, 0, None, None, None, 0)) if full_input else \
        _heads_vmap(step, (0, 0, 0, None, None, None, None, 0, 0))

    def train(state, x, t, sw, real, in_idx, rows, active):
        def one_batch(carry, xs):
            tv, ntv, ov = carry
            r, rw = xs
            if full_input:
                xb = x[r, :-1]
                xb = jnp.broadcast_to(xb[None], (active.shape[0], *xb.shape))
                tv, ntv, ov, loss = vstep(tv, ntv, ov, xb, t[r], sw[r] * rw, jnp.sum(rw), active)
            else:
                tv, ntv, ov, loss = vstep(tv, ntv, ov, x[r], t[r], sw[r] * rw, jnp.sum(rw), in_idx, active)
            return (tv, ntv, ov), loss

        def one_epoch(carry, epoch_rows):
            return jax.lax.scan(one_batch, carry, (epoch_rows, real))

        return jax.lax.scan(one_epoch, state, rows)

    def val_one(tv, ntv, x_val, t_val, in_idx):
        pred, _, losses = model.stateless_call(tv, ntv, inputs(x_val, in_idx), training=False, return_losses=True)
        loss = jnp.mean(loss_obj(t_val, pred))
        for extra in losses:
            loss = loss + extra
        return loss

    val = _heads_vmap(val_one, (0, 0, None, None, 0))

    def merge(old, new, mask):  # early stopping's best state: head p from `new` where mask[p]
        return jax.tree_util.tree_map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), b, a),
                                      old, new)

    # Jitted here, per entry, rather than run as eager `jnp` ops: eager ops compile
    # programs that JAX's global caches keep for the process, whereas these die with the
    # entry when the LRU evicts it.
    if not own_rows:
        return {"train": jax.jit(train), "val": jax.jit(val), "merge": jax.jit(merge)}

    # Per-head rows: x and targets shared (in_axes None), a head's rows and sample
    # weights its own (in_axes 0); the gathered batch is what the shared path gathers,
    # taken in one gather (rows x active columns), not a full-width copy per head first.
    def own_inputs(x, r, in_idx):
        return x[r, :-1] if full_input else x[r[:, None], in_idx[None, :]]

    def own_step(tv, ntv, ov, x, t, sw, r, rw, n_real, in_idx, active):
        return step_on(tv, ntv, ov, own_inputs(x, r, in_idx), t[r], sw[r] * rw, n_real, active)

    vstep_own = _heads_vmap(own_step, (0, 0, 0, None, None, 0, 0, None, None, 0, 0))

    def train_own(state, x, t, sw, real, in_idx, rows, active):
        def one_batch(carry, xs):
            r, rw = xs
            tv, ntv, ov, loss = vstep_own(*carry, x, t, sw, r, rw, jnp.sum(rw), in_idx, active)
            return (tv, ntv, ov), loss

        def one_epoch(carry, epoch_rows):
            return jax.lax.scan(one_batch, carry, (epoch_rows, real))

        return jax.lax.scan(one_epoch, state, rows)

    def val_own(tv, ntv, x, t, rows, in_idx):
        return val_one(tv, ntv, x[rows], t[rows], in_idx)

    return {"train": jax.jit(train_own), "val": jax.jit(_heads_vmap(val_own, (0, 0, None, None, 0, 0))),
            "merge": jax.jit(merge)}


def _default_group_size(backend: str) -> int:
    """``TrainConfig.group_size = 0``: `JAX_GROUP_SIZE` on a JAX accelerator, else 1."""
    if backend != "jax":
        return 1
    import jax

    return 1 if jax.default_backend() == "cpu" else JAX_GROUP_SIZE


def _heads_vmap(fn: Any, in_axes: tuple[int | None, ...]) -> Any:
    """``jax.vmap(fn, in_axes)`` over a group's heads, except that a lone head runs unbatched.

    A vmapped program over one head (leading dimension 1) compiles worse on XLA:CPU: the
    weight gradients come out as ``(out, in)`` and every optimizer update transposes them
    (measured: 0.74 vs 0.42 ms per step of a 640 -> 512 layer; at two or more heads the
    vmapped program is as fast per head as the plain one). Whether the group is one head
    is known at trace time from the shapes, so this costs nothing at run time.
    """
    import jax

    batched = jax.vmap(fn, in_axes=in_axes)
    axis0 = [i for i, a in enumerate(in_axes) if a == 0]

    def call(*args):
        if jax.tree_util.tree_leaves(args[axis0[0]])[0].shape[0] != 1:
            return batched(*args)
        one = [jax.tree_util.tree_map(lambda a: a[0], x) if i in axis0 else x for i, x in enumerate(args)]
        return jax.tree_util.tree_map(lambda a: a[None], fn(*one))

    return call


def _release_freed_heap() -> None:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``; elsewhere nothing).

    XLA's compiler allocates and frees a lot per program and glibc keeps the freed pages
    (measured: 500 JAX evaluations of distinct genomes peaked about 65 MB lower with
    this). It runs after a new program only (milliseconds, against a compilation's second).
    """
    trim = _MALLOC_TRIM.get("fn", False)
    if trim is False:
        try:
            import ctypes

            trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            trim = None
        _MALLOC_TRIM["fn"] = trim
    if trim is not None:
        trim(0)


_MALLOC_TRIM: dict[str, Any] = {}


def _on_device(a: np.ndarray) -> Any:
    """A NumPy array as a JAX array, by a plain transfer.

    Not ``jnp.asarray``: that stages the value through a small compiled program per
    shape and dtype, which JAX's global caches keep for the life of the process (5 per
    group shape; measured: a third of the JAX engine's peak-RSS growth over 500
    evaluations of distinct genomes).
    """
    import jax

    return jax.device_put(np.ascontiguousarray(a))


#: The TensorFlow route: ``"stacked"`` (`evoprune_tf.train.tf_stacked`: a group's heads as
#: one stacked computation, where the head and optimizer allow it), ``"per_head"``
#: (`_StatefulRoute` always) or ``"auto"``: stacked with XLA where XLA pays
#: (`tf_stacked.xla_pays`: long fits, 1.5-2x faster per evaluation), per head elsewhere
#: (short fits and small heads, where the stacked route's extra tracing per shape made
#: the test suite's searches about 2x slower). A trainer's ``tf_route`` attribute, when
#: set, overrides it.
TF_ROUTE = "auto"


def _tf_route(trainer: KerasTrainer, entry: _Compiled, values, in_idx: np.ndarray, full_input: bool,
              own: "_OwnRows | None"):
    """The stacked route where the head, the optimizer and the route choice allow it; else `_StatefulRoute`."""
    from evoprune_tf.train import tf_stacked

    choice = getattr(trainer, "tf_route", TF_ROUTE)
    if choice not in ("auto", "stacked", "per_head"):
        raise ValueError(f"tf_route={choice!r}; expected 'auto', 'stacked' or 'per_head'")
    if choice == "auto":
        jit = getattr(trainer, "tf_jit_compile", tf_stacked.JIT_COMPILE)
        choice = "stacked" if (tf_stacked.xla_pays(trainer, entry, own) if jit == "auto" else jit) else "per_head"
    if choice == "stacked":
        ok = entry.functions.get("tf_stacked_ok")
        if ok is None:  # once per compact shape: can this head be stacked, and does its forward match?
            ok = tf_stacked.unsupported_reason(entry.model, entry.layers, entry.optimizer) is None \
                and tf_stacked.forward_matches(entry, values[0])
            entry.functions["tf_stacked_ok"] = ok
        if ok:
            return tf_stacked.StackedRoute(trainer, entry, values, in_idx, full_input, own)
    return _StatefulRoute(trainer, entry, values, in_idx, full_input, own)


class _StatefulRoute:
    """Heads one after another through a reused compiled model (TensorFlow, torch)."""

    def __init__(self, trainer: KerasTrainer, entry: _Compiled, values, in_idx: np.ndarray, full_input: bool,
                 own: "_OwnRows | None" = None) -> None:
        self.t, self.entry, self.values, self.in_idx, self.full_input = trainer, entry, values, in_idx, full_input
        self.own = own
        self.results: list[tuple[list[np.ndarray], list[np.ndarray]]] = []

    # The driver calls fit/val/snapshot for the whole group: run each head separately and
    # merge the per-head answers, so the early-stopping logic stays shared.
    def fit(self, rows: np.ndarray, active: np.ndarray) -> np.ndarray:
        losses = []
        self._ensure_states()
        for p in range(len(self.values)):
            if not active[p]:
                losses.append(np.zeros(rows.shape[:2], np.float32))
                continue
            self._load(p)
            losses.append(self._fit_one(rows, p))
            self.states[p] = self._read()
        return np.stack(losses, axis=-1)

    def _ensure_states(self) -> None:
        if not hasattr(self, "states"):
            self.states = [(list(tv), list(ntv), [o.copy() for o in self.entry.optimizer_init])
                           for tv, ntv in self.values]

    def _load(self, p: int) -> None:
        model, opt = self.entry.model, self.entry.optimizer
        tv, ntv, ov = self.states[p]
        for var, value in zip(model.trainable_variables, tv):
            var.assign(value)
        for var, value in zip(model.non_trainable_variables, ntv):
            var.assign(value)
        for var, value in zip(opt.variables, ov):
            var.assign(value)

    def _read(self):
        import keras

        model, opt = self.entry.model, self.entry.optimizer
        conv = lambda vs: [np.array(keras.ops.convert_to_numpy(v)) for v in vs]  # noqa: E731
        return conv(model.trainable_variables), conv(model.non_trainable_variables), conv(opt.variables)

    def _fit_one(self, rows: np.ndarray, p: int) -> np.ndarray:
        fn = self.entry.functions.get(("tf", self.full_input))
        if fn is None:
            fn = self.entry.functions[("tf", self.full_input)] = _stateful_function(self.entry, self.t._loss,
                                                                                  self.full_input)
        data = self.t._device.get("tf")
        if data is None:
            import keras

            t = self.t
            data = t._device["tf"] = {k: keras.ops.convert_to_tensor(v) for k, v in {
                "x": t._x_train, "t": t._targets(t._y_train), "sw": t._sample_weight, "real": t._real()}.items()}
        import keras

        e, nb, b = rows.shape
        sw, real = data["sw"], np.asarray(data["real"])
        if self.own is not None:  # this head's rows of the train split, its partition's class weights
            rows = self.own.train[p][rows]
            sw, real = keras.ops.convert_to_tensor(self.own.sample_weight[p]), self.t._real(self.own.n)
        flat = rows.reshape(e * nb, b)
        real = np.tile(real, (e, 1))
        out = fn(data["x"], data["t"], sw, keras.ops.convert_to_tensor(flat), keras.ops.convert_to_tensor(real),
                 keras.ops.convert_to_tensor(self.in_idx[p]))
        return np.asarray(keras.ops.convert_to_numpy(out)).reshape(e, nb)

    def val_loss(self) -> np.ndarray:
        import keras

        out = []
        t = self.t
        target = t._targets(t._y_val)
        for p in range(len(self.values)):
            tv, ntv, _ = self.states[p]
            x = t._x_val[:, self.in_idx[p]]
            if self.own is not None:  # this head's validation rows of the train split
                x = t._x_train[self.own.val[p]][:, self.in_idx[p]]
                target = t._targets(t._y_train[self.own.val[p]])
            pred, _, losses = self.entry.model.stateless_call(
                [keras.ops.convert_to_tensor(v) for v in tv], [keras.ops.convert_to_tensor(v) for v in ntv],
                keras.ops.convert_to_tensor(x), training=False, return_losses=True)
            value = float(np.mean(keras.ops.convert_to_numpy(t._loss(target, pred))))
            out.append(value + sum(float(keras.ops.convert_to_numpy(l)) for l in losses))
        return np.asarray(out)

    def snapshot(self):
        return [(list(tv), list(ntv), list(ov)) for tv, ntv, ov in self.states]

    def merge(self, old, new, mask: np.ndarray):
        return [n if m else o for o, n, m in zip(old, new, mask)]

    def restore(self, state) -> None:
        self.states = list(state)

    def heads(self, plans, masks, epochs_run) -> list[TrainedHead]:
        self._ensure_states()
        return [self.t._make_head(self.entry, plan, m, self.states[p][0], self.states[p][1], epochs_run[p])
                for p, (plan, m) in enumerate(zip(plans, masks))]


def _stateful_function(entry: _Compiled, loss_obj: Any, full_input: bool):
    """One compiled call that runs every given mini-batch (TensorFlow: a ``tf.function`` loop)."""
    import keras

    if keras.backend.backend() != "tensorflow":  # pragma: no cover - torch: eager Python loop
        raise NotImplementedError("the Keras engine supports the jax and tensorflow backends")
    import tensorflow as tf

    model, optimizer = entry.model, entry.optimizer

    # Exact shapes per trace (no reduce_retracing): a shape-relaxed trace may pick other
    # kernels and round differently, which would make a head's result depend on what the
    # process traced before.
    @tf.function(reduce_retracing=False)
    def run(x, t, sw, rows, real, in_idx):
        n = tf.shape(rows)[0]
        losses = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            r, rw = rows[i], real[i]
            xb = tf.gather(x, r)
            xb = xb[:, :-1] if full_input else tf.gather(xb, in_idx, axis=1)
            tb = tf.gather(t, r)
            wb = tf.gather(sw, r) * rw
            with tf.GradientTape() as tape:
                pred = model(xb, training=True)
                loss = tf.reduce_sum(loss_obj(tb, pred) * wb) / tf.reduce_sum(rw)
                for extra in model.losses:
                    loss = loss + extra
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            losses = losses.write(i, loss)
        return losses.stack()

    return run


# --------------------------------------------------------------------------- helpers


class _OwnRows:
    """A group's per-head rows (`RowSplit`s of one partition size) as stacked arrays.

    Attributes:
        n: training rows per head (equal in a group).
        train: ``(P, n)`` int32 training rows of the trainer's train split.
        val: ``(P, n_val)`` int32 validation rows.
        sample_weight: ``(P, N)`` float32 class weight of every train-split row, from
            each head's own training labels (as a trainer on its rows computes them).
    """

    def __init__(self, trainer: KerasTrainer, rows: Sequence[RowSplit]) -> None:
        self.train = np.stack([np.asarray(r.train) for r in rows]).astype(np.int32)
        self.val = np.stack([np.asarray(r.val) for r in rows]).astype(np.int32)
        self.n = int(self.train.shape[1])
        y = trainer._y_train
        self.sample_weight = np.stack([trainer._class_weights(y[r])[y] for r in self.train]).astype(np.float32)

    def heads_rows(self, batches: np.ndarray) -> np.ndarray:
        """Shared batch positions ``(E, nb, b)`` in ``[0, n)`` -> each head's rows ``(E, nb, P, b)``."""
        return np.ascontiguousarray(np.moveaxis(self.train[:, batches], 0, 2))


def _power_of_two_chunks(members: Sequence[int], size: int) -> list[list[int]]:
    """Split into chunks of at most ``size``, each a power of two long (so compiled group sizes repeat)."""
    chunks, start = [], 0
    while start < len(members):
        left = min(size, len(members) - start)
        take = 1 << (left.bit_length() - 1)
        chunks.append(list(members[start : start + take]))
        start += take
    return chunks


def _seeded(initializer: Any, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import keras

    config = initializer.get_config()
    if "seed" in config:
        initializer = type(initializer).from_config({**config, "seed": int(seed % 2**31)})
    return np.asarray(keras.ops.convert_to_numpy(initializer(shape, dtype="float32")), np.float32)


def _layout(model: Any, layers: Sequence[Any] | None) -> list[tuple[str, tuple[int, ...]]]:
    """Each variable of ``model`` (in ``model.variables`` order) as ``("masked"|"other", shape)``."""
    from evoprune_tf.nn.layers import masked_dense_layers  # nn imports Keras: not at module import

    layers = masked_dense_layers(model) if layers is None else layers
    owned = {id(v) for layer in layers for v in layer.variables}
    return [("masked" if id(v) in owned else "other", tuple(v.shape)) for v in model.variables]


def _outputs_probabilities(model: Any) -> bool:
    """Whether the model ends with a softmax (its outputs are probabilities, not logits)."""
    import keras

    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax):
        return True
    return activation is keras.activations.softmax


def _numpy_forward_ok(model: Any, layers: Sequence[Any]) -> bool:
    """Whether `TrainedHead`'s NumPy forward (ReLU hidden, linear logits) reproduces the model at inference."""
    import keras

    from evoprune_tf.nn.layers import MaskedDense  # nn imports Keras: not at module import

    allowed = (keras.layers.InputLayer, MaskedDense, keras.layers.Dropout)
    if not all(isinstance(layer, allowed) for layer in model.layers):
        return False
    hidden_ok = all(layer.activation is keras.activations.relu for layer in layers[:-1])
    out = layers[-1].activation
    return hidden_ok and out in (None, keras.activations.linear, keras.activations.softmax)
