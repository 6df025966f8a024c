"""The stacked training program of the TensorFlow route: a group's heads as one computation.

`StackedProgram` holds every `MaskedDense` layer's kernel, bias and kernel mask stacked
along a leading head axis and the ``tf.function`` that trains them over every
mini-batch (see `evoprune_tf.train.tf_stacked` for why the heads stay independent).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["StackedProgram", "penalty_factors"]


def penalty_factors(reg: Any) -> tuple[float, float] | None:
    """``(l1, l2)`` of a Keras L1, L2 or L1L2 regularizer (None for any other)."""
    if type(reg).__name__ not in ("L1", "L2", "L1L2"):
        return None
    config = reg.get_config()
    return float(config.get("l1", 0.0)), float(config.get("l2", 0.0))


# --------------------------------------------------------------------------- the program


class StackedProgram:
    """Stacked variables, their optimizer and the compiled loops for ``P`` heads of one compact shape."""

    def __init__(self, entry: Any, n_heads: int, make_optimizer: Any, loss_obj: Any, mode: str, own: bool,
                 jit_compile: bool) -> None:
        import keras
        import tensorflow as tf

        self.n_heads, self.mode, self.own = n_heads, mode, own
        self.layers = entry.layers
        self.kernels, self.biases, self.masks = [], [], []
        for l, layer in enumerate(self.layers):
            shape = (n_heads, *layer.kernel_shape)
            self.kernels.append(keras.Variable(np.zeros(shape, np.float32), name=f"stacked_kernel_{l}"))
            self.masks.append(keras.Variable(np.zeros(shape, np.float32), trainable=False,
                                             name=f"stacked_mask_{l}"))
            self.biases.append(None if layer.bias is None else
                               keras.Variable(np.zeros(shape[::2], np.float32), name=f"stacked_bias_{l}"))
        self.trainable = [v for l in range(len(self.layers)) for v in (self.kernels[l], self.biases[l])
                          if v is not None]
        self.optimizer = make_optimizer()
        self.optimizer.build(self.trainable)
        self.optimizer_init = [np.asarray(keras.ops.convert_to_numpy(v)) for v in self.optimizer.variables]
        self.penalties = [(None if layer.kernel_regularizer is None else penalty_factors(layer.kernel_regularizer),
                           None if layer.bias_regularizer is None else penalty_factors(layer.bias_regularizer))
                          for layer in self.layers]
        self.activations = [layer.activation for layer in self.layers]
        self.loss_obj = loss_obj
        # XLA fuses each step's element-wise work (mask, gradients, optimizer update) that
        # otherwise costs one pass over the kernel per op: measured 2-2.5x faster per step.
        self.train_fn = tf.function(self._train, reduce_retracing=False, jit_compile=jit_compile)
        self.val_fn = tf.function(self._per_sample_val, reduce_retracing=False)

    # ----------------------------------------------------------------- maths

    def forward(self, xs: Any) -> Any:
        """Stacked outputs ``(P, b, classes)`` of inputs ``(P, b, in)`` (or ``(1, b, in)``, broadcast)."""
        import tensorflow as tf

        h = xs
        for l in range(len(self.layers)):
            # Batched matmul: each head's slice is the plain 2-D product of its own kernel.
            kernel = self.kernels[l] if self.layers[l].kernel_premasked else self.kernels[l] * self.masks[l]
            h = tf.matmul(h, kernel)
            if self.biases[l] is not None:
                h = h + self.biases[l][:, None, :]
            if self.activations[l] is not None:
                h = self.activations[l](h)
        return h

    def penalty(self) -> Any:
        """Each head's regularization ``(P,)``, as Keras adds its layers' ``losses`` (in layer order)."""
        import tensorflow as tf

        total = None
        for l in range(len(self.layers)):
            for var, pen in ((self.kernels[l], self.penalties[l][0]), (self.biases[l], self.penalties[l][1])):
                if pen is None or var is None:
                    continue
                axes = list(range(1, len(var.shape)))
                l1, l2 = pen
                value = tf.zeros((self.n_heads,), tf.float32)
                if l1:
                    value = value + l1 * tf.reduce_sum(tf.abs(var), axis=axes)
                if l2:
                    value = value + l2 * tf.reduce_sum(tf.square(var), axis=axes)
                total = value if total is None else total + value
        return total

    def _inputs(self, xs: Any, r: Any, in_idx: Any) -> Any:
        """The batch's compact inputs ``(P or 1, b, in)`` from the prepared features ``xs``."""
        import tensorflow as tf

        if self.mode == "full":  # every head reads every feature: xs is (n, in)
            return tf.gather(xs, r)[None] if not self.own else tf.gather(xs, r)
        if self.mode == "pregathered":  # xs is (P, n, in)
            return tf.gather(xs, r, axis=1, batch_dims=1) if self.own else tf.gather(xs, r, axis=1)
        # "gather": xs is the full (n, features + 1); gather rows, then each head's columns
        if self.own:
            return tf.gather(tf.gather(xs, r), in_idx, axis=2, batch_dims=1)
        return tf.transpose(tf.gather(tf.gather(xs, r), in_idx, axis=1), [1, 0, 2])

    def _prepare(self, x: Any, in_idx: Any) -> Any:
        import tensorflow as tf

        if self.mode == "full":
            return x[:, :-1]
        if self.mode == "pregathered":
            return tf.transpose(tf.gather(x, in_idx, axis=1), [1, 0, 2])
        return x

    def _train(self, x, t, sw, rows, real, in_idx):
        """All mini-batches ``rows[i]`` (``(b,)``; ``(P, b)`` with own rows): per-head losses ``(steps, P)``."""
        import tensorflow as tf

        xs = self._prepare(x, in_idx)
        n = tf.shape(rows)[0]
        out = tf.TensorArray(tf.float32, size=n)
        p = self.n_heads
        for i in tf.range(n):
            r, rw = rows[i], real[i]
            xb = self._inputs(xs, r, in_idx)
            if self.own:  # per head: its rows' targets and its partition's class weights
                tb = tf.gather(t, r)
                wb = tf.gather(sw, r, batch_dims=1) * rw
            else:
                tb = tf.gather(t, r)
                tb = tf.broadcast_to(tb[None], tf.concat([[p], tf.shape(tb)], 0))
                wb = tf.gather(sw, r) * rw
            with tf.GradientTape() as tape:
                pred = self.forward(xb)
                losses = tf.reduce_sum(self.loss_obj(tb, pred) * wb, axis=1) / tf.reduce_sum(rw)
                extra = self.penalty()
                if extra is not None:
                    losses = losses + extra
                total = tf.reduce_sum(losses)  # d total / d loss_p = 1: each head gets its own gradient
            grads = tape.gradient(total, self.trainable)
            self.optimizer.apply(grads, self.trainable)
            out = out.write(i, losses)
        return out.stack()

    def _per_sample_val(self, x, t, in_idx):
        """Per-sample validation losses ``(P, n_val)`` and each head's regularization ``(P,)``."""
        import tensorflow as tf

        if self.mode == "full":
            xs = x[..., :-1] if self.own else x[None, :, :-1]
        elif self.own:
            xs = tf.gather(x, in_idx, axis=2, batch_dims=1)
        else:
            xs = tf.transpose(tf.gather(x, in_idx, axis=1), [1, 0, 2])
        if not self.own:
            t = tf.broadcast_to(t[None], tf.concat([[self.n_heads], tf.shape(t)], 0))
        extra = self.penalty()
        return self.loss_obj(t, self.forward(xs)), tf.zeros((self.n_heads,)) if extra is None else extra

    # ----------------------------------------------------------------- state

    def variables(self) -> list[Any]:
        """Every stacked variable, then the optimizer's (the order of `read` and `assign`)."""
        own = [v for l in range(len(self.layers)) for v in (self.kernels[l], self.biases[l], self.masks[l])
               if v is not None]
        return own + list(self.optimizer.variables)

    def read(self) -> list[np.ndarray]:
        import keras

        return [np.array(keras.ops.convert_to_numpy(v)) for v in self.variables()]

    def assign(self, values: Sequence[np.ndarray]) -> None:
        for var, value in zip(self.variables(), values):
            var.assign(value)
