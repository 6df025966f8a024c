"""``taylor``: first-order Taylor importance on a few training batches (Molchanov et al., CVPR 2019).

"Importance Estimation for Neural Network Pruning" scores a filter by the squared
first-order change of the loss when its parameters are removed,
``I = (sum_s g_s * w_s)^2`` over the parameters ``s`` of the filter, accumulated over
mini-batches; the lowest are pruned under one global threshold. Here ``s`` runs over every
parameter of a coupling group's channel: its producers' output filter and bias, and
the per-channel weights it passes through (BatchNormalization gamma and beta, a
depthwise kernel and bias, PReLU alpha). The gradients are those of the cross-entropy of
the (warmed-up) network on ``algorithm.taylor_batches`` training batches of
``train.batch_size``, in inference mode; ``I`` is averaged over the batches.
``ranking = "layer"`` prunes the same fraction of every group instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evoprune_tf.methods.filter_baselines.method import FilterBaseline
from evoprune_tf.methods.registry import register
from evoprune_tf.train.config import derive_seed

__all__ = ["Taylor", "channel_contributions", "gradients", "taylor_scores"]

_PER_CHANNEL = ("gamma", "beta", "depthwise_kernel", "bias", "alpha")


def _per_channel(name: str, product: np.ndarray, channels: int | None = None) -> np.ndarray:
    """Sum of ``g * w`` per channel of the last axis (a depthwise kernel: per input channel)."""
    if name == "depthwise_kernel":  # (..., cin, multiplier)
        return product.reshape(-1, product.shape[-2], product.shape[-1]).sum(axis=(0, 2))
    if channels is not None and product.ndim == 1 and product.size != channels:  # depthwise bias (cin * mult)
        return product.reshape(channels, -1).sum(axis=1)
    return product.reshape(-1, product.shape[-1]).sum(axis=0)


def _group_variables(model: Any, group: Any) -> list[tuple[Any, str, int, bool]]:
    """``(variable, weight name, offset, is producer)`` of every parameter of the group's channels."""
    import keras

    from evoprune_tf.nn.coupling import analyse

    graph = analyse(model).graph
    out = []
    for p in group.producers:
        layer = graph.by_name[p].layer
        separable = isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D))
        out.append((layer.pointwise_kernel if separable else layer.kernel, "kernel", 0, True))
        if getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            out.append((layer.bias, "bias", 0, True))
    for ref in group.members:
        layer = graph.by_name[ref.layer].layer
        for w in layer.weights:
            if w.name in _PER_CHANNEL:
                out.append((w, w.name, ref.offset, False))
    return out


def gradients(model: Any, variables: Sequence[Any], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Gradients of the mean sparse cross-entropy of ``model(x, training=False)`` for ``variables``.

    Works on the TensorFlow and JAX backends.

    Raises:
        ValueError: Another Keras backend (one line).
    """
    import keras

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = [v.value for v in variables]
        with tf.GradientTape() as tape:
            tape.watch(values)
            loss = loss_fn(y, model(x, training=False))
        return [keras.ops.convert_to_numpy(g) for g in tape.gradient(loss, values)]
    if backend == "jax":
        import jax

        trainable, fixed = list(model.trainable_variables), list(model.non_trainable_variables)

        def loss_of(tv, ntv):
            pred, _ = model.stateless_call(tv, ntv, x, training=False)
            return loss_fn(y, pred)

        gt, gn = jax.grad(loss_of, argnums=(0, 1))([v.value for v in trainable], [v.value for v in fixed])
        by_id = {id(v): np.asarray(g) for v, g in zip(trainable + fixed, list(gt) + list(gn))}
        return [by_id[id(v)] for v in variables]
    raise ValueError(f"taylor needs gradients on the tensorflow or jax Keras backend; got {backend!r} "
                     "(set train.backend)")


def channel_contributions(entries: Sequence[tuple[Any, str, int, bool]], grads: Sequence[np.ndarray],
                          size: int) -> np.ndarray:
    """``sum_s g_s * w_s`` per channel of one group, from its variables and their gradients."""
    import keras

    total = np.zeros(size)
    for (variable, name, offset, producer), grad in zip(entries, grads):
        product = keras.ops.convert_to_numpy(variable).astype(np.float64) * np.asarray(grad, np.float64)
        if producer:
            total += _per_channel(name, product)
        else:
            channels = int(variable.shape[-2]) if name == "depthwise_kernel" else None
            total += _per_channel(name, product, channels)[offset:offset + size]
    return total


def taylor_scores(model: Any, groups: Sequence[Any], x: np.ndarray, y: np.ndarray, *, batch_size: int,
                  batches: int) -> dict[str, np.ndarray]:
    """Molchanov's ``(sum g * w)^2`` per channel, averaged over the first ``batches`` batches of ``(x, y)``.

    Args:
        model: A network ending in class probabilities (the evaluator's suffix: cut activations in).
        groups: Its searched `FilterGroup`s.
        x: Inputs of ``model``.
        y: Integer labels.
        batch_size: Samples per batch.
        batches: Batches averaged (fewer when the data runs out).
    """
    entries = {g.name: _group_variables(model, g) for g in groups}
    flat = [e for g in groups for e in entries[g.name]]
    acc = {g.name: np.zeros(g.size) for g in groups}
    n = 0
    for start in range(0, min(len(x), batches * batch_size), batch_size):
        grads = gradients(model, [e[0] for e in flat], x[start:start + batch_size], y[start:start + batch_size])
        i = 0
        for g in groups:
            k = len(entries[g.name])
            acc[g.name] += channel_contributions(entries[g.name], grads[i:i + k], g.size) ** 2
            i += k
        n += 1
    return {name: value / max(n, 1) for name, value in acc.items()}


@register
class Taylor(FilterBaseline):
    """Lowest first-order Taylor importance pruned under one global threshold."""

    name = "taylor"
    summary = "baseline: prune the lowest first-order Taylor importance (Molchanov et al. 2019), then retrain"
    scopes = ("global", "layer")
    normalize_global = False  # the paper ranks the raw importances
    needs_data = True
    reads = (*FilterBaseline.reads, "algorithm.taylor_batches")

    def validate(self, config: Any) -> list[str]:
        """The shared checks and ``algorithm.taylor_batches`` >= 1."""
        problems = super().validate(config)
        batches = config.algorithm.taylor_batches
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            problems.append(f"algorithm.taylor_batches={batches!r}; expected a positive integer")
        return problems

    def scores(self, model: Any, groups: list, *, config: Any, evaluator: Any = None) -> dict:
        """`taylor_scores` on the evaluator's suffix and shuffled training activations (``train.batch_size``)."""
        from evoprune_tf.nn.coupling import analyse

        by_name = analyse(model).group_by_name
        x, y = evaluator.activations["train"]
        batch, batches = config.train.batch_size, config.algorithm.taylor_batches
        picked = np.random.default_rng(derive_seed(config.seed, self.name)).permutation(len(y))[:batch * batches]
        return taylor_scores(model, [by_name[g.name] for g in groups], x[picked], y[picked], batch_size=batch,
                             batches=batches)
