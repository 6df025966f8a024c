"""From per-filter scores to keep masks at a FLOPs target: the ranking and its binary search.

A criterion scores every filter of the searched groups (higher is kept first). A
*ranking* turns one number, the level, into widths:

* ``global``: the ``level`` lowest-scored filters of all searched groups are pruned (each
  group keeps at least one); scores are optionally divided by their group's mean first,
  so that layers of different scale compare;
* ``layer``: every group prunes the same fraction ``level / LAYER_STEPS`` of its filters,
  its lowest-scored ones.

Widths are then rounded up to a multiple of ``round_to`` (`evoprune_tf.nn.widths.round_width`).
The searched FLOPs never grow with the level, so a binary search finds the level whose
FLOPs (`WidthFlops`, exact and without surgery) lie nearest the target; a target below
the FLOPs of every group at its smallest width is refused in one line naming them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["LAYER_STEPS", "Plan", "Ranking", "TOLERANCE", "plan_masks", "target_flops"]

#: Levels of the per-layer ranking (fractions pruned: 0, 1/LAYER_STEPS, ..., 1).
LAYER_STEPS = 100_000
#: The relative FLOPs error the search aims under (the report states the error reached).
TOLERANCE = 0.01


class Ranking:
    """Widths and keep masks of one criterion's scores at a level.

    Args:
        scores: Group name -> one score per filter (higher is kept first).
        scope: ``"global"`` or ``"layer"``.
        normalize: For ``global``: divide each group's scores by its mean absolute score.
        round_to: Kept widths are rounded up to a multiple of this.
    """

    def __init__(self, scores: Mapping[str, np.ndarray], scope: str, *, normalize: bool = False,
                 round_to: int = 1) -> None:
        from evoprune_tf.nn.widths import check_round_to

        if scope not in ("global", "layer"):
            raise ValueError(f"ranking={scope!r}; expected 'global' or 'layer'")
        self.scope, self.round_to = scope, check_round_to(round_to)
        self.names = list(scores)
        self.scores = {n: np.asarray(scores[n], dtype=np.float64).ravel() for n in self.names}
        self.sizes = np.array([self.scores[n].size for n in self.names], dtype=np.int64)
        # within a group: filter positions from the lowest score up (ties: the higher index goes first)
        self._ascending = {n: np.lexsort((-np.arange(s.size), s)) for n, s in self.scores.items()}
        if scope == "global":
            flat = np.concatenate([self._normalized(self.scores[n]) if normalize else self.scores[n]
                                   for n in self.names])
            owner = np.repeat(np.arange(len(self.names)), self.sizes)
            self._order_owner = owner[np.lexsort((-np.arange(flat.size), flat))]
            self.max_level = int(flat.size)
        else:
            self.max_level = LAYER_STEPS

    @staticmethod
    def _normalized(s: np.ndarray) -> np.ndarray:
        scale = float(np.mean(np.abs(s)))
        return s / scale if scale > 0 else s

    def widths(self, level: int) -> dict[str, int]:
        """Kept filters per group at ``level`` (rounded to ``round_to``).

        Args:
            level: ``0`` (nothing pruned) to ``max_level``.

        Returns:
            Group name -> kept filters.
        """
        from evoprune_tf.nn.widths import round_width

        level = int(min(max(level, 0), self.max_level))
        if self.scope == "global":
            pruned = np.bincount(self._order_owner[:level], minlength=len(self.names))
        else:
            pruned = (self.sizes * level) // LAYER_STEPS
        kept = np.maximum(1, self.sizes - pruned)
        return {n: round_width(int(k), int(s), self.round_to) for n, k, s in zip(self.names, kept, self.sizes)}

    def masks(self, widths: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Keep masks holding each group's ``widths[name]`` best-scored filters.

        Args:
            widths: Group name -> kept filters.

        Returns:
            Group name -> boolean keep mask.
        """
        out = {}
        for n in self.names:
            mask = np.zeros(self.scores[n].size, dtype=bool)
            mask[self._ascending[n][self.scores[n].size - int(widths[n]):]] = True
            out[n] = mask
        return out


@dataclasses.dataclass(frozen=True)
class Plan:
    """The masks a baseline prunes to, and how near its FLOPs came to the target.

    Attributes:
        keep: Group name -> boolean keep mask.
        level: The ranking's level.
        target: The searched FLOPs aimed at.
        flops: The searched FLOPs of ``keep``.
        full: The unpruned searched FLOPs.
        scope: ``"global"`` or ``"layer"``.
    """

    keep: dict[str, np.ndarray]
    level: int
    target: float
    flops: int
    full: int
    scope: str

    @property
    def error(self) -> float:
        """``|flops - target| / target``."""
        return abs(self.flops - self.target) / self.target

    def describe(self) -> dict[str, Any]:
        """The plan's numbers, for the report."""
        return {"ranking": self.scope, "level": self.level, "target_flops_searched": round(self.target),
                "flops_searched": self.flops, "unpruned_flops_searched": self.full,
                "target_error_pct": round(100 * self.error, 3),
                "kept_filters": int(sum(int(m.sum()) for m in self.keep.values())),
                "widths": {n: int(m.sum()) for n, m in self.keep.items()}}


def target_flops(full: int, prefix: int, *, reduction: float, network_flops: float | None = None,
                 key: str = "algorithm.flops_reduction") -> float:
    """The searched FLOPs to aim at: ``(1 - reduction) * full``, or another run's network FLOPs minus the prefix's.

    Args:
        full: The unpruned searched FLOPs.
        prefix: The FLOPs of the frozen prefix (outside the searched blocks).
        reduction: The fraction of the searched FLOPs removed (used without ``network_flops``).
        network_flops: Whole-network FLOPs to match (``algorithm.flops_of``).
        key: The config key named in errors.

    Raises:
        ValueError: ``reduction`` outside (0, 1), or network FLOPs at or above the unpruned network's.
    """
    if network_flops is None:
        if isinstance(reduction, bool) or not isinstance(reduction, (int, float)) or not 0.0 < reduction < 1.0:
            raise ValueError(f"{key}={reduction!r}; expected a fraction of the searched FLOPs removed, in (0, 1)")
        return (1.0 - float(reduction)) * full
    if network_flops >= full + prefix:
        raise ValueError(f"{key}: the target network FLOPs {network_flops / 1e6:.2f} M are not below the unpruned "
                         f"network's {(full + prefix) / 1e6:.2f} M; expected a pruned run's FLOPs")
    return float(network_flops) - prefix


def plan_masks(ranking: Ranking, count: Any, target: float, *, prefix: int = 0,
               key: str = "algorithm.flops_reduction") -> Plan:
    """Binary search of the ranking's level whose searched FLOPs lie nearest ``target``.

    Args:
        ranking: The criterion's `Ranking`.
        count: Widths -> FLOPs of the whole network (`WidthFlops.flops`).
        target: The searched FLOPs aimed at.
        prefix: FLOPs outside the searched groups' part of the network (subtracted from ``count``).
        key: The config key named when the target cannot be reached.

    Returns:
        The `Plan`.

    Raises:
        ValueError: The target is below what the smallest widths reach (one line naming it).
    """
    def searched(level: int) -> int:
        return int(count(ranking.widths(level))) - prefix

    full, smallest = searched(0), searched(ranking.max_level)
    if target < smallest:
        raise ValueError(
            f"{key}: the target of {target / 1e6:.3f} M searched FLOPs ({100 * (1 - target / full):.1f}% removed) "
            f"cannot be reached; the smallest reachable is {smallest / 1e6:.3f} M ({100 * (1 - smallest / full):.1f}% "
            f"removed, every group at its smallest width); expected a smaller reduction")
    lo, hi = 0, ranking.max_level  # searched(hi) <= target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if searched(mid) <= target:
            hi = mid
        else:
            lo = mid
    level = min((lo, hi), key=lambda v: (abs(searched(v) - target), v))
    widths = ranking.widths(level)
    return Plan(keep=ranking.masks(widths), level=level, target=float(target), flops=searched(level), full=full,
                scope=ranking.scope)
