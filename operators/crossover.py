"""Crossovers for binary genomes, with DEAP's contract and safe for NumPy individuals.

Every function takes two parents, modifies both **in place** and returns them as
``(ind1, ind2)``, exactly like ``deap.tools.cxOnePoint`` and friends, so it can be
registered on a toolbox: ``toolbox.register("mate", uniform, indpb=0.5)``.

Why not DEAP's own: ``deap.tools`` swaps slices with ``a[i:], b[i:] = b[i:], a[i:]``.
On NumPy arrays a slice is a view, so the second assignment copies back what the first
just wrote and the second child keeps its own genes (a lost half of every crossover).
Here NumPy parents are swapped through copies (a boolean swap mask), and anything else
(lists, ``array.array``) element by element.

Randomness comes from Python's `random` module and is drawn in the same order as the
matching DEAP operator, so seeding `random` reproduces a run, and list individuals get
the very children ``cxOnePoint`` / ``cxTwoPoint`` / ``cxUniform`` would give.
"""

from __future__ import annotations

import random
from typing import Any, Callable, TypeVar

import numpy as np

from .registry import register

__all__ = ["one_point", "two_point", "uniform"]

# A genome: a NumPy 1-D array or a mutable sequence of 0/1 (list, array.array).
Ind = TypeVar("Ind")


def _size(name: str, ind1: Any, ind2: Any) -> int:
    """Common length of two parents; fixed-length genomes only."""
    size = len(ind1)
    if len(ind2) != size:
        raise ValueError(f"{name}: parents have lengths {size} and {len(ind2)}; expected equal lengths")
    return size


def _swap_range(ind1: Any, ind2: Any, start: int, stop: int) -> None:
    """Exchanges ``ind1[start:stop]`` and ``ind2[start:stop]`` without aliasing."""
    if isinstance(ind1, np.ndarray) and isinstance(ind2, np.ndarray):
        tail = ind1[start:stop].copy()
        ind1[start:stop] = ind2[start:stop]
        ind2[start:stop] = tail
    else:
        for i in range(start, stop):
            ind1[i], ind2[i] = ind2[i], ind1[i]


def _segment_crossover(name: str, ind1: Ind, ind2: Ind, cuts: Callable[[int], tuple[int, int]]) -> tuple[Ind, Ind]:
    """Exchange ``[start, stop)`` with ``(start, stop) = cuts(size)``; shorter than 2: unchanged."""
    size = _size(name, ind1, ind2)
    if size >= 2:  # no cut point fits a shorter genome
        _swap_range(ind1, ind2, *cuts(size))
    return ind1, ind2


def _one_cut(size: int) -> tuple[int, int]:
    return random.randint(1, size - 1), size


def _two_cuts(size: int) -> tuple[int, int]:
    # deap.tools.cxTwoPoint's draws, in its order: the same seed gives the same children.
    cxpoint1 = random.randint(1, size)
    cxpoint2 = random.randint(1, size - 1)
    if cxpoint2 >= cxpoint1:
        return cxpoint1, cxpoint2 + 1
    return cxpoint2, cxpoint1


@register("crossover")
def one_point(ind1: Ind, ind2: Ind) -> tuple[Ind, Ind]:
    """One-point crossover: the parents exchange everything after a random cut.

    The cut point is drawn as in ``deap.tools.cxOnePoint`` (``randint(1, n - 1)``), so
    both children always get genes of both parents. Genomes shorter than 2 have no cut
    point and are returned unchanged.

    Args:
        ind1: first parent, modified in place.
        ind2: second parent of the same length, modified in place.

    Returns:
        The two children ``(ind1, ind2)``.

    Raises:
        ValueError: if the parents differ in length.
    """
    return _segment_crossover("one_point", ind1, ind2, _one_cut)


@register("crossover")
def two_point(ind1: Ind, ind2: Ind) -> tuple[Ind, Ind]:
    """Two-point crossover: the parents exchange the genes between two random cuts.

    The cut points are drawn as in ``deap.tools.cxTwoPoint``. Genomes shorter than 2
    are returned unchanged.

    Args:
        ind1: a parent; it becomes the child holding ``ind2``'s middle segment.
        ind2: the other parent (same length); it gets ``ind1``'s middle segment.

    Returns:
        ``(ind1, ind2)``, both changed in place.

    Raises:
        ValueError: parents of different lengths.
    """
    return _segment_crossover("two_point", ind1, ind2, _two_cuts)


@register("crossover")
def uniform(ind1: Ind, ind2: Ind, indpb: float = 0.5) -> tuple[Ind, Ind]:
    """Uniform crossover: each position is exchanged independently with ``indpb``.

    EvoPruneDeepTL's crossover (``indpb=0.5``, always applied). One ``random.random()``
    is drawn per position, as ``deap.tools.cxUniform`` does.

    Args:
        ind1: first parent, modified in place.
        ind2: second parent of the same length, modified in place.
        indpb: probability of exchanging each position, in ``[0, 1]``.

    Returns:
        The two children ``(ind1, ind2)``.

    Raises:
        ValueError: if the parents differ in length.
    """
    size = _size("uniform", ind1, ind2)
    draw = random.random
    if isinstance(ind1, np.ndarray) and isinstance(ind2, np.ndarray):
        mask = np.fromiter((draw() < indpb for _ in range(size)), dtype=bool, count=size)
        taken = ind1[mask]  # boolean indexing copies
        ind1[mask] = ind2[mask]
        ind2[mask] = taken
    else:
        for i in range(size):
            if draw() < indpb:
                ind1[i], ind2[i] = ind2[i], ind1[i]
    return ind1, ind2
