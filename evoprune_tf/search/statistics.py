"""Per-generation statistics of a population, logged by the loops as the logbook's ``record``.

`default_record` summarises the first objective and the active fraction; `front_record`
adds the size and hypervolume of the population's non-dominated front for
multi-objective runs.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Sequence

import numpy as np

from evoprune_tf.search.pareto import hypervolume, non_dominated

__all__ = ["default_record", "front_record", "make_front_record"]


def default_record(population: list, halloffame) -> dict:
    """Per-generation statistics of the first objective and the active fraction.

    ``best`` / ``mean`` / ``min`` / ``std`` are over the population's first fitness value;
    ``best_active`` is the active fraction of the hall of fame's best individual.
    """
    values = np.array([ind.fitness.values[0] for ind in population], dtype=float)
    best = halloffame[0] if len(halloffame) else max(population, key=attrgetter("fitness"))
    return {
        "best": float(best.fitness.values[0]),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "std": float(values.std()),
        "best_active": float(np.mean(best)),
        "mean_active": float(np.mean([np.mean(ind) for ind in population])),
    }


def make_front_record(
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    reference: Sequence[float] | None = None,
):
    """A ``record=`` function for the loops of `evoprune_tf.search.algorithms` with bound options.

    Args:
        bounds: objective bounds for the hypervolume (see `hypervolume`).
        reference: reference point in normalised space (see `hypervolume`).

    Returns:
        ``record(population, halloffame) -> dict`` (see `front_record`).
    """

    def record(population: list, halloffame) -> dict:
        return front_record(population, halloffame, bounds=bounds, reference=reference)

    return record


def front_record(
    population: list,
    halloffame,
    weights: Sequence[float] | None = None,
    *,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    reference: Sequence[float] | None = None,
) -> dict:
    """Per-generation statistics of a multi-objective run (usable as ``record=``).

    Args:
        population: DEAP individuals with ``.fitness.values``; individuals with an invalid
            fitness are ignored.
        halloffame: the run's hall of fame (passed to `default_record`).
        weights: fitness weights; default: the individuals' ``fitness.weights``.
        bounds: objective bounds for the hypervolume (see `hypervolume`).
        reference: reference point in normalised space (see `hypervolume`).

    Returns:
        `default_record`'s fields plus ``front_size`` (number of
        non-dominated individuals in the population) and ``hypervolume`` (of that front).
    """
    record = default_record(population, halloffame)
    valid = [ind for ind in population if ind.fitness.valid]
    if not valid:
        return {**record, "front_size": 0, "hypervolume": 0.0}
    if weights is None:
        weights = valid[0].fitness.weights
    values = np.array([ind.fitness.values for ind in valid], dtype=np.float64)
    mask = non_dominated(values, weights)
    record["front_size"] = int(mask.sum())
    record["hypervolume"] = hypervolume(values[mask], weights, reference, bounds)
    return record
