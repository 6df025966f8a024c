"""Filter encoding: one bit per prunable filter of the searched blocks of a Keras network.

`FilterPruning` is DeepPruningES' genome: a boolean vector laid out group after group
(coupling groups of `evoprune_tf.nn.coupling`, topological order), one bit per filter of
every prunable group whose first producer lies in the last ``blocks`` blocks of the
network (or in all of them). Decoding gives the keep masks that
`evoprune_tf.nn.surgery.prune_filters` takes, ``{group name: bool mask}``; a group whose
bits are all zero is repaired to keep its strongest filter (the reference does the same)
and the repair is counted. With ``round_to = N`` every group's kept width is then rounded up
to a multiple of N (or the whole group), adding back its dropped filters of largest L1
norm (`evoprune_tf.nn.widths.round_masks`).

It is not an `evoprune_tf.encodings.Encoding`: that ABC is tied to a dense `HeadSpec`.
It offers what `evoprune_tf.search.toolbox.build_toolbox` and the evaluators need
(``genome_length``, ``validate``, ``decode``, ``active_fraction``, ``describe``,
``config``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import keras
import numpy as np

from evoprune_tf.encodings import binary_genome
from evoprune_tf.nn.coupling import FilterGroup, filter_groups, model_blocks, select_groups
from evoprune_tf.nn.cut import cut_points
from evoprune_tf.nn.surgery import repair_masks
from evoprune_tf.nn.widths import check_round_to, group_l1_norms, round_masks

__all__ = ["FILTER_ENCODING", "FilterPruning", "searchable_blocks"]

#: The config name of this encoding (``encoding.name``).
FILTER_ENCODING = "filters"

Blocks = int | Literal["all"]


def searchable_blocks(model: keras.Model, groups: Sequence[FilterGroup] | None = None) -> list[str]:
    """Names of the blocks that ``blocks=K`` counts, last one last.

    These are the blocks of `model_blocks` that hold a producer of some group, without
    the trailing ones that hold no *prunable* group (a softmax head's Dense block): so
    ``blocks=1`` on MobileNetV2 plus a head is ``Conv_1``, not the head.

    Args:
        model: A built functional model (backbone and head).
        groups: Its groups (default: `filter_groups(model)`).

    Returns:
        Block names in topological order.
    """
    groups = list(filter_groups(model) if groups is None else groups)
    starts = {g.index for g in groups}
    prunable_starts = {g.index for g in groups if g.prunable}
    blocks = [b for b in model_blocks(model) if any(b.start <= s < b.stop for s in starts)]
    while blocks and not any(blocks[-1].start <= s < blocks[-1].stop for s in prunable_starts):
        blocks.pop()
    return [b.name for b in blocks]


class FilterPruning:
    """One bit per prunable filter of the last ``blocks`` blocks of ``model``.

    Args:
        model: The whole network (flat functional backbone plus head), channels-last.
        blocks: How many trailing blocks are searched (see `searchable_blocks`), or
            ``"all"`` for every prunable group.
        round_to: Decoded widths are rounded up to a multiple of this (1: as the genome says).

    Raises:
        ValueError: ``blocks`` is not a positive int or ``"all"``, or exceeds the
            network's blocks (the message names the maximum); a layer the coupling
            analysis cannot handle (the message names it); no prunable filter selected.
    """

    name = FILTER_ENCODING

    def __init__(self, model: keras.Model, blocks: Blocks = 2, round_to: int = 1) -> None:
        self.model = model
        self.round_to = check_round_to(round_to)
        self._l1: dict[str, np.ndarray] | None = None
        if blocks != "all" and (isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1):
            raise ValueError(f"encoding.blocks={blocks!r}: expected a positive int or 'all'")
        all_groups = filter_groups(model)
        names = searchable_blocks(model, all_groups)
        if blocks != "all" and blocks > len(names):
            raise ValueError(
                f"encoding.blocks={blocks}: network '{model.name}' has only {len(names)} blocks with prunable "
                f"filters (last: {', '.join(names[-3:])}); expected at most {len(names)} or 'all'"
            )
        self.blocks: Blocks = "all" if blocks == "all" else int(blocks)
        if blocks == "all":
            self.groups = select_groups(all_groups, model, "all")
            self.searched_blocks = tuple(names)
        else:
            # select_groups counts the trailing head blocks too: add them back.
            all_named = [b for b in model_blocks(model)
                         if any(b.start <= g.index < b.stop for g in all_groups)]
            trailing = len(all_named) - len(names)
            self.groups = select_groups(all_groups, model, int(blocks) + trailing)
            self.searched_blocks = tuple(names[-int(blocks):])
        if not self.groups:
            raise ValueError(f"encoding.blocks={blocks!r}: no prunable filter group in the searched blocks of "
                             f"network '{model.name}'; expected more blocks")
        self.sizes = tuple(g.size for g in self.groups)
        self.offsets = tuple(int(o) for o in np.cumsum((0, *self.sizes))[:-1])
        self.cut_layer = self._cut_layer()

    def _cut_layer(self) -> str | None:
        """The last block boundary before the first searched group (None: start at the input)."""
        first = min(g.index for g in self.groups)
        ends = {b.layers[-1]: b.stop for b in model_blocks(self.model)}
        valid = [c for c in cut_points(self.model) if ends.get(c, first + 1) <= first]
        return valid[-1] if valid else None

    @property
    def genome_length(self) -> int:
        """Number of genes (filters of the searched groups)."""
        return int(sum(self.sizes))

    @property
    def group_names(self) -> tuple[str, ...]:
        """The searched groups' names, in genome order."""
        return tuple(g.name for g in self.groups)

    def validate(self, genome: Sequence[int] | np.ndarray) -> np.ndarray:
        """Check length and values of a genome.

        Args:
            genome: 0/1 integers or booleans.

        Returns:
            The genome as a boolean array.

        Raises:
            ValueError: Wrong length or values other than 0 and 1.
        """
        return binary_genome(genome, self.genome_length, self.describe())

    def raw_masks(self, genome: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The keep masks exactly as the genome says (all-False groups not repaired).

        Args:
            genome: 0/1 genome.

        Returns:
            Group name -> boolean keep mask.
        """
        genes = self.validate(genome)
        return {g.name: genes[o:o + g.size].copy() for g, o in zip(self.groups, self.offsets)}

    def decode_with_repairs(self, genome: Sequence[int] | np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        """Keep masks of a genome with every all-False group given back one filter.

        The filter kept is the one with the largest L1 norm of its producers' kernels
        (`repair_masks`), a pure function of the model's weights, so decoding stays a
        pure function of the genome.

        Args:
            genome: 0/1 genome.

        Returns:
            ``(keep masks, number of groups repaired)``; with ``round_to`` > 1 the widths are
            rounded up (`round_masks`, the added filters those of largest L1 norm).
        """
        masks, repairs = repair_masks(self.model, self.raw_masks(genome))
        if self.round_to > 1:
            if self._l1 is None:
                self._l1 = group_l1_norms(self.model, self.groups)
            masks = round_masks(masks, self.round_to, self._l1)
        return masks, repairs

    def decode(self, genome: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Repaired keep masks of a genome (see `decode_with_repairs`).

        Args:
            genome: 0/1 genome.

        Returns:
            Group name -> boolean keep mask, for `prune_filters`.
        """
        return self.decode_with_repairs(genome)[0]

    def encode(self, keep: dict[str, np.ndarray]) -> np.ndarray:
        """The genome of keep masks (groups left out are kept whole).

        Args:
            keep: Group name -> boolean keep mask.

        Returns:
            ``int8`` 0/1 genome.
        """
        unknown = sorted(set(keep) - set(self.group_names))
        if unknown:
            raise ValueError(f"keep masks for groups {unknown[:3]}: expected groups of {self.describe()}")
        parts = [np.asarray(keep.get(g.name, np.ones(g.size, bool)), bool) for g in self.groups]
        return np.concatenate(parts).astype(np.int8)

    def unpruned(self) -> np.ndarray:
        """The all-ones genome (nothing pruned).

        Returns:
            ``int8`` genome of ones.
        """
        return np.ones(self.genome_length, dtype=np.int8)

    def active_fraction(self, genome: Sequence[int] | np.ndarray) -> float:
        """Fraction of searched filters kept (before repairs).

        Args:
            genome: 0/1 genome.

        Returns:
            A value in [0, 1].
        """
        return float(self.validate(genome).mean())

    def describe(self) -> str:
        """A short human description, used in errors and reports.

        Returns:
            The description.
        """
        where = "all blocks" if self.blocks == "all" else f"last {self.blocks} block(s) ({', '.join(self.searched_blocks)})"
        return (f"FilterPruning of {len(self.groups)} groups / {self.genome_length} filters in {where} "
                f"of '{self.model.name}'")

    def config(self) -> dict:
        """The encoding's options, for tracking.

        Returns:
            A JSON-able dict.
        """
        return {"encoding": self.name, "blocks": self.blocks, "round_to": self.round_to, "groups": list(self.group_names),
                "genome_length": self.genome_length, "cut_layer": self.cut_layer}
