"""Initialisers: each call returns one new binary individual of ``n`` genes.

``container`` is the class to build, usually a ``deap.creator`` class::

    creator.create("Individual", numpy.ndarray, fitness=creator.FitnessMax)
    toolbox.register("individual", random_density, creator.Individual, 2048)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)

NumPy containers (``numpy.ndarray`` and its subclasses) get ``int8`` genes; other
containers (``list``, ``creator`` classes over ``list`` or ``array.array``) get Python
ints. A ``creator`` class over ``numpy.ndarray`` must be called (``container(array)``):
``array.view(container)`` would skip its ``__init__`` and leave ``fitness`` as the bare
class instead of an instance. Randomness comes from Python's `random` module.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np

from .registry import register

__all__ = ["random_density", "bernoulli", "ones"]


def _check_length(name: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: n={n!r}; expected a positive integer (genome length)")


def _build(container: Callable[..., Any], bits: Sequence[int]) -> Any:
    """Builds an individual of ``container`` holding ``bits``."""
    if isinstance(container, type) and issubclass(container, np.ndarray):
        array = np.asarray(bits, dtype=np.int8)
        if container is np.ndarray:
            return array
        # deap.creator's NumPy classes take an iterable and keep its dtype (int8 here).
        return container(array)
    return container(bits)


def _bernoulli_bits(n: int, density: float) -> list[int]:
    """``n`` bits, each 1 with probability ``density``; never all zero."""
    draw = random.random
    bits = [1 if draw() < density else 0 for _ in range(n)]
    if not any(bits):
        bits[random.randrange(n)] = 1
    return bits


@register("init", probabilities=("low", "high"))
def random_density(
    container: Callable[..., Any],
    n: int,
    low: float = 0.0,
    high: float = 1.0,
    exact: bool = False,
) -> Any:
    """EvoPruneDeepTL's initialisation: every individual draws its own density.

    The density ``d ~ U(low, high)`` is drawn per individual, so a population spans
    sparse and dense heads. By default each bit is then 1 with probability ``d``; with
    ``exact=True`` exactly ``round(d * n)`` bits at random positions are 1, as the
    reference code does. Either way at least one bit is 1 (an all-zero head has no
    connections).

    Args:
        container: the class of the individual, e.g. ``creator.Individual``.
        n: number of genes.
        low: lowest density, in ``[0, 1]``.
        high: highest density, in ``[low, 1]``.
        exact: set exactly ``round(d * n)`` ones instead of drawing each bit.

    Returns:
        A new individual of ``container`` with ``n`` genes of 0/1.

    Raises:
        ValueError: if ``n`` is not positive or ``0 <= low <= high <= 1`` does not hold.
    """
    _check_length("random_density", n)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"random_density: low={low!r}, high={high!r}; expected 0 <= low <= high <= 1")
    density = random.uniform(low, high)
    if not exact:
        return _build(container, _bernoulli_bits(n, density))
    bits = [0] * n
    for i in random.sample(range(n), max(1, round(density * n))):
        bits[i] = 1
    return _build(container, bits)


@register("init")
def bernoulli(container: Callable[..., Any], n: int, p: float = 0.5) -> Any:
    """Each bit is 1 with probability ``p``, independently; at least one bit is 1.

    Args:
        container: the class of the individual, e.g. ``creator.Individual``.
        n: number of genes.
        p: probability of each bit being 1 (the expected density), in ``[0, 1]``.

    Returns:
        A new individual of ``container`` with ``n`` genes of 0/1.

    Raises:
        ValueError: if ``n`` is not positive.
    """
    _check_length("bernoulli", n)
    return _build(container, _bernoulli_bits(n, p))


@register("init")
def ones(container: Callable[..., Any], n: int) -> Any:
    """The unpruned head: every bit is 1. Useful to seed a population with the baseline.

    Args:
        container: the class of the individual, e.g. ``creator.Individual``.
        n: number of genes.

    Returns:
        A new individual of ``container`` with ``n`` ones.

    Raises:
        ValueError: if ``n`` is not positive.
    """
    _check_length("ones", n)
    return _build(container, [1] * n)
