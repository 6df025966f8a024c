"""``fpgm``: prune the filters nearest the geometric median of their layer (He et al., CVPR 2019).

"Filter Pruning via Geometric Median" removes the filters that the others can best
replace: those closest to the layer's geometric median. As in the authors' code the
median is not computed; a filter's score is the sum of its Euclidean distances to the
other filters of its layer, and the smallest sums are pruned. A coupling group's
filters concatenate the kernels of all its producers. Per layer by default;
``ranking = "global"`` divides each group's sums by their mean first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evoprune_tf.methods.filter_baselines.method import FilterBaseline
from evoprune_tf.methods.registry import register

__all__ = ["Fpgm", "distance_sums"]


def distance_sums(filters: np.ndarray) -> np.ndarray:
    """``sum_j ||f_i - f_j||_2`` for every row ``f_i`` of ``filters`` (shape ``(n, d)``)."""
    f = np.asarray(filters, dtype=np.float64)
    sq = np.sum(f * f, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (f @ f.T), 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2).sum(axis=1)


def group_filters(model: Any, group: Any) -> np.ndarray:
    """The ``(size, d)`` filter vectors of a group: its producers' kernels, one row per output channel."""
    import keras

    from evoprune_tf.nn.coupling import analyse

    graph = analyse(model).graph
    parts = []
    for p in group.producers:
        layer = graph.by_name[p].layer
        kernel = layer.pointwise_kernel if isinstance(layer, (keras.layers.SeparableConv1D,
                                                              keras.layers.SeparableConv2D)) else layer.kernel
        kernel = keras.ops.convert_to_numpy(kernel)
        parts.append(kernel.reshape(-1, kernel.shape[-1]).T)
    return np.concatenate(parts, axis=1)


@register
class Fpgm(FilterBaseline):
    """Filters nearest the geometric median pruned, per layer by default."""

    name = "fpgm"
    summary = "baseline: prune the filters nearest the geometric median (He et al. 2019), then retrain"
    scopes = ("layer", "global")

    def scores(self, model: Any, groups: list, *, config: Any, evaluator: Any = None) -> dict:
        """Per filter, its summed distance to the group's other filters (`distance_sums`)."""
        return {g.name: distance_sums(group_filters(model, g)) for g in groups}
