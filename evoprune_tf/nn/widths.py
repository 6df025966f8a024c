"""Group widths: rounding kept widths to a multiple of ``round_to``, and FLOPs of widths without surgery.

Which filters a group keeps does not change a pruned network's cost; only how many do.
`WidthFlops` therefore gives the kernel FLOPs (``2 x MACs``, as `count_flops`) of any
assignment of widths to coupling groups from one analysis of the unpruned model, with
no model rebuilt: a kernel layer's MACs are bilinear in its kept input and output
channels (a depthwise one linear in its input channels), so each is its unpruned MACs
scaled by the kept fractions. It equals ``count_flops(prune_filters(model, keep)).flops``
exactly (the tests check it) and lets a FLOPs target be hit by a binary search.

`round_width` and `round_masks` implement ``round_to = N``: every pruned group keeps a
multiple of N filters (8 is the usual choice for SIMD and accelerator kernels); a group
is either a multiple of N wide or left whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from evoprune_tf.nn.coupling.analysis import DEPTHWISE, PRODUCER, FilterGroup, analyse

__all__ = ["WidthFlops", "check_round_to", "filter_l1", "group_l1_norms", "round_masks", "round_width"]

L = keras.layers
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)


def check_round_to(round_to: object, key: str = "encoding.round_to") -> int:
    """``round_to`` as an int, or one line naming the bad value.

    Raises:
        ValueError: Not an integer of at least 1.
    """
    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise ValueError(f"{key}={round_to!r}; expected an integer of at least 1 (1: no rounding, 8: the usual "
                         "choice on hardware)")
    return int(round_to)


def round_width(kept: int, size: int, round_to: int) -> int:
    """The width a group keeps: ``kept`` rounded up to a multiple of ``round_to``, at most ``size``.

    Args:
        kept: Filters the criterion keeps (at least 1 is kept).
        size: Filters of the group.
        round_to: The multiple (1: no rounding).

    Returns:
        ``min(size, round_to * ceil(max(kept, 1) / round_to))``.
    """
    round_to = check_round_to(round_to, "round_to")
    kept = max(1, int(kept))
    return int(min(size, round_to * -(-kept // round_to)))


def filter_l1(layer: keras.layers.Layer) -> np.ndarray:
    """L1 norm of each output filter of a producer (the pointwise kernel of a separable convolution).

    Args:
        layer: A Conv, SeparableConv or Dense layer.

    Returns:
        One norm per output channel.
    """
    kernel = layer.pointwise_kernel if isinstance(layer, _SEPARABLE) else layer.kernel
    kernel = keras.ops.convert_to_numpy(kernel)
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def group_l1_norms(model: keras.Model, groups: Sequence[FilterGroup]) -> dict[str, np.ndarray]:
    """Per group, the L1 norm of each filter summed over the group's producers.

    Args:
        model: The model the groups come from.
        groups: Its coupling groups (`filter_groups`).

    Returns:
        Group name -> one norm per filter.
    """
    graph = analyse(model).graph
    return {g.name: sum(filter_l1(graph.by_name[p].layer) for p in g.producers) for g in groups}


def round_masks(masks: Mapping[str, np.ndarray], round_to: int,
                scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep masks whose widths are rounded up with `round_width`: the added filters are the best-scored dropped ones.

    Args:
        masks: Group name -> boolean keep mask.
        round_to: The multiple (1 returns copies of the masks).
        scores: Group name -> one score per filter (higher is kept first; ties: lower index).

    Returns:
        New masks, each keeping ``round_width(mask.sum(), mask.size, round_to)`` filters.
    """
    round_to = check_round_to(round_to, "round_to")
    out = {}
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=bool).copy()
        missing = round_width(int(mask.sum()), mask.size, round_to) - int(mask.sum())
        if missing > 0:
            dropped = np.flatnonzero(~mask)
            score = np.asarray(scores[name], dtype=np.float64)[dropped]
            order = np.lexsort((dropped, -score))
            mask[dropped[order[:missing]]] = True
        out[name] = mask
    return out


class WidthFlops:
    """Kernel FLOPs (``2 x MACs``) of a model for any widths of its coupling groups, without surgery.

    Args:
        model: The unpruned model (functional or Sequential).

    Attributes:
        groups: Every coupling group of the model, in order.
        full: The unpruned model's kernel FLOPs.
    """

    def __init__(self, model: keras.Model) -> None:
        analysis = analyse(model)
        self.groups = list(analysis.groups)
        self._index = {g.name: i for i, g in enumerate(self.groups)}
        self.sizes = np.array([g.size for g in self.groups], dtype=np.int64)
        nodes = [n for n in analysis.graph.nodes if n.call is not None and n.kind in (PRODUCER, DEPTHWISE)]
        row = {n.name: i for i, n in enumerate(nodes)}
        n_nodes, n_groups = len(nodes), len(self.groups)
        # dropped input (output) channels of node i = drop_in[i] @ (size - width)
        self._drop_in = np.zeros((n_nodes, n_groups), dtype=np.int64)
        self._drop_out = np.zeros((n_nodes, n_groups), dtype=np.int64)
        for j, g in enumerate(self.groups):
            for ref in (*g.consumers, *g.members):
                if ref.layer in row:
                    self._drop_in[row[ref.layer], j] += ref.repeats
            for p in g.producers:
                if p in row:
                    self._drop_out[row[p], j] = 1
        self._cin = np.zeros(n_nodes, dtype=np.int64)
        self._cout = np.zeros(n_nodes, dtype=np.int64)
        self._bilinear = np.zeros(n_nodes, dtype=np.int64)  # MACs per (input channel x output channel)
        self._linear = np.zeros(n_nodes, dtype=np.int64)  # MACs per input channel
        for i, node in enumerate(nodes):
            self._cin[i], self._cout[i], self._bilinear[i], self._linear[i] = _unit_macs(node)
        self.full = int(self.flops({}))

    def flops(self, widths: Mapping[str, int]) -> int:
        """Kernel FLOPs when each named group keeps ``widths[name]`` filters (others whole).

        Args:
            widths: Group name -> kept filters.

        Returns:
            ``2 x`` the kernel MACs of the pruned model.

        Raises:
            ValueError: An unknown group name.
        """
        dropped = np.zeros(len(self.groups), dtype=np.int64)
        for name, width in widths.items():
            if name not in self._index:
                raise ValueError(f"unknown filter group {name!r}: expected a name from filter_groups(model)")
            j = self._index[name]
            dropped[j] = self.sizes[j] - int(width)
        cin = self._cin - self._drop_in @ dropped
        cout = self._cout - self._drop_out @ dropped
        return int(2 * np.sum(self._bilinear * cin * cout + self._linear * cin))


def _unit_macs(node) -> tuple[int, int, int, int]:
    """``(input channels, output channels, MACs per cin x cout, MACs per cin)`` of one kernel call."""
    layer = node.layer
    out = tuple(int(d) for d in node.output.shape[1:])
    cin, cout = int(node.in_tensors[0].shape[-1]), out[-1]
    spatial = int(np.prod(out[:-1], dtype=np.int64))
    if node.kind == DEPTHWISE:
        multiplier = cout // cin
        return cin, cout, 0, spatial * int(np.prod(layer.kernel_size)) * multiplier
    if isinstance(layer, _SEPARABLE):
        m, k = layer.depth_multiplier, int(np.prod(layer.kernel_size))
        return cin, cout, spatial * m, spatial * m * k
    if isinstance(layer, L.Dense):
        return cin, cout, spatial, 0
    groups = getattr(layer, "groups", 1)
    k = int(np.prod(layer.kernel_size))
    if groups != 1:  # a grouped convolution's channels are never pruned: constant MACs
        return 1, 1, 0, spatial * k * (cin // groups) * cout
    return cin, cout, spatial * k, 0
