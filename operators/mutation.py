"""Mutations for binary genomes, with DEAP's contract.

Every function modifies the individual **in place** and returns the 1-tuple
``(individual,)``, like ``deap.tools.mutFlipBit``. Genes are 0/1 (or booleans); a flip
keeps the gene's type (``int8`` stays ``int8``, ``bool`` stays ``bool``). Randomness
comes from Python's `random` module.
"""

from __future__ import annotations

import random
from typing import Any, TypeVar

import numpy as np

from .registry import register

__all__ = ["flip_bit", "flip_one"]

# A genome: a NumPy 1-D array or a mutable sequence of 0/1 (list, array.array).
Ind = TypeVar("Ind")


def _flip_at(individual: Any, i: int) -> None:
    """Flips gene ``i``, keeping its type."""
    if isinstance(individual, np.ndarray):
        individual[i] = individual[i] == 0
    else:
        individual[i] = type(individual[i])(not individual[i])


@register("mutation")
def flip_bit(individual: Ind, indpb: float) -> tuple[Ind]:
    """Flips each bit independently with probability ``indpb``.

    The MO-EvoPruneDeepTL mutation (``indpb = 1 / len(individual)``). One
    ``random.random()`` is drawn per gene, as ``deap.tools.mutFlipBit`` does, so a list
    individual gets the very same mutation for the same seed.

    Args:
        individual: the genome, modified in place.
        indpb: probability of flipping each bit, in ``[0, 1]``.

    Returns:
        ``(individual,)``.
    """
    size = len(individual)
    draw = random.random
    if isinstance(individual, np.ndarray):
        mask = np.fromiter((draw() < indpb for _ in range(size)), dtype=bool, count=size)
        # ``== 0`` flips 0/1 and booleans alike, and the assignment casts back to the dtype.
        individual[mask] = individual[mask] == 0
    else:
        for i in range(size):
            if draw() < indpb:
                individual[i] = type(individual[i])(not individual[i])
    return (individual,)


@register("mutation")
def flip_one(individual: Ind, indpb: float = 1.0) -> tuple[Ind]:
    """With probability ``indpb``, flips exactly one bit chosen uniformly at random.

    The EvoPruneDeepTL mutation (the reference uses ``indpb=0.07``). The reference
    tosses one coin for both children of a step; under DEAP's one-individual contract
    each child gets its own coin.

    Args:
        individual: the genome, modified in place.
        indpb: probability of mutating at all, in ``[0, 1]``.

    Returns:
        ``(individual,)``.
    """
    if random.random() < indpb and len(individual) > 0:
        _flip_at(individual, random.randrange(len(individual)))
    return (individual,)
