"""Fast training of pruned dense heads on cached features.

This is the hot path of every evolution. A genome's head is trained *compacted*:
pruned input features are gathered away and pruned neurons removed, so a head with
20% of its features active does about 20% of the first layer's arithmetic instead of
multiplying a full kernel by zeros. The maths is a plain softmax MLP (ReLU hidden
layers, cross-entropy, Keras' SGD with Nesterov momentum) written with NumPy arrays
and hand-derived gradients: it needs no Keras model per evaluation (no retracing, no
TensorFlow memory leak, flat memory) and does not import TensorFlow, so the evolution
path runs unchanged under ``KERAS_BACKEND=jax``.

Heads are trained in *groups*: stacked weights ``(P, in, out)`` train P heads at once, each with its own loss, momentum and early-stopping
state. Within a group every head has the same padded shape; padding uses zero weights
on zero inputs, which is exactly inert (zero contribution, zero gradient). The padded
shape of a head depends on its genome only (active counts rounded up to
``TrainConfig.bucket``), and each head's products are the same 2-D GEMMs as for a lone
head, so a genome gets bit-for-bit the same result alone, inside any
batch and in any order.

Every head of a trainer starts from the same initial weights (Glorot-uniform for the
full-size layers, drawn once from the seed) restricted to its active units, and all
heads see the same mini-batch order. Fitness differences between genomes therefore come
from their masks alone, and a genome's fitness is a pure function of (genome, seed,
config).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
from typing import Literal, Sequence

import numpy as np

from evoprune_tf.encodings import HeadMasks, HeadSpec
from evoprune_tf.features.splits import FeatureSplits

__all__ = ["TrainConfig", "TrainedHead", "HeadTrainer", "training_flops", "derive_seed"]

EarlyStopping = Literal["none", "val_loss", "train_loss"]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (run seed, purpose, genome bytes, ...)."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "little") >> 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a head is trained during the search (and, with `reference`, in the final retrain).

    Attributes:
        epochs: maximum epochs. The search default is a fixed budget: on the shared RPS
            copy validation accuracy saturates within it, and it keeps one evaluation
            well under a second on 2 CPU cores.
        batch_size: mini-batch size (reference: 32).
        learning_rate: SGD learning rate (reference: 1e-3).
        momentum: SGD momentum (reference: 0.9).
        nesterov: Nesterov momentum (reference: True).
        early_stopping: ``"none"`` (fixed budget), ``"val_loss"`` (stop a head when its
            validation loss has not improved for `patience` epochs) or ``"train_loss"``
            (the reference recipe, which in practice never triggers).
        patience: epochs without improvement before a head stops.
        min_delta: smallest decrease that counts as an improvement.
        bucket: active widths are rounded up to a multiple of this before training; 1
            trains exact shapes. Larger buckets let more heads share a group.
        group_size: at most this many heads are trained as one stacked computation. 1
            (the CPU default) keeps each head's weights in cache; larger values suit GPUs.
        engine: ``"numpy"`` (CPU, no TensorFlow needed) or ``"jax"`` (the same maths as
            one jitted, population-stacked computation per group; for GPUs).
        blas_threads: BLAS threads of the NumPy engine (0: the library's default). One
            thread is the default: these GEMMs are small, and on a 2-core machine that
            runs anything else, OpenBLAS' spinning threads made them 7-37x slower. Use
            ``workers`` to occupy more cores.
    """

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    early_stopping: EarlyStopping = "none"
    patience: int = 10
    min_delta: float = 0.0
    bucket: int = 1
    group_size: int = 1
    engine: Literal["numpy", "jax"] = "numpy"
    blas_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "bucket", "group_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"train.{name}={value!r}; expected a positive integer")
        if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise ValueError(f"train.learning_rate={self.learning_rate!r}; expected a positive number")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"train.momentum={self.momentum!r}; expected a value in [0, 1)")
        if not isinstance(self.blas_threads, (int, np.integer)) or self.blas_threads < 0:
            raise ValueError(f"train.blas_threads={self.blas_threads!r}; expected 0 (library default) or a positive integer")
        if self.engine not in ("numpy", "jax"):
            raise ValueError(f"train.engine={self.engine!r}; expected 'numpy' or 'jax'")
        if self.early_stopping not in ("none", "val_loss", "train_loss"):
            raise ValueError(
                f"train.early_stopping={self.early_stopping!r}; expected 'none', 'val_loss' or 'train_loss'"
            )

    @classmethod
    def reference(cls, **overrides) -> "TrainConfig":
        """The EvoPruneDeepTL recipe: up to 600 epochs, early stopping on training loss, patience 10."""
        return cls(**{"epochs": 600, "early_stopping": "train_loss", "patience": 10, **overrides})


@dataclasses.dataclass
class TrainedHead:
    """A trained compact head: active-unit indices and the weights between them.

    Attributes:
        spec: the full head's shape.
        masks: the decoded masks the head was trained with.
        indices: per boundary, the indices of the kept units in the full head (padded
            slots hold ``-1``; input padding reads a zero column).
        kernels: per layer, compact kernels ``(len(indices[l]), len(indices[l+1]))``.
        biases: per layer, compact biases or None.
        epochs_run: epochs actually trained (early stopping may end sooner).
    """

    spec: HeadSpec
    masks: HeadMasks
    indices: list[np.ndarray]
    kernels: list[np.ndarray]
    biases: list[np.ndarray | None]
    epochs_run: int

    def logits(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Pre-softmax outputs for full-width features ``x`` of shape ``(n, n_features)``."""
        x = np.asarray(x, dtype=np.float32)
        idx = np.where(self.indices[0] < 0, x.shape[1], self.indices[0])
        kernels = [k[None] for k in self.kernels]
        biases = [None if b is None else b[None, None] for b in self.biases]
        parts = [
            _forward_stack(kernels, biases, _with_zero_column(x[start : start + chunk])[:, idx][None])[0]
            for start in range(0, len(x), chunk)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.spec.n_classes), np.float32)

    def predict_proba(self, x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Softmax probabilities (optionally temperature-scaled) for full-width features."""
        return softmax(self.logits(x) / temperature)

    def full_weights(self) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Full-size kernels and biases (zeros where pruned), for a `MaskedDense` model."""
        kernels, biases = [], []
        widths = self.spec.widths
        for layer, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            rows, cols = self.indices[layer], self.indices[layer + 1]
            keep_r, keep_c = rows >= 0, cols >= 0
            full = np.zeros((widths[layer], widths[layer + 1]), dtype=np.float32)
            full[np.ix_(rows[keep_r], cols[keep_c])] = kernel[np.ix_(keep_r, keep_c)]
            kernels.append(full)
            if bias is None:
                biases.append(None)
            else:
                full_b = np.zeros(widths[layer + 1], dtype=np.float32)
                full_b[cols[keep_c]] = bias[keep_c]
                biases.append(full_b)
        return kernels, biases


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def training_flops(masks: HeadMasks, n_samples: int, epochs: int) -> float:
    """FLOPs to train the *active* head: forward, weight gradients and input gradients.

    Counted per sample as ``2*a*b`` for each of forward and weight-gradient matmuls of
    every layer with ``a`` active inputs and ``b`` active outputs, plus ``2*a*b`` for
    the input-gradient matmul of every layer but the first.
    """
    counts = [int(u.sum()) for u in masks.units]
    per_sample = 0.0
    for layer in range(len(counts) - 1):
        mult = 4 if layer == 0 else 6
        per_sample += mult * counts[layer] * counts[layer + 1]
    return per_sample * n_samples * epochs


@dataclasses.dataclass
class _Plan:
    """The compact, padded layout of one head."""

    indices: list[np.ndarray]  # per boundary, -1 = padding
    conn: dict[int, np.ndarray]  # compact connection masks (float32)
    key: tuple[int, ...]  # padded widths (group key)


def _round_up(n: int, bucket: int) -> int:
    return max(bucket, -(-n // bucket) * bucket)


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
        self.spec = spec
        self.data = data
        self.config = config
        self.seed = int(seed)
        self._x_train = _with_zero_column(np.asarray(data.x_train, dtype=np.float32))
        self._x_val = _with_zero_column(np.asarray(data.x_val, dtype=np.float32))
        self._y_train = np.asarray(data.y_train, dtype=np.int64)
        self._y_val = np.asarray(data.y_val, dtype=np.int64)
        self._init = self._initial_weights()

    def _initial_weights(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Glorot-uniform kernels for the full-size layers (as Keras would), zero biases."""
        rng = np.random.default_rng(derive_seed(self.seed, "init"))
        widths = self.spec.widths
        weights = []
        for layer in range(self.spec.n_layers):
            fan_in, fan_out = widths[layer], widths[layer + 1]
            limit = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
            kernel = (rng.random((fan_in, fan_out), dtype=np.float32) * 2 - 1) * limit
            has_bias = layer == self.spec.n_layers - 1 or self.spec.use_bias
            weights.append((kernel, np.zeros(fan_out, np.float32) if has_bias else None))
        return weights

    def plan(self, masks: HeadMasks) -> _Plan:
        """Compact layout of a head: active units per boundary, padded to the bucket."""
        bucket = self.config.bucket
        indices = []
        last = len(masks.units) - 1
        for boundary, units in enumerate(masks.units):
            active = np.flatnonzero(units)
            width = len(active) if boundary == last else _round_up(len(active), bucket)
            padded = np.full(width, -1, dtype=np.int64)
            padded[: len(active)] = active
            indices.append(padded)
        conn = {}
        for layer, mask in masks.connections.items():
            rows, cols = indices[layer], indices[layer + 1]
            compact = np.zeros((len(rows), len(cols)), dtype=np.float32)
            kr, kc = rows >= 0, cols >= 0
            compact[np.ix_(kr, kc)] = mask[np.ix_(rows[kr], cols[kc])]
            conn[layer] = compact
        key = tuple(len(i) for i in indices) + tuple(sorted(conn))
        return _Plan(indices, conn, key)

    def train(self, heads: Sequence[HeadMasks]) -> list[TrainedHead]:
        """Train every head; returns them in input order.

        Heads with the same padded shape are stacked into groups of at most
        ``config.group_size``; the result of each head does not depend on the grouping.
        """
        plans = [self.plan(m) for m in heads]
        order: dict[tuple, list[int]] = {}
        for i, plan in enumerate(plans):
            order.setdefault(plan.key, []).append(i)
        results: list[TrainedHead | None] = [None] * len(heads)
        size = self.config.group_size
        if self.config.engine == "jax":
            from evoprune_tf.train.jax_engine import train_group_jax

            train_group = functools.partial(train_group_jax, self)
        else:
            train_group = self._train_group
        with _blas_threads(self.config.blas_threads if self.config.engine == "numpy" else 0):
            for members in order.values():
                for start in range(0, len(members), size):
                    chunk = members[start : start + size]
                    trained = train_group([plans[i] for i in chunk], [heads[i] for i in chunk])
                    for i, head in zip(chunk, trained):
                        results[i] = head
        return results  # type: ignore[return-value]

    def _group_weights(self, plans: Sequence[_Plan]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        kernels, biases = [], []
        for layer, (full_k, full_b) in enumerate(self._init):
            stack = []
            for plan in plans:
                rows, cols = plan.indices[layer], plan.indices[layer + 1]
                kr, kc = rows >= 0, cols >= 0
                k = np.zeros((len(rows), len(cols)), dtype=np.float32)
                k[np.ix_(kr, kc)] = full_k[np.ix_(rows[kr], cols[kc])]
                if layer in plan.conn:
                    k *= plan.conn[layer]
                stack.append(k)
            kernels.append(np.stack(stack))
            biases.append(None if full_b is None else np.zeros((len(plans), 1, len(plans[0].indices[layer + 1])), np.float32))
        return kernels, biases

    def _train_group(self, plans: Sequence[_Plan], heads: Sequence[HeadMasks]) -> list[TrainedHead]:
        cfg = self.config
        n_heads = len(plans)
        n_layers = self.spec.n_layers
        kernels, biases = self._group_weights(plans)
        conn = [
            np.stack([p.conn[layer] for p in plans]) if layer in plans[0].conn else None
            for layer in range(n_layers)
        ]
        mom_k = [np.zeros_like(k) for k in kernels]
        mom_b = [None if b is None else np.zeros_like(b) for b in biases]
        scratch = [np.empty_like(k) for k in kernels]
        n_feat = self.spec.n_features
        in_idx = np.stack([np.where(p.indices[0] < 0, n_feat, p.indices[0]) for p in plans])
        full_input = in_idx.shape[1] == n_feat and bool((in_idx == np.arange(n_feat)).all())
        x_train_t = np.ascontiguousarray(self._x_train.T)  # (F+1, N): gathers rows, not columns
        y = self._y_train
        n = len(y)
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
                rows = perm[start : start + cfg.batch_size]
                b = len(rows)
                xb_t = x_train_t[:, rows]  # (F+1, b)
                if full_input:
                    a0_t = np.broadcast_to(xb_t[:n_feat], (n_heads, n_feat, b))
                else:
                    a0_t = xb_t[in_idx]  # (P, K0, b)
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
                picked = a[:, np.arange(b), y[rows]]
                epoch_loss += (np.log(sums[..., 0]) - np.log(picked)).sum(axis=1)
                a /= sums
                a[:, np.arange(b), y[rows]] -= 1.0
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
                if cfg.early_stopping == "val_loss":
                    monitored = self._val_loss(plans, kernels, biases)
                else:
                    monitored = epoch_loss / n
                improved = monitored < best - cfg.min_delta
                best = np.where(improved & active, monitored, best)
                wait = np.where(improved, 0, wait + 1)
                stopping = active & (wait >= cfg.patience)
                if stopping.any():
                    for layer in range(n_layers):
                        mom_k[layer][stopping] = 0
                        if mom_b[layer] is not None:
                            mom_b[layer][stopping] = 0
                    active &= ~stopping
                if not active.any():
                    break
        return unstack_heads(self.spec, plans, heads, kernels, biases, epochs_run)

    def _val_loss(self, plans, kernels, biases) -> np.ndarray:
        n_feat = self.spec.n_features
        in_idx = np.stack([np.where(p.indices[0] < 0, n_feat, p.indices[0]) for p in plans])
        logits = _forward_stack(kernels, biases, self._x_val.T[in_idx].transpose(0, 2, 1))
        return _cross_entropy(logits, self._y_val)


def unstack_heads(spec: HeadSpec, plans: Sequence[_Plan], heads: Sequence[HeadMasks], kernels: Sequence[np.ndarray],
                  biases: Sequence[np.ndarray | None], epochs_run: np.ndarray) -> list[TrainedHead]:
    """Split a group's stacked ``(P, ...)`` weights into one `TrainedHead` per head (NumPy copies)."""
    kernels = [np.asarray(k) for k in kernels]
    biases = [None if b is None else np.asarray(b) for b in biases]
    return [
        TrainedHead(
            spec=spec,
            masks=heads[p],
            indices=[idx.copy() for idx in plans[p].indices],
            kernels=[k[p].copy() for k in kernels],
            biases=[None if b is None else b[p, 0].copy() for b in biases],
            epochs_run=int(epochs_run[p]),
        )
        for p in range(len(plans))
    ]


def _blas_threads(threads: int):
    """Limit BLAS threads for a block (no-op for 0)."""
    if not threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


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


def _with_zero_column(x: np.ndarray) -> np.ndarray:
    """Append a zero feature: padded input slots read it, which makes padding inert."""
    return np.concatenate([x, np.zeros((len(x), 1), dtype=np.float32)], axis=1)


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
    """Mean cross-entropy per head of stacked logits ``(P, n, C)``."""
    z = logits - logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    picked = z[:, np.arange(len(y)), y]
    return (log_norm - picked).mean(axis=1)

