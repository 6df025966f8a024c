"""``bn_scale``: prune the channels of smallest BatchNormalization scale, ranked globally (network slimming).

Liu et al., "Learning Efficient Convolutional Networks through Network Slimming" (2017),
rank every channel of the network by ``|gamma|`` of its BatchNormalization and prune
below one global threshold. A coupling group whose channels pass through several
BatchNormalization layers (a residual stage) scores ``sum |gamma|`` over them. The
paper also trains with an L1 penalty on gamma first; this baseline prunes the network as
it is (pretrained, head warmed up), as for every other criterion. ``ranking = "layer"``
prunes the same fraction of every group instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evoprune_tf.methods.filter_baselines.method import FilterBaseline
from evoprune_tf.methods.registry import register

__all__ = ["BnScale", "bn_gammas"]


def bn_gammas(model: Any, groups: list) -> dict[str, np.ndarray]:
    """Per group, ``sum |gamma|`` of every BatchNormalization its channels pass through.

    Raises:
        ValueError: A group with no BatchNormalization (that has a scale), named in one line.
    """
    import keras

    from evoprune_tf.nn.coupling import analyse

    graph = analyse(model).graph
    out = {}
    for g in groups:
        total = np.zeros(g.size)
        found = False
        for ref in g.members:
            layer = graph.by_name[ref.layer].layer
            if isinstance(layer, keras.layers.BatchNormalization) and layer.gamma is not None:
                gamma = keras.ops.convert_to_numpy(layer.gamma)
                total += np.abs(gamma[ref.offset:ref.offset + g.size])
                found = True
        if not found:
            raise ValueError(f"bn_scale: group {g.name!r} passes through no BatchNormalization with a scale; expected "
                             "one for every searched group (use l1_filters, or fewer encoding.blocks)")
        out[g.name] = total
    return out


@register
class BnScale(FilterBaseline):
    """Smallest-|gamma| channels pruned under one global threshold."""

    name = "bn_scale"
    summary = "baseline: prune the smallest BatchNorm gammas, ranked globally (Liu et al. 2017), then retrain"
    scopes = ("global", "layer")
    normalize_global = False  # network slimming thresholds the raw gammas

    def scores(self, model: Any, groups: list, *, config: Any, evaluator: Any = None) -> dict:
        """``sum |gamma|`` per channel (`bn_gammas`)."""
        return bn_gammas(model, groups)
