"""The compact, padded layout of a pruned head, shared by every training engine.

A genome's head is trained *compacted*: pruned input features are gathered away and
pruned neurons removed, so a head with 20% of its features active does about 20% of
the first layer's arithmetic. Active counts are rounded up to a bucket so that compiled
shapes repeat across genomes; padded slots hold index ``-1`` and a zero kernel mask, so
they stay exactly inert (zero contribution, zero gradient).

Every head of a trainer starts from the same full-size initial weights, drawn once from
the seed (Glorot-uniform kernels as Keras draws them, zero biases), restricted to its
active units: fitness differences between genomes come from their masks alone.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

from evoprune_tf.encodings import HeadMasks, HeadSpec
from evoprune_tf.train.config import derive_seed

__all__ = ["HeadPlan", "RowSplit", "plan_head", "round_up", "initial_weights", "compact_weights", "input_indices",
           "with_zero_column", "train_by_shape"]

Trained = TypeVar("Trained")


@dataclasses.dataclass
class HeadPlan:
    """The compact, padded layout of one head.

    Attributes:
        indices: per boundary of `HeadSpec.widths`, the indices of the kept units in the
            full head, padded with ``-1``.
        conn: compact float32 connection masks ``{layer: (rows, cols)}`` (connection pruning).
        key: padded widths plus the layers with connection masks: heads with equal keys
            share compiled shapes and can be trained as one group.
    """

    indices: list[np.ndarray]
    conn: dict[int, np.ndarray]
    key: tuple[int, ...]

    @property
    def widths(self) -> tuple[int, ...]:
        """Padded widths at every boundary."""
        return tuple(len(i) for i in self.indices)

    def kernel_masks(self) -> list[np.ndarray]:
        """Compact float32 kernel masks: 1 on kept connections, 0 on padding and pruned ones."""
        masks = []
        for layer in range(len(self.indices) - 1):
            mask = np.outer(self.indices[layer] >= 0, self.indices[layer + 1] >= 0).astype(np.float32)
            if layer in self.conn:
                mask *= self.conn[layer]
            masks.append(mask)
        return masks


@dataclasses.dataclass(frozen=True)
class RowSplit:
    """A head's own training and validation rows, as indices into its trainer's train split.

    Resampled fitness trains one head per (genome, partition) in one call: the trainer
    holds the union of the partitions (train+validation) as its train split and every
    head says which rows it trains on and which it is validated on. A head trained on
    ``RowSplit(tr, va)`` equals a head trained by a trainer built on exactly those rows
    (same seed: the same mini-batch order, mapped to ``tr``).

    Attributes:
        train: int64 indices of the training rows, in the order the partition lists them.
        val: int64 indices of the validation rows (early stopping on ``val_loss``).
    """

    train: np.ndarray
    val: np.ndarray

    @property
    def sizes(self) -> tuple[int, int]:
        """``(n_train, n_val)``: heads with equal sizes share mini-batch shapes and train as one group."""
        return len(self.train), len(self.val)


def round_up(n: int, bucket: int) -> int:
    """``n`` rounded up to a positive multiple of ``bucket``.

    Args:
        n: a count (0 gives one bucket: a layer needs a non-empty kernel).
        bucket: the multiple.

    Returns:
        The padded width.
    """
    return max(bucket, -(-n // bucket) * bucket)


def plan_head(masks: HeadMasks, bucket: int) -> HeadPlan:
    """Compact layout of a head: active units per boundary, padded to the bucket.

    Args:
        masks: the decoded masks.
        bucket: pad hidden and input widths to a multiple of this (classes never padded).

    Returns:
        The plan.
    """
    indices = []
    last = len(masks.units) - 1
    for boundary, units in enumerate(masks.units):
        active = np.flatnonzero(units)
        width = len(active) if boundary == last else round_up(len(active), bucket)
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
    return HeadPlan(indices, conn, key)


def initial_weights(spec: HeadSpec, seed: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Glorot-uniform kernels for the full-size layers (as Keras draws them), zero biases.

    Args:
        spec: the full head.
        seed: the trainer's seed (the draw uses ``derive_seed(seed, "init")``).

    Returns:
        One ``(kernel, bias or None)`` per layer; hidden layers have a bias only with
        ``spec.use_bias``, the output layer always.
    """
    rng = np.random.default_rng(derive_seed(seed, "init"))
    widths = spec.widths
    weights = []
    for layer in range(spec.n_layers):
        fan_in, fan_out = widths[layer], widths[layer + 1]
        limit = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
        kernel = (rng.random((fan_in, fan_out), dtype=np.float32) * 2 - 1) * limit
        has_bias = layer == spec.n_layers - 1 or spec.use_bias
        weights.append((kernel, np.zeros(fan_out, np.float32) if has_bias else None))
    return weights


def compact_weights(
    full: Sequence[tuple[np.ndarray, np.ndarray | None]], plan: HeadPlan
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """The full-size weights restricted to a plan's kept units (zeros in padded slots).

    Kernels are multiplied by the plan's connection masks, so pruned entries are stored
    as zeros from the start.

    Args:
        full: ``(kernel, bias or None)`` per layer at full size.
        plan: the head's layout.

    Returns:
        Compact kernels and biases, one per layer.
    """
    kernels, biases = [], []
    for layer, (full_k, full_b) in enumerate(full):
        rows, cols = plan.indices[layer], plan.indices[layer + 1]
        kr, kc = rows >= 0, cols >= 0
        k = np.zeros((len(rows), len(cols)), dtype=np.float32)
        k[np.ix_(kr, kc)] = full_k[np.ix_(rows[kr], cols[kc])]
        if layer in plan.conn:
            k *= plan.conn[layer]
        kernels.append(k)
        if full_b is None:
            biases.append(None)
        else:
            b = np.zeros(len(cols), dtype=np.float32)
            b[kc] = full_b[cols[kc]]
            biases.append(b)
    return kernels, biases


def input_indices(plan: HeadPlan, n_features: int) -> np.ndarray:
    """Column of every compact input in features extended by `with_zero_column` (padding reads the zero column)."""
    return np.where(plan.indices[0] < 0, n_features, plan.indices[0])


def with_zero_column(x: np.ndarray) -> np.ndarray:
    """Append a zero feature: padded input slots read it, which makes padding inert.

    Args:
        x: features ``(n, n_features)``.

    Returns:
        float32 ``(n, n_features + 1)``.
    """
    x = np.asarray(x, dtype=np.float32)
    return np.concatenate([x, np.zeros((len(x), 1), dtype=np.float32)], axis=1)


def train_by_shape(
    plans: Sequence[HeadPlan],
    heads: Sequence[HeadMasks],
    train_group: Callable[..., Sequence[Trained]],
    chunks: Callable[[list[int]], Iterable[Sequence[int]]],
    rows: Sequence[RowSplit] | None = None,
) -> list[Trained]:
    """Train heads in groups of equal compact shape (equal `HeadPlan.key`), results in input order.

    The grouping is the engines' shared part; how a shape's heads are cut into groups
    (``chunks``) and how a group trains (``train_group``) is each engine's own. With
    ``rows`` (one `RowSplit` per head), heads are grouped by shape *and* partition size,
    so a group's mini-batches have one shape and every head's arithmetic is what a
    trainer built on its own rows would do (no padding between partitions).

    Args:
        plans: one plan per head.
        heads: the heads' masks.
        train_group: trains one group: ``(plans, masks)``, or ``(plans, masks, rows)``
            when ``rows`` is given -> its trained heads, in order.
        chunks: cuts the indices of one group's heads into groups.
        rows: optional per-head training/validation rows.

    Returns:
        One trained head per entry of ``heads``.
    """
    order: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        key = plan.key if rows is None else (plan.key, rows[i].sizes)
        order.setdefault(key, []).append(i)
    results: list = [None] * len(heads)
    for members in order.values():
        for chunk in chunks(members):
            args = ([plans[i] for i in chunk], [heads[i] for i in chunk])
            if rows is not None:
                args += ([rows[i] for i in chunk],)
            for i, head in zip(chunk, train_group(*args)):
                results[i] = head
    return results
