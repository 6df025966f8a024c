"""The Keras engine: every genome is scored by training a Keras model of `MaskedDense` layers.

`KerasTrainer` trains pruned heads with a Keras optimizer (`evoprune_tf.train.recipe.make_optimizer`)
and a Keras loss (`evoprune_tf.train.recipe.make_loss`) on the backend Keras runs on in this process
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
  gradient (`evoprune_tf.train.jax_route.heads_vmap`).
* **TensorFlow** (`TF_ROUTE`, ``"auto"``): where one fit is long enough for XLA to pay
  (`evoprune_tf.train.tf_stacked.xla_pays`), a group's heads train as one
  population-stacked computation (`evoprune_tf.train.tf_stacked`: kernels ``(P, in,
  out)``, the sum of the heads' losses, one XLA-compiled ``tf.function`` over every
  mini-batch); otherwise, and for heads the stacked route cannot express, one compiled
  model per compact shape is reused through assignment (weights, masks and optimizer
  variables reset per head: a fresh model's traced step stays in TensorFlow's gradient
  registry, ~15 MB each, unless `evoprune_tf.train.tf_registry` releases it), trained
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
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from evoprune_tf.encodings import HeadMasks, HeadSpec
from evoprune_tf.rng import isolated_global_rng
from evoprune_tf.train.config import TrainConfig, derive_seed
from evoprune_tf.train.group_rows import OwnRows, power_of_two_chunks
from evoprune_tf.train.head_builder import (
    HeadBuilder,
    check_head,
    default_head,
    layout,
    numpy_forward_ok,
    outputs_probabilities,
    resolve_head,
    seeded_value,
)
from evoprune_tf.train.heads import TrainedHead
from evoprune_tf.train.jax_route import JaxRoute
from evoprune_tf.train.plan import HeadPlan, RowSplit, compact_weights, initial_weights, input_indices, plan_head, \
    train_by_shape, with_zero_column
from evoprune_tf.train.recipe import make_loss, make_optimizer
from evoprune_tf.train.stateful_route import StatefulRoute

# make_optimizer, make_loss, default_head, resolve_head, check_head and HeadBuilder live in
# `recipe` and `head_builder`; they stay importable from here, where users import them.
__all__ = ["KerasTrainer", "default_head", "resolve_head", "make_optimizer", "make_loss", "check_head",
           "HeadBuilder", "DEFAULT_BUCKET", "JAX_GROUP_SIZE", "MAX_CACHED_SHAPES", "MAX_CACHED_PROGRAMS",
           "compiled_program_count"]

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
        self._from_logits = not outputs_probabilities(full)
        make_optimizer(config)  # fail now on a bad name, not inside the first group
        self._loss, self._sparse = make_loss(config, from_logits=self._from_logits)
        self._init = self._initial_weights(layers)
        self._other_order = [np.asarray(keras.ops.convert_to_numpy(v)) for v in full.variables]
        self._full_layout = layout(full, layers)
        self.compact = self._widths_only_in_masked_dense(full)
        self.numpy_forward = numpy_forward_ok(full, layers)
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
                kernel = seeded_value(layer.kernel_initializer, shape, derive_seed(self.seed, "init", l, "kernel"))
            bias = None
            if layer.bias is not None:
                if type(layer.bias_initializer).__name__ == "Zeros":
                    bias = np.zeros(shape[1], np.float32)
                else:
                    bias = seeded_value(layer.bias_initializer, (shape[1],), derive_seed(self.seed, "init", l, "bias"))
            out.append((np.asarray(kernel, np.float32), bias))
        return out

    def _widths_only_in_masked_dense(self, full: Any) -> bool:
        """Whether a compact build keeps every non-MaskedDense variable's shape (compaction is then safe)."""
        probe_spec = HeadSpec(max(1, self.spec.n_features // 2 + 1), self.spec.n_classes,
                              tuple(max(1, h // 2 + 1) for h in self.spec.hidden), self.spec.use_bias)
        probe = self.builder(probe_spec)
        check_head(probe, probe_spec, "head builder (with compact widths)")
        mine, theirs = layout(full, None), layout(probe, None)
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
                              lambda members: power_of_two_chunks(members, self.group_size), rows=rows)

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
        own = None if rows is None else OwnRows(self, rows)
        route = JaxRoute(self, entry, values, in_idx, full_input, own) if self.backend == "jax" else \
            _tf_route(self, entry, values, in_idx, full_input, own)
        rng = np.random.default_rng(derive_seed(self.seed, "batches"))
        n_heads = len(plans)
        epochs_run = np.zeros(n_heads, np.int64)
        # A group's heads share one partition size n: the batch order (indices in [0, n)) is
        # what a trainer on n rows draws; `OwnRows` maps it to each head's rows.
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


def _default_group_size(backend: str) -> int:
    """``TrainConfig.group_size = 0``: `JAX_GROUP_SIZE` on a JAX accelerator, else 1."""
    if backend != "jax":
        return 1
    import jax

    return 1 if jax.default_backend() == "cpu" else JAX_GROUP_SIZE


#: The TensorFlow route: ``"stacked"`` (`evoprune_tf.train.tf_stacked`: a group's heads as
#: one stacked computation, where the head and optimizer allow it), ``"per_head"``
#: (`StatefulRoute` always) or ``"auto"``: stacked with XLA where XLA pays
#: (`tf_stacked.xla_pays`: long fits, 1.5-2x faster per evaluation), per head elsewhere
#: (short fits and small heads, where the stacked route's extra tracing per shape made
#: the test suite's searches about 2x slower). A trainer's ``tf_route`` attribute, when
#: set, overrides it.
TF_ROUTE = "auto"


def _tf_route(trainer: KerasTrainer, entry: _Compiled, values, in_idx: np.ndarray, full_input: bool,
              own: OwnRows | None):
    """The stacked route where the head, the optimizer and the route choice allow it; else `StatefulRoute`."""
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
    return StatefulRoute(trainer, entry, values, in_idx, full_input, own)
