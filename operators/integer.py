"""Operators for integer / categorical genomes (TASCNet stage 1), with DEAP's contracts.

Gene ``i`` holds a choice index in ``[0, choices[i])``: which filter count, kernel size,
number of dense units... a configuration search picks for one position. ``choices`` is
the per-gene number of options (an int gives every gene the same count). Crossover needs
nothing new: the registry's gene-wise ``uniform`` (or ``one_point``/``two_point``) swaps
positions, so children stay inside the choice ranges.

- ``uniform_int`` (init): each gene drawn uniformly from its range.
- ``mutate_categorical`` (mutation): each gene, with probability ``indpb``, is redrawn
  to a *different* choice (nominal genes: any other value is as near as any).
- ``mutate_step`` (mutation): each gene, with probability ``indpb``, moves one choice up
  or down (ordinal genes such as 32/64/128/256 filters), reflected at the ends.

Randomness comes from Python's `random` module (seed it to reproduce a run); NumPy
individuals get ``int64`` genes, other containers Python ints::

    toolbox.register("individual", uniform_int, creator.Individual, len(choices), choices)
    toolbox.register("mutate", mutate_categorical, choices=choices, indpb=0.2)
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from .registry import register

__all__ = ["check_choices", "mutate_categorical", "mutate_step", "uniform_int"]

Ind = TypeVar("Ind")


def check_choices(choices: int | Sequence[int], n: int, name: str = "choices") -> list[int]:
    """Per-gene choice counts as a list of ``n`` positive ints.

    Args:
        choices: one count for every gene, or one count per gene.
        n: the genome length.
        name: the operator name used in error messages.

    Returns:
        ``n`` counts, each >= 1.

    Raises:
        ValueError: a count below 1 or a length other than ``n``.
    """
    if isinstance(choices, (int, np.integer)) and not isinstance(choices, bool):
        counts = [int(choices)] * int(n)
    else:
        try:
            counts = [int(c) for c in choices]
        except (TypeError, ValueError):
            raise ValueError(f"{name}: choices={choices!r}; expected an int or a list of ints") from None
        if any(isinstance(c, bool) or int(c) != c for c in choices):
            raise ValueError(f"{name}: choices={choices!r}; expected an int or a list of ints")
    if len(counts) != n:
        raise ValueError(f"{name}: {len(counts)} choice counts for a genome of {n} genes; expected one per gene")
    bad = [c for c in counts if c < 1]
    if bad:
        raise ValueError(f"{name}: choice count {bad[0]} is below 1; expected every gene to have >= 1 choice")
    return counts


def _build(container: Callable[..., Any], genes: Sequence[int]) -> Any:
    if isinstance(container, type) and issubclass(container, np.ndarray):
        array = np.asarray(genes, dtype=np.int64)
        return array if container is np.ndarray else container(array)
    return container(list(genes))


@register("init")
def uniform_int(container: Callable[..., Any], n: int, choices: int | Sequence[int] = 2) -> Any:
    """A new individual whose gene ``i`` is uniform in ``[0, choices[i])``.

    Args:
        container: the class to build (a ``deap.creator`` class, ``list``, ``numpy.ndarray``).
        n: the genome length.
        choices: per-gene choice counts (or one count for all genes).

    Returns:
        The individual.

    Raises:
        ValueError: a bad length or choice count.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"uniform_int: n={n!r}; expected a positive integer (genome length)")
    counts = check_choices(choices, int(n), "uniform_int")
    return _build(container, [random.randrange(c) for c in counts])


def _set(individual: Any, i: int, value: int) -> None:
    individual[i] = value if isinstance(individual, np.ndarray) else type(individual[i])(value)


def _mutate_genes(individual: Ind, choices: int | Sequence[int], indpb: float, name: str,
                  new_value: Callable[[int, int], int]) -> tuple[Ind]:
    """Give each gene with more than one choice, with probability ``indpb``, ``new_value(gene, count)``."""
    counts = check_choices(choices, len(individual), name)
    for i, count in enumerate(counts):
        # One random() per gene first, then the new value's draws: lists and arrays mutate alike.
        if random.random() < indpb and count > 1:
            _set(individual, i, new_value(int(individual[i]), count))
    return (individual,)


def _other_choice(current: int, count: int) -> int:
    # Draw among the count - 1 other values: a mutation always changes the gene.
    value = random.randrange(count - 1)
    return value + 1 if value >= current else value


def _neighbour_choice(current: int, count: int) -> int:
    value = current + (1 if random.random() < 0.5 else -1)
    if value < 0:  # a step past either end is reflected
        return 1
    return count - 2 if value >= count else value


@register("mutation")
def mutate_categorical(individual: Ind, choices: int | Sequence[int], indpb: float) -> tuple[Ind]:
    """Redraws each gene, with probability ``indpb``, to another of its choices.

    A gene with a single choice never changes. One ``random.random()`` is drawn per gene
    (then one ``randrange`` per mutated gene), so lists and arrays mutate alike.

    Args:
        individual: the genome, modified in place.
        choices: per-gene choice counts (or one count for all genes).
        indpb: probability of mutating each gene, in ``[0, 1]``.

    Returns:
        ``(individual,)``.
    """
    return _mutate_genes(individual, choices, indpb, "mutate_categorical", _other_choice)


@register("mutation")
def mutate_step(individual: Ind, choices: int | Sequence[int], indpb: float) -> tuple[Ind]:
    """Moves each gene, with probability ``indpb``, one choice up or down.

    For ordinal genes (filter counts, units, dropout levels) a small move keeps a good
    configuration near itself. A step past either end is reflected (0 -> 1, last ->
    last - 1); a gene with a single choice never changes.

    Args:
        individual: the genome (integer genes), changed in place.
        choices: how many values each gene has (one int: the same for every gene).
        indpb: chance that a gene takes a step, in ``[0, 1]``.

    Returns:
        The 1-tuple DEAP expects.
    """
    return _mutate_genes(individual, choices, indpb, "mutate_step", _neighbour_choice)
