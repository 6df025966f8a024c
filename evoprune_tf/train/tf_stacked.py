"""The TensorFlow population-stacked route of the Keras engine.

A group of heads of one compact shape (`evoprune_tf.train.plan.HeadPlan.key`) trains as
one computation: every `MaskedDense` layer's kernel, bias and kernel mask are stacked
along a leading head axis (kernel ``(P, in, out)``), the forward pass is one batched
matmul per layer, the loss is the sum of the heads' own losses (mean cross-entropy over
the batch's real rows, plus each head's own kernel regularization), and one Keras
optimizer updates the stacked variables. Every mini-batch of every epoch runs inside
one ``tf.function`` (a ``tf.range`` loop).

Why the heads stay independent: the gradient of a sum is each head's own gradient (the
upstream gradient of every head's loss is exactly 1), and the accepted optimizers
(`ELEMENTWISE_OPTIMIZERS`) update each entry from its own gradient and state only. A
gradient clip by a norm (``clipnorm``, ``global_clipnorm``) would mix heads: such an
optimizer is not stacked (`unsupported_reason`).

What is stacked: heads whose Keras model is a chain of `MaskedDense` layers (any
element-wise hidden activation, linear or softmax output) with L1/L2 kernel and bias
regularizers or none. Anything else (Dropout, BatchNormalization, constraints, activity
regularizers, other layers) trains through the engine's per-head route, one head after
another through a reused compiled model (`evoprune_tf.train.stateful_route.StatefulRoute`); so do heads
that the stacked forward does not reproduce on a probe input.

Measured on 2 CPU cores (``benchmarks/tf_routes.py``): the XLA-compiled loop is 1.7-2.6x
faster per head than the per-head route, and a group of one head (``group_size = 1``,
TensorFlow's default) is faster per head than larger stacks there (XLA's batched dot on
CPU is slower than its 2-D dot); larger groups are for accelerators.

The route honours the same contract as the per-head one: a head starts from the values
the trainer gives it, sees the shared mini-batch order (or its own rows, ``OwnRows``),
and a stopped head (early stopping) keeps its state exactly; so a genome gets the same
fitness alone, in a group and in any order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evoprune_tf.train.recipe import make_optimizer
from evoprune_tf.train.tf_program import StackedProgram, penalty_factors

__all__ = ["StackedRoute", "unsupported_reason", "forward_matches", "ELEMENTWISE_OPTIMIZERS", "PREGATHER_LIMIT",
           "JIT_COMPILE", "JIT_MIN_WORK", "JIT_MIN_STEPS", "xla_pays"]

#: Keras optimizers whose update of an entry reads only that entry's gradient and state
#: (so heads stacked in one variable train as if alone). Lamb, Adafactor and Muon use
#: per-variable norms or factorizations and are not stacked.
ELEMENTWISE_OPTIMIZERS = frozenset({"SGD", "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta",
                                    "Lion", "Ftrl"})
#: The features of a group are gathered to the heads' active columns once per call
#: (``(P, n, in)`` floats) when that is at most this many values; else per mini-batch.
PREGATHER_LIMIT = 2**25
#: Compile the training loop with XLA (``tf.function(jit_compile=True)``): True, False or
#: ``"auto"`` (when a group's training reaches both `JIT_MIN_WORK` and `JIT_MIN_STEPS`);
#: a trainer's ``tf_jit_compile`` attribute, when set, overrides it.
JIT_COMPILE = "auto"
#: Multiply-accumulates per head (epochs x train rows x kernel entries) from which
#: ``"auto"`` compiles with XLA: an XLA compile costs about 1 s per new shape here, which a
#: tiny head (most tests) never earns back; the benchmark head (1280 -> 64..512 -> 3,
#: 2000 rows, 5 epochs, 8e8 and more) runs 2-2.5x faster per step with it.
JIT_MIN_WORK = 1e8
#: Optimizer steps per fit (epochs x mini-batches) from which ``"auto"`` compiles with
#: XLA: what XLA saves is per step (it fuses each step's element-wise work), what it
#: costs is one compile per shape; a short fit (``benchmarks/fitness.py --quick``: 13
#: steps) was 3-4x slower with it, the benchmark's 315-step fit 1.5-2x faster.
JIT_MIN_STEPS = 200


# --------------------------------------------------------------------------- eligibility


def xla_pays(trainer: Any, entry: Any, own: Any = None) -> bool:
    """Whether ``"auto"`` compiles this shape's training loop with XLA (`JIT_MIN_WORK`, `JIT_MIN_STEPS`).

    A function of the head's shape and the training recipe only, not of the group it
    trains in, so that a genome rounds the same way alone and in a group.

    Args:
        trainer: the `KerasTrainer`.
        entry: its compiled entry for the shape (``entry.layers``: the `MaskedDense` layers).
        own: per-head rows (``OwnRows``) or None (the trainer's train split).

    Returns:
        True when one fit has enough work and enough steps to earn the compile back.
    """
    rows = len(trainer._y_train) if own is None else own.n
    work = trainer.config.epochs * rows * sum(int(np.prod(layer.kernel_shape)) for layer in entry.layers)
    steps = trainer.config.epochs * -(-rows // trainer.config.batch_size)
    return work >= JIT_MIN_WORK and steps >= JIT_MIN_STEPS


def unsupported_reason(model: Any, layers: Sequence[Any], optimizer: Any) -> str | None:
    """Why a compact head cannot be trained stacked, or None when it can.

    Args:
        model: the compact Keras head.
        layers: its `MaskedDense` layers, in order.
        optimizer: the (built) Keras optimizer of the recipe.

    Returns:
        A short reason, or None.
    """
    import keras

    from evoprune_tf.nn.layers import MaskedDense  # nn imports Keras: not at module import

    others = [type(layer).__name__ for layer in model.layers
              if not isinstance(layer, (keras.layers.InputLayer, MaskedDense))]
    if others:
        return f"layers other than MaskedDense: {sorted(set(others))}"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return "more than one input or output"
    for layer in layers:
        if layer.activity_regularizer is not None:
            return f"{layer.name} has an activity regularizer"
        if layer.kernel_constraint is not None or layer.bias_constraint is not None:
            return f"{layer.name} has a constraint"
        for reg in (layer.kernel_regularizer, layer.bias_regularizer):
            if reg is not None and penalty_factors(reg) is None:
                return f"{layer.name} has a regularizer other than L1/L2 ({type(reg).__name__})"
        if layer.dtype_policy.compute_dtype != "float32":
            return f"{layer.name} computes in {layer.dtype_policy.compute_dtype}"
    name = type(optimizer).__name__
    if name not in ELEMENTWISE_OPTIMIZERS:
        return f"optimizer {name} is not element-wise"
    if optimizer.clipnorm or optimizer.global_clipnorm:
        return "a gradient-norm clip mixes the stacked heads"
    if getattr(optimizer, "gradient_accumulation_steps", None):
        return "gradient accumulation"
    return None


# --------------------------------------------------------------------------- the route


class StackedRoute:
    """A group of same-shape heads trained stacked (TensorFlow); the route protocol of ``KerasTrainer._train_group``.

    Args:
        trainer: the `KerasTrainer` (data, loss, head assembly).
        entry: its compiled compact model of the group's shape (``keras_engine._Compiled``).
        values: per head, ``(trainable, non_trainable)`` initial values in the compact
            model's variable order.
        in_idx: ``(P, in)`` int32 input columns of every head (``with_zero_column``
            features; padding reads the zero column).
        full_input: every head reads every feature in order (no gather).
        own: per-head rows (``OwnRows``) or None (the trainer's splits).
    """

    def __init__(self, trainer: Any, entry: Any, values: Sequence[tuple[list, list]], in_idx: np.ndarray,
                 full_input: bool, own: Any = None) -> None:
        import keras

        self.t, self.entry, self.own = trainer, entry, own
        self.n_heads = p = len(values)
        n = len(trainer._y_train)
        if full_input:
            mode = "full"
        elif p * n * in_idx.shape[1] <= PREGATHER_LIMIT:
            mode = "pregathered"
        else:
            mode = "gather"
        jit = getattr(trainer, "tf_jit_compile", JIT_COMPILE)
        jit = bool(xla_pays(trainer, entry, own) if jit == "auto" else jit)
        key = ("tf_stacked", p, mode, own is not None, jit)
        program = entry.functions.get(key)
        if program is None:
            program = entry.functions[key] = StackedProgram(entry, p, lambda: make_optimizer(trainer.config),
                                                      trainer._loss, mode, own is not None, jit)
        self.program = program
        self.in_idx = keras.ops.convert_to_tensor(in_idx)
        # Initial values: the heads' own weights and masks, the optimizer's initial state.
        roles = _roles(entry)
        stacked: list[np.ndarray] = []
        per_head = [dict(zip(roles["trainable"], tv)) | dict(zip(roles["non_trainable"], ntv)) for tv, ntv in values]
        for l, layer in enumerate(entry.layers):
            names = _stacked_names(layer, l)
            stacked += [np.stack([h[name] for h in per_head]).astype(np.float32) for name in names]
        program.assign(stacked + [o.copy() for o in program.optimizer_init])
        self.data = self._device_data()

    def _device_data(self) -> dict[str, Any]:
        import keras

        t = self.t
        data = t._device.get("tf_stacked")
        if data is None:
            data = t._device["tf_stacked"] = {k: keras.ops.convert_to_tensor(v) for k, v in {
                "x": t._x_train, "t": t._targets(t._y_train), "sw": t._sample_weight, "real": t._real(),
                "x_val": t._x_val, "t_val": t._targets(t._y_val)}.items()}
        return data

    def fit(self, rows: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Train every head on the shared mini-batch order; stopped heads keep their state exactly.

        Args:
            rows: ``(epochs, n_batches, batch)`` batch positions (``OwnRows`` maps them to
                each head's rows).
            active: ``(P,)`` bool, the heads still training.

        Returns:
            ``(epochs, n_batches, P)`` batch losses (0 for stopped heads).
        """
        import keras

        e, nb, b = rows.shape
        d = self.data
        before = None if active.all() else self.program.read()
        if self.own is None:
            flat, sw, real = rows.reshape(e * nb, b), d["sw"], np.tile(np.asarray(d["real"]), (e, 1))
        else:  # each head's own rows (steps, P, b) and its partition's class weights
            flat = self.own.heads_rows(rows).reshape(e * nb, self.n_heads, b)
            sw, real = keras.ops.convert_to_tensor(self.own.sample_weight), np.tile(self.t._real(self.own.n), (e, 1))
        out = self.program.train_fn(d["x"], d["t"], sw, keras.ops.convert_to_tensor(flat),
                                    keras.ops.convert_to_tensor(real), self.in_idx)
        losses = np.asarray(keras.ops.convert_to_numpy(out)).reshape(e, nb, self.n_heads)
        if before is not None:  # a stopped head must not move (momentum would carry it): put it back
            self.restore(self.merge(before, self.program.read(), active))
            losses = losses * active
        return losses

    def val_loss(self) -> np.ndarray:
        """Each head's validation loss, as the per-head route computes it.

        Returns:
            ``(P,)`` float64: the mean per-sample loss plus the head's regularization.
        """
        import keras

        t = self.t
        if self.own is None:
            x, target = self.data["x_val"], self.data["t_val"]
        else:  # each head's own validation rows of the train split
            x = keras.ops.convert_to_tensor(t._x_train[self.own.val])
            target = keras.ops.convert_to_tensor(t._targets(t._y_train[self.own.val]))
        losses, extra = self.program.val_fn(x, target, self.in_idx)
        losses = np.asarray(keras.ops.convert_to_numpy(losses), np.float64)
        return losses.mean(axis=1) + np.asarray(keras.ops.convert_to_numpy(extra), np.float64)

    def snapshot(self) -> list[np.ndarray]:
        """A copy of every head's state.

        Returns:
            The stacked variables and optimizer state as NumPy arrays.
        """
        return self.program.read()

    def merge(self, old: list[np.ndarray], new: list[np.ndarray], mask: np.ndarray) -> list[np.ndarray]:
        """Head ``p`` from ``new`` where ``mask[p]``, else from ``old``.

        Args:
            old: a `snapshot`.
            new: a later `snapshot`.
            mask: ``(P,)`` bool.

        Returns:
            The merged state.
        """
        p = self.n_heads
        out = []
        for a, b in zip(old, new):
            if a.ndim and a.shape[0] == p:
                out.append(np.where(np.asarray(mask).reshape((p,) + (1,) * (a.ndim - 1)), b, a))
            else:  # shared scalars (the optimizer's step count): the newer one
                out.append(b)
        return out

    def restore(self, state: list[np.ndarray]) -> None:
        """Assign a `snapshot` (or `merge`) back.

        Args:
            state: what `snapshot` or `merge` returned.
        """
        self.program.assign(state)

    def heads(self, plans: Sequence[Any], masks: Sequence[Any], epochs_run: np.ndarray) -> list[Any]:
        """The trained heads, in group order.

        Args:
            plans: the heads' `HeadPlan`s.
            masks: their `HeadMasks`.
            epochs_run: ``(P,)`` epochs each head trained.

        Returns:
            One `TrainedHead` per head.
        """
        roles = _roles(self.entry)
        values = self.program.read()
        by_name: dict[tuple[str, int], np.ndarray] = {}
        i = 0
        for l, layer in enumerate(self.entry.layers):
            names = _stacked_names(layer, l)
            for name in names:
                by_name[name] = values[i]
                i += 1
        out = []
        for p, (plan, m) in enumerate(zip(plans, masks)):
            tv = [by_name[name][p] for name in roles["trainable"]]
            ntv = [by_name[name][p] for name in roles["non_trainable"]]
            out.append(self.t._make_head(self.entry, plan, m, tv, ntv, epochs_run[p]))
        return out


def _stacked_names(layer: Any, l: int) -> list[tuple[str, int]]:
    """The stacked variables of layer ``l`` in `StackedProgram.variables` order."""
    return [("kernel", l), ("bias", l), ("mask", l)] if layer.bias is not None else [("kernel", l), ("mask", l)]


def _roles(entry: Any) -> dict[str, list[tuple[str, int]]]:
    """The role ``(kind, layer)`` of every trainable and non-trainable variable of the compact model, in order."""
    role: dict[int, tuple[str, int]] = {}
    for l, layer in enumerate(entry.layers):
        role[id(layer.kernel)] = ("kernel", l)
        role[id(layer.kernel_mask)] = ("mask", l)
        if layer.bias is not None:
            role[id(layer.bias)] = ("bias", l)
    return {"trainable": [role[id(v)] for v in entry.model.trainable_variables],
            "non_trainable": [role[id(v)] for v in entry.model.non_trainable_variables]}


def forward_matches(entry: Any, program_values: tuple[list, list], *, atol: float = 1e-5) -> bool:
    """Whether the stacked forward of one head reproduces its compact Keras model on a probe input.

    Guards against head builders that pass `unsupported_reason` but are not a plain chain
    of their `MaskedDense` layers (a layer called twice, a custom `call`).

    Args:
        entry: the compiled compact model (``keras_engine._Compiled``).
        program_values: ``(trainable, non_trainable)`` values of one head, model order.
        atol: tolerance on the outputs.

    Returns:
        True when the outputs agree.
    """
    import keras
    import tensorflow as tf

    tv, ntv = program_values
    width = entry.layers[0].kernel_shape[0]
    probe = np.random.default_rng(0).normal(size=(4, width)).astype(np.float32)
    want, _ = entry.model.stateless_call([keras.ops.convert_to_tensor(v) for v in tv],
                                         [keras.ops.convert_to_tensor(v) for v in ntv], probe, training=False)
    roles = _roles(entry)
    by = dict(zip(roles["trainable"], tv)) | dict(zip(roles["non_trainable"], ntv))
    h = tf.constant(probe)
    for l, layer in enumerate(entry.layers):
        h = tf.matmul(h, by[("kernel", l)] * by[("mask", l)])
        if layer.bias is not None:
            h = h + by[("bias", l)]
        if layer.activation is not None:
            h = layer.activation(h)
    return bool(np.allclose(keras.ops.convert_to_numpy(want), h.numpy(), atol=atol, rtol=1e-5))
