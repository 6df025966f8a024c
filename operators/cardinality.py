"""Count-keeping operators for fixed-budget (cardinality) search: every genome has exactly k genes on.

A fixed budget compares a search with its baselines at exactly equal size: a run with
``encoding.active = k`` starts from `random_k` genomes and breeds them with operators
that never change how many genes are on:

* ``random_k`` (init): k genes on at uniformly random positions.
* ``swap_one`` (mutation): with probability ``indpb``, one active gene moves to an
  inactive position (``flip_one``'s counterpart).
* ``swap`` (mutation): each active gene moves, with probability ``indpb``, to a
  position that was inactive (``flip_bit``'s counterpart).
* ``uniform_k`` / ``two_point_k`` (crossover): ``uniform`` / ``two_point``, then each
  child is repaired to its parent's count by switching genes on or off at random among
  the positions where the parents differ (shared genes are kept).

They follow DEAP's contracts like the other operators (a mutation returns a 1-tuple, a
crossover the two children modified in place), work on NumPy and list individuals, and
draw from Python's `random` module. The registry marks them ``cardinality=True``:
`operators.is_cardinality` tells a config that they need a budget.
"""

from __future__ import annotations

import numbers
import random
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from .crossover import _size, two_point, uniform
from .init import _build, _check_length
from .registry import register

__all__ = ["count_of", "repair_count", "random_k", "swap_one", "swap", "uniform_k", "two_point_k"]

Ind = TypeVar("Ind")


def count_of(active: int | float, n: int, name: str = "active") -> int:
    """The number of active genes a budget means for a genome of ``n`` genes.

    Args:
        active: a count (an integer from 1 to ``n``) or a fraction of the genes (a float
            in ``(0, 1]``, rounded to the nearest count, at least 1).
        n: the genome length.
        name: how the value is named in the error (e.g. ``"encoding.active"``).

    Returns:
        The count k, with ``1 <= k <= n``.

    Raises:
        ValueError: a count outside ``(0, n]``, a fraction outside ``(0, 1]`` or another type.
    """
    if isinstance(active, bool) or not isinstance(active, numbers.Real):
        raise ValueError(f"{name}={active!r} is not a number; expected a count of genes in (0, {n}] "
                         "or a fraction in (0, 1]")
    if isinstance(active, numbers.Integral):
        if not 0 < active <= n:
            raise ValueError(f"{name}={active} is outside (0, {n}]; expected a count of active genes "
                             f"from 1 to the {n} genes of the encoding (or a fraction in (0, 1])")
        return int(active)
    if not 0.0 < active <= 1.0:
        raise ValueError(f"{name}={active} is outside (0, 1]; expected a fraction of the {n} genes "
                         "(or an integer count)")
    return max(1, min(n, int(round(active * n))))


def _on(individual: Any) -> list[int]:
    """Positions of the active genes."""
    if isinstance(individual, np.ndarray):
        return np.flatnonzero(individual).tolist()
    return [i for i, gene in enumerate(individual) if gene]


def _set(individual: Any, i: int, value: int) -> None:
    """Sets gene ``i`` to 0/1, keeping its type (``int8`` stays ``int8``, ``bool`` stays ``bool``)."""
    if isinstance(individual, np.ndarray):
        individual[i] = value
    else:
        individual[i] = type(individual[i])(value)


def repair_count(individual: Ind, k: int, among: Sequence[int] | None = None) -> Ind:
    """Switches random genes on or off until exactly ``k`` are on, in place.

    Genes at the positions ``among`` are changed first (a crossover passes the positions
    where the parents differ, so the genes both parents share stay); others only when
    those do not suffice.

    Args:
        individual: the genome, modified in place.
        k: the count to reach, in ``[0, len(individual)]``.
        among: preferred positions to change (default: all).

    Returns:
        ``individual``.
    """
    on = _on(individual)
    excess = len(on) - k
    if excess == 0:
        return individual
    preferred = set(range(len(individual)) if among is None else among)
    if excess > 0:  # switch some active genes off
        pool, fallback = [i for i in on if i in preferred], [i for i in on if i not in preferred]
        value = 0
    else:
        on_set = set(on)
        off = [i for i in range(len(individual)) if i not in on_set]
        pool, fallback = [i for i in off if i in preferred], [i for i in off if i not in preferred]
        value = 1
    need = abs(excess)
    chosen = random.sample(pool, min(need, len(pool)))
    if len(chosen) < need:
        chosen += random.sample(fallback, need - len(chosen))
    for i in chosen:
        _set(individual, i, value)
    return individual


@register("init", cardinality=True)
def random_k(container: Callable[..., Any], n: int, k: int | float) -> Any:
    """An individual with exactly k genes on, at uniformly random positions.

    Args:
        container: the class of the individual, e.g. ``creator.Individual``.
        n: number of genes.
        k: the budget: a count in ``(0, n]`` or a fraction of ``n`` in ``(0, 1]``
            (`count_of`); a run sets it from ``encoding.active``.

    Returns:
        A new individual of ``container`` with ``n`` genes of 0/1, k of them 1.

    Raises:
        ValueError: ``n`` not positive or k outside its range.
    """
    _check_length("random_k", n)
    bits = [0] * n
    for i in random.sample(range(n), count_of(k, n, "random_k: k")):
        bits[i] = 1
    return _build(container, bits)


def _move(individual: Any, source: int, target: int) -> None:
    _set(individual, source, 0)
    _set(individual, target, 1)


@register("mutation", cardinality=True)
def swap_one(individual: Ind, indpb: float = 1.0) -> tuple[Ind]:
    """With probability ``indpb``, moves one random active gene to a random inactive position.

    The count of active genes never changes; a genome with all genes on (or off) has
    nothing to swap and stays as it is.

    Args:
        individual: the genome, modified in place.
        indpb: probability of a swap, in ``[0, 1]``.

    Returns:
        ``(individual,)``.
    """
    if random.random() < indpb:
        on = _on(individual)
        if 0 < len(on) < len(individual):
            on_set = set(on)
            off = [i for i in range(len(individual)) if i not in on_set]
            _move(individual, random.choice(on), random.choice(off))
    return (individual,)


@register("mutation", cardinality=True)
def swap(individual: Ind, indpb: float) -> tuple[Ind]:
    """Each active gene moves, with probability ``indpb``, to a position that was inactive.

    Active genes are visited in position order; each that moves takes a target drawn
    without replacement from the positions inactive before the mutation, so no gene
    moves back onto a vacated place and the count stays exactly the same.

    Args:
        individual: the genome, modified in place.
        indpb: probability of moving each active gene, in ``[0, 1]``.

    Returns:
        ``(individual,)``.
    """
    on = _on(individual)
    on_set = set(on)
    free = [i for i in range(len(individual)) if i not in on_set]
    for source in on:
        if not free:
            break
        if random.random() < indpb:
            _move(individual, source, free.pop(random.randrange(len(free))))
    return (individual,)


def _differing(ind1: Any, ind2: Any) -> list[int]:
    return [i for i, (a, b) in enumerate(zip(ind1, ind2)) if bool(a) != bool(b)]


def _repaired(name: str, cross: Callable[..., tuple[Ind, Ind]], ind1: Ind, ind2: Ind,
              **options: Any) -> tuple[Ind, Ind]:
    """Crosses the parents, then repairs each child to its own parent's count."""
    _size(name, ind1, ind2)
    k1, k2 = len(_on(ind1)), len(_on(ind2))
    differ = _differing(ind1, ind2)
    cross(ind1, ind2, **options)
    repair_count(ind1, k1, differ)
    repair_count(ind2, k2, differ)
    return ind1, ind2


@register("crossover", cardinality=True)
def uniform_k(ind1: Ind, ind2: Ind, indpb: float = 0.5) -> tuple[Ind, Ind]:
    """Uniform crossover that keeps each child's count of active genes.

    Positions are exchanged as in `operators.crossover.uniform`; then each child is
    repaired to its parent's count by switching random genes on or off among the
    positions where the parents differed. Parents of equal count k give children of
    count k that hold every gene both parents share.

    Args:
        ind1: first parent, modified in place.
        ind2: second parent of the same length, modified in place.
        indpb: probability of exchanging each position, in ``[0, 1]``.

    Returns:
        The two children ``(ind1, ind2)``.

    Raises:
        ValueError: if the parents differ in length.
    """
    return _repaired("uniform_k", uniform, ind1, ind2, indpb=indpb)


@register("crossover", cardinality=True)
def two_point_k(ind1: Ind, ind2: Ind) -> tuple[Ind, Ind]:
    """Two-point crossover that keeps each child's count of active genes.

    The middle segment is exchanged as in `operators.crossover.two_point`; then each
    child is repaired to its parent's count among the positions where the parents
    differed (see `uniform_k`).

    Args:
        ind1: first parent, modified in place.
        ind2: second parent of the same length, modified in place.

    Returns:
        The two children ``(ind1, ind2)``.

    Raises:
        ValueError: if the parents differ in length.
    """
    return _repaired("two_point_k", two_point, ind1, ind2)
