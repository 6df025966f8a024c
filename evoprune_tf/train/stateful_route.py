"""The per-head route of the Keras engine: heads one after another through a reused compiled model.

One compiled model per compact shape is reused through assignment (weights, masks and
optimizer variables reset per head: a fresh model per genome leaks ~15 MB on
TensorFlow), trained by one ``tf.function`` whose ``tf.range`` loop runs every
mini-batch of every epoch with ``optimizer.apply``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evoprune_tf.train.heads import TrainedHead

__all__ = ["StatefulRoute"]


class StatefulRoute:
    """Heads one after another through a reused compiled model (TensorFlow, torch)."""

    def __init__(self, trainer: Any, entry: Any, values, in_idx: np.ndarray, full_input: bool,
                 own: Any = None) -> None:
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


def _stateful_function(entry: Any, loss_obj: Any, full_input: bool):
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
