"""``random_filters`` and ``uniform_width``: the two baselines without an importance criterion.

"Rethinking the Value of Network Pruning" (Liu et al., 2019) and "Revisiting Random
Channel Pruning" (Li et al., 2022) found both strong:

* ``random_filters``: random filters AND random layer widths. Every group draws a weight
  ``w ~ U(0, 1]`` and a random order of its filters; the filter at position ``k`` of ``n``
  scores ``(k + 0.5) / n / w``. One global ranking prunes the lowest, so at a threshold
  ``t`` a group loses the fraction ``min(1, t * w)`` of its filters, random ones: the
  pruning ratios of the groups are proportional to random weights. (An earlier draw,
  ``a * u`` with ``a, u ~ U(0, 1)``, pruned ``t / a`` of a group and emptied every group
  whose ``a`` fell below ``t``: at 56% of the FLOPs on RPS it left ``Conv_1`` one filter.)
* ``uniform_width``: every group keeps the same fraction (a uniformly thinner network,
  as a width multiplier), its kept filters drawn at random; against ``random_filters`` it
  isolates the choice of widths, against ``l1_filters`` (per layer) the choice of filters.

Both draw from the run seed (`evoprune_tf.train.config.derive_seed`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evoprune_tf.methods.filter_baselines.method import FilterBaseline
from evoprune_tf.methods.registry import register
from evoprune_tf.train.config import derive_seed

__all__ = ["RandomFilters", "UniformWidth"]


@register
class RandomFilters(FilterBaseline):
    """Random widths and random filters at the FLOPs target."""

    name = "random_filters"
    summary = "baseline: random filters and random layer widths at a FLOPs target, then retrain as DeepPruningES"
    scopes = ("global",)
    normalize_global = False

    def scores(self, model: Any, groups: list, *, config: Any, evaluator: Any = None) -> dict:
        """``(position + 0.5) / size / w_group``: a random order per group, a random weight ``w`` in (0, 1]."""
        rng = np.random.default_rng(derive_seed(config.seed, self.name))
        return {g.name: (rng.permutation(g.size) + 0.5) / g.size / (1.0 - rng.random()) for g in groups}


@register
class UniformWidth(FilterBaseline):
    """The same fraction of every group kept, its filters at random."""

    name = "uniform_width"
    summary = "baseline: every group keeps the same fraction (random filters) at a FLOPs target, then retrain"
    scopes = ("layer",)

    def scores(self, model: Any, groups: list, *, config: Any, evaluator: Any = None) -> dict:
        """A random permutation of every group's filters, from the run seed."""
        rng = np.random.default_rng(derive_seed(config.seed, self.name))
        return {g.name: rng.permutation(g.size).astype(np.float64) for g in groups}
