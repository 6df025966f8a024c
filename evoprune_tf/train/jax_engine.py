"""The JAX engine of `HeadTrainer`: a group of heads as one jitted, stacked computation.

`HeadTrainer.train` calls `train_group_jax` for every group when
``TrainConfig(engine="jax")``. The maths is exactly that of the NumPy reference
(`HeadTrainer._train_group`): the same shared initial weights, the same mini-batch
order, ReLU hidden layers, softmax cross-entropy, Keras' SGD (Nesterov) update with the
learning rate folded into the output gradient, connection masks on the gradients, and
per-head early stopping (a stopped head gets zero gradients and zero momentum). Only
the execution differs:

* the P heads of a group are stacked, ``(P, in, out)`` kernels, and every layer is one
  ``jnp.einsum`` over the stack (a batched GEMM: one pass for a whole population on a
  GPU); every head has its own loss, so the gradients stay independent;
* a whole epoch (with no early stopping: the whole training) is one jitted function,
  ``lax.scan`` over mini-batches; the epoch's index array is padded to full batches and
  the padded rows get a zero weight, so the last partial batch needs no second shape;
* backprop is written by hand, in the same order of operations as the NumPy engine, so
  a genome's logits agree with the NumPy engine's to float32 rounding (~1e-6) alone, in
  any group and in any order.

Jitted functions are cached per static structure (layers, biases, connection masks,
optimizer constants); JAX keeps one compiled executable per input shape, i.e. per
(group size, padded widths). Round widths with ``TrainConfig.bucket`` (e.g. 64) so that
shapes recur across generations instead of compiling one executable per genome.

Matrix products run at ``MATMUL_PRECISION`` (``"highest"``: true float32, also on GPUs
whose default would be TF32), which is what keeps the 1e-5 agreement with NumPy; set
it to ``"default"`` to trade that for TF32 speed on Ampere-or-newer GPUs.

JAX is imported when the engine is first used, never at import time of this module.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Sequence

import numpy as np

from evoprune_tf.encodings import HeadMasks
from evoprune_tf.train.numpy_engine import HeadTrainer, TrainedHead, _Plan, derive_seed, unstack_heads

__all__ = ["train_group_jax", "jax_available", "MATMUL_PRECISION", "PAD_GROUPS"]

#: ``jax.lax.Precision`` name used for every matmul (see the module docstring).
MATMUL_PRECISION = "highest"

#: Pad a group's head count to the next power of two with inert heads, so that groups
#: of 3, 4, ... heads share one executable (fewer compilations, more wasted arithmetic).
#: ``"auto"``: only on accelerators, where the extra heads are nearly free; True / False.
PAD_GROUPS: bool | str = "auto"

# Each trainer's arrays on the default device, transferred once (not pickled with it).
_DEVICE_DATA: "weakref.WeakKeyDictionary[HeadTrainer, dict[str, Any]]" = weakref.WeakKeyDictionary()

_INSTALL_HINT = "train.engine='jax' needs JAX: pip install jax (or the extra: pip install 'evoprune-tf[jax]')"


def jax_available() -> bool:
    """True when JAX can be imported."""
    try:
        _import_jax()
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _import_jax() -> tuple[Any, Any]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_INSTALL_HINT} ({error})") from None
    jax.config.update("jax_enable_x64", False)  # float32 everywhere (the JAX default)
    return jax, jnp


def train_group_jax(trainer: HeadTrainer, plans: Sequence[_Plan], heads: Sequence[HeadMasks]) -> list[TrainedHead]:
    """Train one group of heads (same padded shape) as one stacked JAX computation.

    Args:
        trainer: the calling trainer (data, spec, config, seed, initial weights).
        plans: the heads' compact layouts (`HeadTrainer.plan`), all with the same key.
        heads: the heads' masks, returned in the `TrainedHead` objects.

    Returns:
        One `TrainedHead` per plan, in order, holding NumPy arrays.

    Raises:
        ImportError: JAX is not installed.
    """
    jax, jnp = _import_jax()
    cfg = trainer.config
    spec = trainer.spec
    n_heads = len(plans)
    n_layers = spec.n_layers
    n_feat = spec.n_features
    data = _device_data(trainer, jnp)

    pad = PAD_GROUPS if PAD_GROUPS != "auto" else jax.default_backend() != "cpu"
    stacked = list(plans)
    if pad:  # inert copies of the first head (never active): only the shape changes
        stacked += [plans[0]] * ((1 << (n_heads - 1).bit_length()) - n_heads)
    n_stack = len(stacked)
    kernels, biases = trainer._group_weights(stacked)
    conn = [
        np.stack([p.conn[layer] for p in stacked]) if layer in plans[0].conn else None
        for layer in range(n_layers)
    ]
    in_idx = np.stack([np.where(p.indices[0] < 0, n_feat, p.indices[0]) for p in stacked]).astype(np.int32)
    full_input = in_idx.shape[1] == n_feat and bool((in_idx == np.arange(n_feat)).all())

    fns = _functions(
        n_layers=n_layers,
        has_bias=tuple(b is not None for b in biases),
        has_conn=tuple(c is not None for c in conn),
        full_input=full_input,
        nesterov=bool(cfg.nesterov),
        momentum=float(np.float32(cfg.momentum)),
        precision=MATMUL_PRECISION,
    )
    state = (
        tuple(jnp.asarray(k) for k in kernels),
        tuple(None if b is None else jnp.asarray(b) for b in biases),
        tuple(jnp.zeros(k.shape, jnp.float32) for k in kernels),
        tuple(None if b is None else jnp.zeros(b.shape, jnp.float32) for b in biases),
    )
    conn_d = tuple(None if c is None else jnp.asarray(c) for c in conn)
    idx_d = None if full_input else jnp.asarray(in_idx)

    n = len(trainer._y_train)
    batch = cfg.batch_size
    n_batches = -(-n // batch)
    # Per-row gradient scale lr / b (0 on padded rows): as the NumPy engine's `dz *= lr / b`.
    lr = np.float32(cfg.learning_rate)
    scale = np.zeros((n_batches, batch), np.float32)
    for i in range(n_batches):
        b = min(batch, n - i * batch)
        scale[i, :b] = lr / np.float32(b)
    scale_d = jnp.asarray(scale)
    order_rng = np.random.default_rng(derive_seed(trainer.seed, "batches"))

    def epoch_rows(count: int) -> np.ndarray:
        rows = np.zeros((count, n_batches * batch), np.int32)
        for e in range(count):
            rows[e, :n] = order_rng.permutation(n)
        return rows.reshape(count, n_batches, batch)

    def device_active(active: np.ndarray) -> Any:
        flags = np.zeros(n_stack, np.float32)
        flags[:n_heads] = active
        return jnp.asarray(flags)

    epochs_run = np.zeros(n_heads, dtype=np.int64)
    if cfg.early_stopping == "none":
        # One call trains every epoch (scan over epochs of scans over batches).
        state, _ = fns.train(state, data["x"], data["y"], idx_d, conn_d, jnp.asarray(epoch_rows(cfg.epochs)),
                             scale_d, device_active(np.ones(n_heads, bool)))
        epochs_run[:] = cfg.epochs
    else:
        active = np.ones(n_heads, dtype=bool)
        best = np.full(n_heads, np.inf)
        wait = np.zeros(n_heads, dtype=np.int64)
        for _ in range(cfg.epochs):
            epochs_run += active
            state, losses = fns.train(state, data["x"], data["y"], idx_d, conn_d, jnp.asarray(epoch_rows(1)),
                                      scale_d, device_active(active))
            if cfg.early_stopping == "val_loss":
                monitored = np.asarray(fns.val_loss(state[0], state[1], data["x_val"], data["y_val"], idx_d),
                                       dtype=np.float32)[:n_heads]
            else:
                epoch_loss = np.zeros(n_heads, dtype=np.float64)
                for row in np.asarray(losses)[0, :, :n_heads]:  # batch order, float64 sums, as NumPy
                    epoch_loss += row
                monitored = epoch_loss / n
            improved = monitored < best - cfg.min_delta
            best = np.where(improved & active, monitored, best)
            wait = np.where(improved, 0, wait + 1)
            stopping = active & (wait >= cfg.patience)
            if stopping.any():
                keep = jnp.asarray(np.concatenate([~stopping, np.ones(n_stack - n_heads, bool)]),
                                   jnp.float32)[:, None, None]
                ks, bs, mks, mbs = state
                state = (ks, bs, tuple(m * keep for m in mks), tuple(None if m is None else m * keep for m in mbs))
                active &= ~stopping
            if not active.any():
                break

    return unstack_heads(spec, plans, heads, state[0], state[1], epochs_run)


def _device_data(trainer: HeadTrainer, jnp: Any) -> dict[str, Any]:
    """The trainer's arrays on the default device, transferred once per trainer."""
    cached = _DEVICE_DATA.get(trainer)
    if cached is None:
        cached = {
            "x": jnp.asarray(trainer._x_train),  # (N, F+1): the last column is zero (padding)
            "y": jnp.asarray(trainer._y_train.astype(np.int32)),
            "x_val": jnp.asarray(trainer._x_val),
            "y_val": jnp.asarray(trainer._y_val.astype(np.int32)),
        }
        _DEVICE_DATA[trainer] = cached
    return cached


class _Functions:
    """The jitted training and validation-loss functions of one static structure."""

    def __init__(self, train: Any, val_loss: Any) -> None:
        self.train = train
        self.val_loss = val_loss


@functools.lru_cache(maxsize=64)
def _functions(
    *,
    n_layers: int,
    has_bias: tuple[bool, ...],
    has_conn: tuple[bool, ...],
    full_input: bool,
    nesterov: bool,
    momentum: float,
    precision: str,
) -> _Functions:
    jax, jnp = _import_jax()
    prec = jax.lax.Precision[precision.upper()]
    mu = np.float32(momentum)

    def einsum(spec: str, a: Any, b: Any) -> Any:
        return jnp.einsum(spec, a, b, precision=prec)

    def _inputs(xb: Any, in_idx: Any, n_stack: int) -> Any:
        # (P, n, K0) head inputs, head-major so that every einsum is a plain batched GEMM
        # (a shared 2-D operand would make XLA transpose the stacked kernels every step).
        if full_input:
            return jnp.broadcast_to(xb[None, :, :-1], (n_stack, xb.shape[0], xb.shape[1] - 1))
        return jnp.transpose(jnp.take(xb, in_idx, axis=1), (1, 0, 2))

    def update(w: Any, m: Any, g: Any) -> tuple[Any, Any]:
        # Keras SGD with the learning rate already in g: m <- mu*m - g; w <- w + mu*m - g.
        m = m * mu - g
        return (w + (m * mu - g) if nesterov else w + m), m

    def step(state, x, y, in_idx, conn, rows, scale, active):
        ks, bs, mks, mbs = state
        yb = y[rows]
        a0 = _inputs(x[rows], in_idx, ks[0].shape[0])  # (P, B, K0)
        acts = [a0]
        for layer in range(n_layers):
            z = einsum("pbk,pkh->pbh", acts[layer], ks[layer])
            if has_bias[layer]:
                z = z + bs[layer]
            if layer < n_layers - 1:
                acts.append(jnp.maximum(z, 0))
        # softmax cross-entropy, as the NumPy engine: dz = lr/b * (softmax - onehot)
        z = z - jnp.max(z, axis=-1, keepdims=True)
        e = jnp.exp(z)
        sums = jnp.sum(e, axis=-1, keepdims=True)
        onehot = (jnp.arange(z.shape[-1])[None, :] == yb[:, None]).astype(z.dtype)  # (B, C)
        picked = jnp.sum(e * onehot, axis=-1)
        real = (scale > 0).astype(z.dtype)
        batch_loss = jnp.sum((jnp.log(sums[..., 0]) - jnp.log(picked)) * real, axis=1)  # (P,)
        dz = (e / sums - onehot) * scale[None, :, None] * active[:, None, None]
        new_k, new_b, new_mk, new_mb = list(ks), list(bs), list(mks), list(mbs)
        for layer in range(n_layers - 1, -1, -1):
            grad = einsum("pbk,pbh->pkh", acts[layer], dz)
            if layer > 0:
                dz_prev = jnp.where(acts[layer] > 0, einsum("pbh,pkh->pbk", dz, ks[layer]), 0)
            if has_conn[layer]:
                grad = grad * conn[layer]
            new_k[layer], new_mk[layer] = update(ks[layer], mks[layer], grad)
            if has_bias[layer]:
                new_b[layer], new_mb[layer] = update(bs[layer], mbs[layer], jnp.sum(dz, axis=1, keepdims=True))
            if layer > 0:
                dz = dz_prev
        return (tuple(new_k), tuple(new_b), tuple(new_mk), tuple(new_mb)), batch_loss

    def train(state, x, y, in_idx, conn, rows, scale, active):
        """Epochs ``rows: (E, n_batches, B)``; returns the state and losses ``(E, n_batches, P)``."""

        def one_batch(carry, xs):
            batch_rows, batch_scale = xs
            return step(carry, x, y, in_idx, conn, batch_rows, batch_scale, active)

        def one_epoch(carry, epoch_rows):
            return jax.lax.scan(one_batch, carry, (epoch_rows, scale))

        return jax.lax.scan(one_epoch, state, rows)

    def val_loss(ks, bs, x_val, y_val, in_idx):
        """Mean validation cross-entropy per head."""
        a = _inputs(x_val, in_idx, ks[0].shape[0])
        for layer in range(n_layers):
            a = einsum("pnk,pkh->pnh", a, ks[layer])
            if has_bias[layer]:
                a = a + bs[layer]
            if layer < n_layers - 1:
                a = jnp.maximum(a, 0)
        z = a - jnp.max(a, axis=-1, keepdims=True)
        log_norm = jnp.log(jnp.sum(jnp.exp(z), axis=-1))
        picked = jnp.take_along_axis(z, y_val[None, :, None], axis=-1)[..., 0]
        return jnp.mean(log_norm - picked, axis=1)

    donate = (0,) if jax.default_backend() != "cpu" else ()
    return _Functions(jax.jit(train, donate_argnums=donate), jax.jit(val_loss))
