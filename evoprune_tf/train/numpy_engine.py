"""The opt-in NumPy engine (``TrainConfig(engine="numpy")``): hand-derived backprop on CPU.

The default engine is `evoprune_tf.train.keras_engine` (Keras models, Keras optimizers
and losses). This engine trains only the default head (ReLU hidden layers, softmax
cross-entropy) with Keras' SGD (Nesterov) update, written with NumPy arrays; it is
kept, explicitly named, because on 2 CPU cores it measured faster than the Keras engine
on the TensorFlow backend (see the README's "Speed" section and
``benchmarks/fitness.py``).

It shares the compaction plan (`evoprune_tf.train.plan`) with the Keras engine, so both
start every head from the same initial weights restricted to its active units and feed
the same mini-batch order: the same genome gets the same fitness (to float32 rounding)
from either engine. Heads are trained in *groups*: stacked weights ``(P, in, out)``;
within a group each head's products are the same 2-D GEMMs as for a lone head, so a
genome gets bit-for-bit the same result alone, inside any batch and in any order.
With per-head rows (``train(heads, rows)``, resampled fitness) a head gathers its own
mini-batches into the same memory layout, so it is also bit for bit the head of a
trainer built on exactly its rows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evoprune_tf.encodings import HeadMasks, HeadSpec
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.train.blas import blas_threads
from evoprune_tf.train.config import TrainConfig, derive_seed
from evoprune_tf.train.heads import TrainedHead, training_flops, unstack_heads
from evoprune_tf.train.plan import HeadPlan, RowSplit, compact_weights, initial_weights, plan_head, \
    train_by_shape, with_zero_column

# TrainConfig, TrainedHead, derive_seed, training_flops and unstack_heads moved to their own
# modules; they stay importable from here for code written against the old layout.
__all__ = ["HeadTrainer", "TrainConfig", "TrainedHead", "derive_seed", "training_flops", "unstack_heads"]

_Plan = HeadPlan  # the old private name


class HeadTrainer:
    """Trains many pruned heads of one `HeadSpec` on one `FeatureSplits`.

    Args:
        spec: the full head.
        data: cached features; only ``train`` is trained on, ``val`` drives
            ``val_loss`` early stopping.
        config: training recipe.
        seed: drives the shared initial weights and the mini-batch order.
    """

    def __init__(self, spec: HeadSpec, data: FeatureSplits, config: TrainConfig, *, seed: int) -> None:
        if data.n_features != spec.n_features:
            raise ValueError(f"features have width {data.n_features}; the head expects {spec.n_features}")
        if not config.uses_reference_maths():
            raise ValueError("the NumPy engine trains the default head with SGD and cross-entropy only; "
                             "expected engine='keras' for optimizer, loss, dropout, l2, label_smoothing, class_weight or head")
        self.spec = spec
        self.data = data
        self.config = config
        self.seed = int(seed)
        self._x_train = with_zero_column(data.x_train)
        self._x_val = with_zero_column(data.x_val)
        self._y_train = np.asarray(data.y_train, dtype=np.int64)
        self._y_val = np.asarray(data.y_val, dtype=np.int64)
        self._init = initial_weights(spec, self.seed)

    @property
    def bucket(self) -> int:
        """Padding multiple of the compact widths (``config.bucket``; 0 means 1 here)."""
        return self.config.bucket or 1

    def plan(self, masks: HeadMasks) -> HeadPlan:
        """Compact layout of a head (`evoprune_tf.train.plan.plan_head` at this trainer's bucket)."""
        return plan_head(masks, self.bucket)

    def train(self, heads: Sequence[HeadMasks], rows: Sequence[RowSplit] | None = None) -> list[TrainedHead]:
        """Train every head; returns them in input order.

        Heads with the same padded shape are stacked into groups of at most
        ``config.group_size`` (0: 1); the result of each head does not depend on the grouping.

        Args:
            heads: decoded masks, one per genome.
            rows: optional, one `RowSplit` per head: the head trains on its own rows of
                this trainer's train split and is validated on its own rows (resampled
                fitness: every partition's heads in one call). Bit for bit the head a
                trainer built on exactly those rows returns. None: every head trains
                on the train split and is validated on the validation split.

        Returns:
            One `TrainedHead` per entry of ``heads``.
        """
        size = self.config.group_size or 1
        if rows is not None and len(rows) != len(heads):
            raise ValueError(f"got {len(rows)} row splits for {len(heads)} heads; expected one per head")
        with blas_threads(self.config.blas_threads):
            return train_by_shape([self.plan(m) for m in heads], heads, self._train_group,
                                  lambda members: (members[i : i + size] for i in range(0, len(members), size)),
                                  rows=rows)

    def _group_weights(self, plans: Sequence[HeadPlan]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        per_head = [compact_weights(self._init, plan) for plan in plans]
        kernels = [np.stack([k[layer] for k, _ in per_head]) for layer in range(self.spec.n_layers)]
        biases = [None if per_head[0][1][layer] is None else np.stack([b[layer] for _, b in per_head])[:, None, :]
                  for layer in range(self.spec.n_layers)]
        return kernels, biases

    def _train_group(self, plans: Sequence[HeadPlan], heads: Sequence[HeadMasks],
                     rows: Sequence[RowSplit] | None = None) -> list[TrainedHead]:
        cfg = self.config
        n_heads = len(plans)
        n_layers = self.spec.n_layers
        kernels, biases = self._group_weights(plans)
        conn = [np.stack([p.conn[layer] for p in plans]) if layer in plans[0].conn else None
                for layer in range(n_layers)]
        mom_k = [np.zeros_like(k) for k in kernels]
        mom_b = [None if b is None else np.zeros_like(b) for b in biases]
        scratch = [np.empty_like(k) for k in kernels]
        n_feat = self.spec.n_features
        in_idx = np.stack([np.where(p.indices[0] < 0, n_feat, p.indices[0]) for p in plans])
        full_input = in_idx.shape[1] == n_feat and bool((in_idx == np.arange(n_feat)).all())
        x_train_t = np.ascontiguousarray(self._x_train.T)  # (F+1, N): gathers rows, not columns
        y = self._y_train
        # Own rows per head (resampling): a partition's batch order is what a trainer on its
        # rows draws (same seed, same size n), mapped to this split's indices.
        own = None if rows is None else np.stack([r.train for r in rows])  # (P, n)
        n = len(y) if own is None else own.shape[1]
        heads_col = np.arange(n_heads)[:, None]
        lr, mu = np.float32(cfg.learning_rate), np.float32(cfg.momentum)
        active = np.ones(n_heads, dtype=bool)
        best = np.full(n_heads, np.inf)
        wait = np.zeros(n_heads, dtype=np.int64)
        epochs_run = np.zeros(n_heads, dtype=np.int64)
        order_rng = np.random.default_rng(derive_seed(self.seed, "batches"))
        for epoch in range(cfg.epochs):
            perm = order_rng.permutation(n)
            epoch_loss = np.zeros(n_heads, dtype=np.float64)
            epochs_run += active
            for start in range(0, n, cfg.batch_size):
                batch = perm[start : start + cfg.batch_size]
                b = len(batch)
                yb, a0_t = self._batch_inputs(batch, own, x_train_t, in_idx, full_input)
                acts_t = [a0_t]  # transposed inputs of every layer: (P, K_l, b)
                acts = [a0_t.transpose(0, 2, 1)]
                a = acts[0]
                for layer in range(n_layers):
                    z = _bmm(a, kernels[layer])
                    if biases[layer] is not None:
                        z += biases[layer]
                    if layer < n_layers - 1:
                        np.maximum(z, 0, out=z)
                        acts.append(z)
                        acts_t.append(z.transpose(0, 2, 1))
                    a = z
                # softmax cross-entropy; dz = lr * dL/dlogits (lr folded in once, on a small array)
                a -= a.max(axis=-1, keepdims=True)
                np.exp(a, out=a)
                sums = a.sum(axis=-1, keepdims=True)
                picked = a[heads_col, np.arange(b), yb]
                epoch_loss += (np.log(sums[..., 0]) - np.log(picked)).sum(axis=1)
                a /= sums
                a[heads_col, np.arange(b), yb] -= 1.0
                dz = a
                dz *= lr / np.float32(b)
                if not active.all():
                    dz *= active[:, None, None]
                for layer in range(n_layers - 1, -1, -1):
                    grad = _bmm(acts_t[layer], dz)
                    if layer > 0:
                        dz_prev = _bmm(dz, kernels[layer].transpose(0, 2, 1))
                        dz_prev *= acts[layer] > 0
                    if conn[layer] is not None:
                        grad *= conn[layer]
                    _nesterov(kernels[layer], mom_k[layer], grad, mu, cfg.nesterov, scratch[layer])
                    if biases[layer] is not None:
                        gb = dz.sum(axis=1, keepdims=True)
                        _nesterov(biases[layer], mom_b[layer], gb, mu, cfg.nesterov, None)
                    if layer > 0:
                        dz = dz_prev
            if cfg.early_stopping != "none":
                monitored = (self._val_loss(plans, kernels, biases, rows) if cfg.early_stopping == "val_loss"
                             else epoch_loss / n)
                best, wait = self._early_stopping(monitored, best, wait, active, mom_k, mom_b)
                if not active.any():
                    break
        return unstack_heads(self.spec, plans, heads, kernels, biases, epochs_run)

    def _batch_inputs(self, batch: np.ndarray, own: np.ndarray | None, x_train_t: np.ndarray, in_idx: np.ndarray,
                      full_input: bool) -> tuple[np.ndarray, np.ndarray]:
        """One mini-batch's labels and transposed inputs ``(P, K0, b)`` of every head of the group."""
        n_feat, n_heads, b = self.spec.n_features, len(in_idx), len(batch)
        y = self._y_train
        if own is None:
            yb = y[batch][None, :]
            xb_t = x_train_t[:, batch]  # (F+1, b)
            if full_input:
                return yb, np.broadcast_to(xb_t[:n_feat], (n_heads, n_feat, b))
            return yb, xb_t[in_idx]  # (P, K0, b)
        picked_rows = own[:, batch]  # (P, b)
        yb = y[picked_rows]
        # (P, K0, b), each head's slice laid out in memory as in the shared path:
        # BLAS picks its kernels by layout, so the same layout gives the same bits
        if full_input:
            return yb, self._x_train[picked_rows].transpose(0, 2, 1)[:, :n_feat]
        a0_t = np.empty((n_heads, in_idx.shape[1], b), np.float32)  # the shared path's two gathers per
        for h in range(n_heads):  # head: faster than one 2-D fancy index
            a0_t[h] = x_train_t[:, picked_rows[h]][in_idx[h]]
        return yb, a0_t

    def _early_stopping(self, monitored: np.ndarray, best: np.ndarray, wait: np.ndarray, active: np.ndarray,
                        mom_k: list[np.ndarray], mom_b: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """One epoch of per-head early stopping: new ``best`` and ``wait``; stopped heads leave ``active``.

        A stopped head's momentum is zeroed, so it keeps its weights exactly.
        """
        cfg = self.config
        improved = monitored < best - cfg.min_delta
        best = np.where(improved & active, monitored, best)
        wait = np.where(improved, 0, wait + 1)
        stopping = active & (wait >= cfg.patience)
        if stopping.any():
            for layer in range(len(mom_k)):
                mom_k[layer][stopping] = 0
                if mom_b[layer] is not None:
                    mom_b[layer][stopping] = 0
            active &= ~stopping
        return best, wait

    def _val_loss(self, plans, kernels, biases, rows: Sequence[RowSplit] | None = None) -> np.ndarray:
        n_feat = self.spec.n_features
        in_idx = np.stack([np.where(p.indices[0] < 0, n_feat, p.indices[0]) for p in plans])
        if rows is None:
            logits = _forward_stack(kernels, biases, self._x_val.T[in_idx].transpose(0, 2, 1))
            return _cross_entropy(logits, self._y_val[None, :])
        val = np.stack([r.val for r in rows])  # (P, n_val) rows of the train split
        inputs = self._x_train.T[in_idx[:, :, None], val[:, None, :]].transpose(0, 2, 1)
        return _cross_entropy(_forward_stack(kernels, biases, inputs), self._y_train[val])


def _bmm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched matmul of stacked heads as one 2-D GEMM per head.

    NumPy's stacked ``matmul`` does not reach BLAS for these shapes (measured 5x slower
    than a 2-D product on this CPU); per-head 2-D products are fast and make a head's
    arithmetic identical whether it is trained alone or in a group.
    """
    n = max(len(a), len(b))
    if n == 1:
        return (a[0] @ b[0])[None]
    a, b = np.broadcast_to(a, (n, *a.shape[1:])), np.broadcast_to(b, (n, *b.shape[1:]))
    return np.stack([x @ y for x, y in zip(a, b)])


def _nesterov(w: np.ndarray, m: np.ndarray, g: np.ndarray, mu: np.float32, nesterov: bool, scratch) -> None:
    """Keras SGD update with ``g`` already scaled by the learning rate, in place.

    ``m <- mu*m - g``; Nesterov: ``w <- w + mu*m - g``, else ``w <- w + m``.
    """
    m *= mu
    m -= g
    if not nesterov:
        w += m
        return
    if scratch is None:
        w += mu * m - g
        return
    np.multiply(m, mu, out=scratch)
    scratch -= g
    w += scratch


def _forward_stack(kernels: Sequence[np.ndarray], biases: Sequence[np.ndarray | None], a: np.ndarray) -> np.ndarray:
    """Logits of stacked heads for stacked inputs ``(P, n, K0)``."""
    for layer, kernel in enumerate(kernels):
        a = _bmm(a, kernel)
        if biases[layer] is not None:
            a += biases[layer]
        if layer < len(kernels) - 1:
            np.maximum(a, 0, out=a)
    return a


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean cross-entropy per head of stacked logits ``(P, n, C)``; labels ``(1 or P, n)``."""
    z = logits - logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    picked = z[np.arange(len(z))[:, None], np.arange(y.shape[1]), y]
    return (log_norm - picked).mean(axis=1)

