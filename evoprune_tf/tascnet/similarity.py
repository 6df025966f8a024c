"""Trajectory similarity, pair selection, the pair-similarity loss and pair pruning (TASCNet stage 2).

Steps 2-4 of TASCNet's filter pruning, as pure functions over NumPy arrays (plus one
Keras model wrapper for the loss term):

2. `select_pairs`: per layer, the cosine similarity between the filters' flattened
   weight trajectories (`evoprune_tf.tascnet.trajectories`), and the ``prune_percent``
   most similar *disjoint* pairs, chosen greedily from the most similar one
   (``order="least_similar"`` reproduces the authors' code, which sorts ascending).
3. `PairSimilarityModel`: wraps a model so that ``fit`` minimises
   ``loss + weight * exp(-sum of the pairs' cosine similarities)``, computed from the
   layers' *current* kernels with `keras.ops` (`PairSimilarityRegularizer`), which pulls
   each pair together before one of its members is removed.
4. `filters_to_remove`: in each pair, the filter with the smaller L1 norm goes
   (``mode="delete"``), or the pair is merged into the kept filter by an L1-weighted
   average (``mode="merge"``). The result's ``keep`` masks are what filter surgery takes.

Steps 2 and 3 live in `evoprune_tf.tascnet.pairs` and `evoprune_tf.tascnet.pair_model`;
their names stay importable from here, where users import them. The outer loop (fine-tune, prune, repeat while validation accuracy stays close to the
best) is then::

    recorder = KernelTrajectoryRecorder(min_filters=64)
    model.fit(x, y, epochs=3, callbacks=[recorder])
    pairs = select_pairs(recorder.trajectories(), prune_percent=5)
    wrapped = PairSimilarityModel(model, pairs, weight=1.0)
    wrapped.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    wrapped.fit(x, y, epochs=2)                      # trains `model`'s own variables
    plan = filters_to_remove(pairs, *conv_kernels(model, list(pairs)), mode="merge")
    assign_pruned_weights(model, plan)               # merged values into kept filters
    model = surgery(model, plan.keep)                # physical removal (evoprune_tf.nn)
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import keras
import numpy as np

from evoprune_tf.tascnet.pair_model import PairSimilarityModel, PairSimilarityRegularizer
from evoprune_tf.tascnet.pairs import (
    ORDERS,
    Pairs,
    check_pairs,
    cosine_similarity_matrix,
    n_pairs,
    pair_similarities,
    select_layer_pairs,
    select_pairs,
)
from evoprune_tf.tascnet.trajectories import find_conv_layers

__all__ = [
    "ORDERS",
    "PairPruning",
    "PairSimilarityModel",
    "PairSimilarityRegularizer",
    "assign_pruned_weights",
    "cosine_similarity_matrix",
    "filters_to_remove",
    "n_pairs",
    "pair_similarities",
    "select_layer_pairs",
    "select_pairs",
]


@dataclasses.dataclass
class PairPruning:
    """Which filters of each layer stay, and the weights to give the kept ones.

    Attributes:
        keep: ``{layer name: (filters,) bool}``, False for each removed filter: what
            filter surgery takes.
        removed: ``{layer name: [removed index of each pair, ...]}`` (pair order).
        kernels: ``{layer name: full-size kernel}``: in merge mode the kept member of
            each pair holds the L1-weighted average of the pair; otherwise unchanged
            copies. Removed filters keep their old values (surgery drops them).
        biases: the same for the biases (None for a layer without bias).
        mode: ``"delete"`` or ``"merge"``.
    """

    keep: dict[str, np.ndarray]
    removed: dict[str, list[int]]
    kernels: dict[str, np.ndarray]
    biases: dict[str, np.ndarray | None]
    mode: str

    @property
    def n_removed(self) -> int:
        """Filters removed over all layers."""
        return int(sum((~mask).sum() for mask in self.keep.values()))


def filters_to_remove(
    pairs: Pairs,
    kernels: Mapping[str, np.ndarray],
    biases: Mapping[str, np.ndarray | None] | None = None,
    *,
    mode: str = "delete",
) -> PairPruning:
    """Decide which filter of each pair goes, and (merge) the kept filter's new weights.

    The member with the smaller L1 norm of its kernel is removed (a tie removes the
    higher index). With ``mode="merge"`` the kept filter becomes
    ``(l1_a * w_a + l1_b * w_b) / (l1_a + l1_b)`` for kernel and bias alike (equal
    weights when both norms are 0); with ``mode="delete"`` it is left as it is.

    Args:
        pairs: ``{layer name: [(i, j), ...]}``, disjoint within each layer.
        kernels: ``{layer name: (*window, in, filters)}`` for every layer in ``pairs``
            (e.g. the first element of `conv_kernels`).
        biases: ``{layer name: (filters,) or None}`` (the second element of
            `conv_kernels`); None for no biases.
        mode: ``"delete"`` or ``"merge"``.

    Returns:
        The `PairPruning` (keep masks, removed indices, kernels and biases to assign).

    Raises:
        ValueError: an unknown mode, a layer missing from ``kernels``, an index out of
            range or a filter in two pairs.
    """
    if mode not in ("delete", "merge"):
        raise ValueError(f"mode={mode!r}; expected 'delete' or 'merge'")
    pairs = check_pairs(pairs)
    missing = [name for name in pairs if name not in kernels]
    if missing:
        raise ValueError(f"layers {missing} have pairs but no kernel; expected kernels for every paired layer")
    biases = biases or {}
    plan = PairPruning(keep={}, removed={}, kernels={}, biases={}, mode=mode)
    for name, layer_pairs in pairs.items():
        kernel = np.array(kernels[name], copy=True)
        bias = None if biases.get(name) is None else np.array(biases[name], copy=True)
        n_filters = kernel.shape[-1]
        bad = [p for p in layer_pairs if max(p) >= n_filters]
        if bad:
            raise ValueError(f"pairs {bad} of layer '{name}' index past its {n_filters} filters; expected smaller indices")
        rows = kernel.reshape(-1, n_filters)  # a view: writing a column writes the kernel
        l1 = np.abs(rows).sum(axis=0, dtype=np.float64)
        keep = np.ones(n_filters, dtype=bool)
        removed = []
        for i, j in layer_pairs:
            lo, hi = min(i, j), max(i, j)
            kept, gone = (lo, hi) if l1[lo] >= l1[hi] else (hi, lo)
            keep[gone] = False
            removed.append(gone)
            if mode == "merge":
                total = l1[kept] + l1[gone]
                w_kept, w_gone = (l1[kept] / total, l1[gone] / total) if total > 0 else (0.5, 0.5)
                rows[:, kept] = w_kept * rows[:, kept] + w_gone * rows[:, gone]
                if bias is not None:
                    bias[kept] = w_kept * bias[kept] + w_gone * bias[gone]
        plan.keep[name] = keep
        plan.removed[name] = removed
        plan.kernels[name] = kernel
        plan.biases[name] = bias
    return plan


def assign_pruned_weights(model: keras.Model, plan: PairPruning) -> None:
    """Write a plan's kernels and biases into the model's layers (merge mode's averages).

    Harmless in delete mode (the values are the model's own). Surgery then removes the
    filters that ``plan.keep`` marks False.

    Args:
        model: the model the plan was computed from.
        plan: the output of `filters_to_remove`.
    """
    if not plan.kernels:
        return
    for layer in find_conv_layers(model, layer_names=list(plan.kernels)):
        layer.kernel.assign(plan.kernels[layer.name].astype(layer.kernel.dtype))
        bias = plan.biases.get(layer.name)
        if bias is not None and layer.bias is not None:
            layer.bias.assign(bias.astype(layer.bias.dtype))
