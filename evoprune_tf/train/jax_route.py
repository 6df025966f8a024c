"""The JAX route of the Keras engine: a group of same-shape heads as one vmapped, jitted program.

``jax.vmap`` over ``model.stateless_call`` and ``optimizer.stateless_apply`` with
per-head stacked variables, ``jax.lax.scan`` over mini-batches and epochs. The route
protocol (``fit``, ``val_loss``, ``snapshot``, ``merge``, ``restore``, ``heads``) is the
one `evoprune_tf.train.keras_engine.KerasTrainer` drives for every route.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evoprune_tf.train.heads import TrainedHead

__all__ = ["JaxRoute", "heads_vmap", "on_device"]


class JaxRoute:
    """A group of heads as one vmapped, jitted program on the JAX backend."""

    def __init__(self, trainer: Any, entry: Any, values, in_idx: np.ndarray, full_input: bool,
                 own: Any = None) -> None:
        self.t, self.entry, self.full_input, self.own = trainer, entry, full_input, own
        p = len(values)
        tv = [on_device(np.stack([v[0][i] for v in values])) for i in range(len(values[0][0]))]
        ntv = [on_device(np.stack([v[1][i] for v in values])) for i in range(len(values[0][1]))]
        ov = [on_device(np.broadcast_to(o, (p, *o.shape))) for o in entry.optimizer_init]
        self.state = (tv, ntv, ov)
        self.in_idx = on_device(in_idx)
        self.data = trainer._device.get("jax")
        if self.data is None:
            self.data = trainer._device["jax"] = {
                "x": on_device(trainer._x_train), "t": on_device(trainer._targets(trainer._y_train)),
                "sw": on_device(trainer._sample_weight), "real": on_device(trainer._real()),
                "x_val": on_device(trainer._x_val), "t_val": on_device(trainer._targets(trainer._y_val)),
            }
        if own is not None:
            self.own_sw, self.own_val = on_device(own.sample_weight), on_device(own.val)
            self.own_real = on_device(trainer._real(own.n))
        self.key = key = ("jax", full_input, own is not None)
        if key not in entry.functions:
            entry.functions[key] = _jax_functions(entry, trainer._loss, full_input, own_rows=own is not None)
        self.fns = entry.functions[key]

    def fit(self, rows: np.ndarray, active: np.ndarray) -> np.ndarray:
        d = self.data
        on = on_device(np.asarray(active, np.float32))
        if self.own is None:
            self.state, losses = self._run("train", self.state, d["x"], d["t"], d["sw"], d["real"], self.in_idx,
                                                   on_device(rows), on)
        else:  # per-head rows (epochs, n_batches, P, batch) gathered inside the vmapped step
            self.state, losses = self._run("train", self.state, d["x"], d["t"], self.own_sw, self.own_real,
                                                   self.in_idx, on_device(self.own.heads_rows(rows)), on)
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
        return self._run("merge", old, new, on_device(np.asarray(mask, bool)))

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


def _jax_functions(entry: Any, loss_obj: Any, full_input: bool, own_rows: bool = False) -> dict[str, Any]:
    """The jitted group programs; with ``own_rows`` every head gathers its own mini-batch and validation rows."""
    import jax
    import jax.numpy as jnp

    model = entry.model

    def inputs(xb, in_idx):
        return xb[:, :-1] if full_input else jnp.take(xb, in_idx, axis=1)

    step_on = _step_function(model, entry.optimizer, loss_obj)

    def val_one(tv, ntv, x_val, t_val, in_idx):
        pred, _, losses = model.stateless_call(tv, ntv, inputs(x_val, in_idx), training=False, return_losses=True)
        loss = jnp.mean(loss_obj(t_val, pred))
        for extra in losses:
            loss = loss + extra
        return loss

    def merge(old, new, mask):  # early stopping's best state: head p from `new` where mask[p]
        return jax.tree_util.tree_map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), b, a),
                                      old, new)

    # Jitted here, per entry, rather than run as eager `jnp` ops: eager ops compile
    # programs that JAX's global caches keep for the process, whereas these die with the
    # entry when the LRU evicts it.
    if not own_rows:
        train = _shared_rows_train(step_on, inputs, full_input)
        return {"train": jax.jit(train), "val": jax.jit(heads_vmap(val_one, (0, 0, None, None, 0))),
                "merge": jax.jit(merge)}

    def val_own(tv, ntv, x, t, rows, in_idx):
        return val_one(tv, ntv, x[rows], t[rows], in_idx)

    return {"train": jax.jit(_own_rows_train(step_on, full_input)),
            "val": jax.jit(heads_vmap(val_own, (0, 0, None, None, 0, 0))), "merge": jax.jit(merge)}


def _step_function(model: Any, optimizer: Any, loss_obj: Any) -> Any:
    """One optimizer step of one head on its compact inputs; a stopped head keeps its state exactly."""
    import jax
    import jax.numpy as jnp

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

    return step_on


def _shared_rows_train(step_on: Any, inputs: Any, full_input: bool) -> Any:
    """The group's training loop over epochs and mini-batches, every head on the same rows."""
    import jax
    import jax.numpy as jnp

    def step(tv, ntv, ov, xb_full, tb, wb, n_real, in_idx, active):
        return step_on(tv, ntv, ov, inputs(xb_full, in_idx), tb, wb, n_real, active)

    # Full-width inputs go in head-major, broadcast to (P, batch, in): every product is then
    # a plain batched GEMM. A shared 2-D input would make XLA transpose the stacked kernels
    # (P, in, out) to (in, P, out) and back in every step (neuron pruning: 1.6x slower).
    vstep = heads_vmap(step_on, (0, 0, 0, 0, None, None, None, 0)) if full_input else \
        heads_vmap(step, (0, 0, 0, None, None, None, None, 0, 0))

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

    return train


def _own_rows_train(step_on: Any, full_input: bool) -> Any:
    """The group's training loop where every head gathers its own mini-batch rows.

    Per-head rows: x and targets shared (in_axes None), a head's rows and sample
    weights its own (in_axes 0); the gathered batch is what the shared path gathers,
    taken in one gather (rows x active columns), not a full-width copy per head first.
    """
    import jax
    import jax.numpy as jnp

    def own_inputs(x, r, in_idx):
        return x[r, :-1] if full_input else x[r[:, None], in_idx[None, :]]

    def own_step(tv, ntv, ov, x, t, sw, r, rw, n_real, in_idx, active):
        return step_on(tv, ntv, ov, own_inputs(x, r, in_idx), t[r], sw[r] * rw, n_real, active)

    vstep_own = heads_vmap(own_step, (0, 0, 0, None, None, 0, 0, None, None, 0, 0))

    def train_own(state, x, t, sw, real, in_idx, rows, active):
        def one_batch(carry, xs):
            r, rw = xs
            tv, ntv, ov, loss = vstep_own(*carry, x, t, sw, r, rw, jnp.sum(rw), in_idx, active)
            return (tv, ntv, ov), loss

        def one_epoch(carry, epoch_rows):
            return jax.lax.scan(one_batch, carry, (epoch_rows, real))

        return jax.lax.scan(one_epoch, state, rows)

    return train_own


def heads_vmap(fn: Any, in_axes: tuple[int | None, ...]) -> Any:
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


def on_device(a: np.ndarray) -> Any:
    """A NumPy array as a JAX array, by a plain transfer.

    Not ``jnp.asarray``: that stages the value through a small compiled program per
    shape and dtype, which JAX's global caches keep for the life of the process (5 per
    group shape; measured: a third of the JAX engine's peak-RSS growth over 500
    evaluations of distinct genomes).
    """
    import jax

    return jax.device_put(np.ascontiguousarray(a))
