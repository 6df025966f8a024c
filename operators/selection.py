"""Selections with DEAP's contract: ``select(individuals, k, **options) -> list``.

They return **references** to members of ``individuals`` (possibly repeated), never
copies: as in DEAP, the algorithm clones the parents before varying them. Fitness is
compared the DEAP way (``a.fitness > b.fitness``: lexicographic on the weighted values),
so maximisation and minimisation both work. Randomness comes from Python's `random`
module, drawn in the same order as the matching DEAP selection where there is one.

The random-parent selection is called `random_choice` here (a function named ``random``
would hide the `random` module); the registry lists it as ``"random"``.
"""

from __future__ import annotations

import functools
import math
import numbers
import random
from typing import Any, Sequence

import numpy as np
from deap import tools

from .registry import register

__all__ = [
    "tournament",
    "roulette",
    "random_choice",
    "hamming_farthest",
    "nsga2",
    "nsga3",
    "best",
    "heavy_knee_light",
]

_ND_METHODS = ("standard", "log")


@register("selection")
def tournament(individuals: Sequence[Any], k: int, tournsize: int = 3) -> list[Any]:
    """Selects ``k`` times the best of ``tournsize`` individuals drawn with replacement.

    Draws exactly as ``deap.tools.selTournament``; the first of equally fit aspirants wins.

    Args:
        individuals: the population to select from.
        k: number of individuals to select.
        tournsize: number of aspirants per tournament (at least 1).

    Returns:
        ``k`` references to members of ``individuals``.
    """
    chosen = []
    for _ in range(k):
        winner = random.choice(individuals)
        for _ in range(tournsize - 1):
            aspirant = random.choice(individuals)
            if aspirant.fitness > winner.fitness:
                winner = aspirant
        chosen.append(winner)
    return chosen


@register("selection")
def roulette(individuals: Sequence[Any], k: int) -> list[Any]:
    """Fitness-proportionate selection of ``k`` individuals, with replacement.

    The weight of an individual is its first weighted fitness value
    (``fitness.wvalues[0]``, which equals ``fitness.values[0]`` for a maximised
    objective with weight 1.0, and turns a minimised objective into one where larger is
    better). Values that are all non-negative are used as they are (classic roulette: a
    zero fitness is never drawn). If any is negative, all are shifted by the minimum, so
    the worst weighs 0 like a zero fitness would. When every weight is 0 (all equal and
    non-positive), selection is uniform.

    Args:
        individuals: the population to select from (single- or multi-objective; only
            the first objective counts).
        k: number of individuals to select.

    Returns:
        ``k`` references to members of ``individuals``.

    Raises:
        ValueError: if a fitness is not finite (NaN or infinite).
    """
    if not individuals or k <= 0:
        return []
    weights = [ind.fitness.wvalues[0] for ind in individuals]
    if not all(math.isfinite(w) for w in weights):
        bad = next(w for w in weights if not math.isfinite(w))
        raise ValueError(f"roulette: fitness value {bad!r} is not finite; expected finite fitness values")
    lowest = min(weights)
    if lowest < 0:
        weights = [w - lowest for w in weights]
    if sum(weights) <= 0:
        return random_choice(individuals, k)
    return random.choices(individuals, weights=weights, k=k)


@register("selection", "random")
def random_choice(individuals: Sequence[Any], k: int) -> list[Any]:
    """Selects ``k`` individuals uniformly at random, with replacement (``selRandom``).

    Registered as ``"random"``.

    Args:
        individuals: the population to select from.
        k: number of individuals to select.

    Returns:
        ``k`` references to members of ``individuals``.
    """
    return [random.choice(individuals) for _ in range(k)]


def _hamming(a: Any, b: Any) -> int:
    """Number of positions where two genomes differ (extra length counts as different)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape:
        return int(np.count_nonzero(a != b))
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


@register("selection")
def hamming_farthest(individuals: Sequence[Any], k: int, candidates: int = 3) -> list[Any]:
    """EvoPruneDeepTL's parent selection: a random parent and its farthest candidate.

    For each pair, the first parent is drawn uniformly at random; then ``candidates``
    other members (distinct positions in ``individuals``, drawn without replacement) are
    drawn, and the one farthest from the first parent in Hamming distance is the second
    parent (the first drawn wins ties), which keeps the pair diverse. Pairs are
    consecutive in the result (``[p1, p2, p1', p2', ...]``), ready for
    ``zip(offspring[::2], offspring[1::2])``. When ``k`` is odd the last one is a
    single uniform draw. A one-member population pairs the member with itself.

    Args:
        individuals: the population to select from (0/1 genomes of one length).
        k: number of individuals to select.
        candidates: how many others compete to be the second parent (at least 1; the
            reference uses 3).

    Returns:
        ``k`` references to members of ``individuals``.

    Raises:
        ValueError: if ``candidates`` is not a positive integer.
    """
    if isinstance(candidates, bool) or not isinstance(candidates, numbers.Integral) or candidates < 1:
        raise ValueError(f"hamming_farthest: candidates={candidates!r}; expected a positive integer")
    n = len(individuals)
    chosen: list[Any] = []
    for _ in range(k // 2):
        first = random.randrange(n)
        others = [i for i in range(n) if i != first]
        drawn = random.sample(others, min(candidates, len(others))) if others else [first]
        second = max(drawn, key=lambda i: _hamming(individuals[first], individuals[i]))
        chosen += [individuals[first], individuals[second]]
    if k % 2:
        chosen.append(random.choice(individuals))
    return chosen


def _check_nd(name: str, nd: str) -> None:
    if nd not in _ND_METHODS:
        raise ValueError(f"{name}: nd={nd!r}; expected one of {', '.join(map(repr, _ND_METHODS))}")


@register("selection")
def nsga2(individuals: Sequence[Any], k: int, nd: str = "standard") -> list[Any]:
    """NSGA-II environmental selection (``deap.tools.selNSGA2``).

    Keeps whole non-dominated fronts while they fit, then the most isolated members
    (crowding distance) of the front that does not. Sets ``fitness.crowding_dist`` on
    every individual, which ``deap.tools.selTournamentDCD`` reads.

    Args:
        individuals: the population to select from (multi-objective fitnesses).
        k: number of individuals to keep (at most ``len(individuals)``).
        nd: non-dominated sorting, ``"standard"`` or ``"log"``.

    Returns:
        ``k`` distinct references to members of ``individuals``.

    Raises:
        ValueError: if ``nd`` is not a known sorting method.
    """
    _check_nd("nsga2", nd)
    return tools.selNSGA2(list(individuals), k, nd=nd)


@functools.lru_cache(maxsize=32)
def _reference_points(nobj: int, p: int) -> np.ndarray:
    points = tools.uniform_reference_points(nobj, p)
    points.flags.writeable = False  # shared between calls through the cache
    return points


# nsga3's ``p`` counts divisions of the reference simplex: not a probability.
@register("selection", probabilities=(), counts=("p",))
def nsga3(
    individuals: Sequence[Any],
    k: int,
    ref_points: Any = None,
    p: int = 12,
    nd: str = "log",
) -> list[Any]:
    """NSGA-III environmental selection (``deap.tools.selNSGA3``).

    Args:
        individuals: the population to select from (multi-objective fitnesses).
        k: number of individuals to keep (at most ``len(individuals)``).
        ref_points: reference points, shape ``(n_points, n_objectives)``; by default
            ``deap.tools.uniform_reference_points(n_objectives, p)``, built from the
            fitness length on first use and cached.
        p: divisions per objective of the default reference points (at least 1; not a
            probability). Ignored when ``ref_points`` is given.
        nd: non-dominated sorting, ``"log"`` (DEAP's default here) or ``"standard"``.

    Returns:
        ``k`` distinct references to members of ``individuals``.

    Raises:
        ValueError: if ``nd`` is unknown or ``p`` is not a positive integer.
    """
    _check_nd("nsga3", nd)
    if not individuals or k <= 0:
        return []
    if ref_points is None:
        if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1:
            raise ValueError(f"nsga3: p={p!r}; expected a positive integer (divisions per objective)")
        ref_points = _reference_points(len(individuals[0].fitness.wvalues), int(p))
    return tools.selNSGA3(list(individuals), k, ref_points, nd=nd)


@register("selection")
def best(individuals: Sequence[Any], k: int) -> list[Any]:
    """Selects the ``k`` fittest individuals, best first (``deap.tools.selBest``).

    Args:
        individuals: the population to select from.
        k: number of individuals to select.

    Returns:
        Up to ``k`` distinct references to members of ``individuals``.
    """
    return tools.selBest(individuals, k)


def _minimised(individuals: Sequence[Any]) -> np.ndarray:
    """Fitness values turned into "smaller is better" columns (``-wvalues`` up to the weights' magnitudes)."""
    weights = np.asarray(individuals[0].fitness.weights, dtype=np.float64)
    values = np.array([ind.fitness.values for ind in individuals], dtype=np.float64)
    return -values * np.sign(weights)


def _non_dominated(points: np.ndarray) -> np.ndarray:
    """Which rows of a minimisation matrix no other row dominates (copies of a point all stay)."""
    le = np.all(points[:, None, :] <= points[None, :, :], axis=2)
    lt = np.any(points[:, None, :] < points[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    return ~dominated


@register("selection", counts=())
def heavy_knee_light(
    individuals: Sequence[Any],
    k: int = 3,
    accuracy_index: int = 0,
    complexity_index: int = 1,
    ideal_weights: Sequence[float] | None = None,
) -> list[Any]:
    """DeepPruningES' parents: the heavy, knee and light members of the non-dominated set.

    Candidates are the individuals non-dominated in all objectives that are also
    non-dominated on the accuracy-complexity pair (columns ``accuracy_index`` and
    ``complexity_index``; directions come from the fitness weights, so the accuracy
    column may be an error to minimise):

    * heavy: the best accuracy (ties: the lower complexity, then the first);
    * light: the lowest complexity (ties: the better accuracy, then the first);
    * knee: the minimum Manhattan distance to the ideal point, both objectives
      normalised to the candidates' own range (0 = best, 1 = worst; a constant
      objective counts 0), each term weighted by ``ideal_weights`` when given (ties:
      the better accuracy).

    Returns ``[heavy, knee, light]`` repeated and cut to ``k`` (references, possibly the
    same individual several times, as DEAP selections do). Individuals with an invalid
    fitness are ignored.

    Args:
        individuals: Evaluated individuals (multi-objective fitnesses).
        k: Number of individuals to return (3 for the three parents).
        accuracy_index: Fitness column of accuracy (or error).
        complexity_index: Fitness column of complexity (FLOPs, parameters...).
        ideal_weights: Two non-negative weights (accuracy, complexity) of the
            Manhattan distance (default: 1, 1).

    Returns:
        ``k`` references to members of ``individuals``.

    Raises:
        ValueError: Bad column indices or weights, or no evaluated individual.
    """
    pool = [ind for ind in individuals if ind.fitness.valid]
    if k <= 0:
        return []
    if not pool:
        raise ValueError("heavy_knee_light: no individual has a valid fitness; expected evaluated individuals")
    n_obj = len(pool[0].fitness.values)
    for label, index in (("accuracy_index", accuracy_index), ("complexity_index", complexity_index)):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < n_obj:
            raise ValueError(f"heavy_knee_light: {label}={index!r}; expected a fitness column in [0, {n_obj - 1}]")
    if accuracy_index == complexity_index:
        raise ValueError(f"heavy_knee_light: accuracy_index == complexity_index == {accuracy_index}; "
                         "expected two different columns")
    weights = np.ones(2) if ideal_weights is None else np.asarray(ideal_weights, dtype=np.float64)
    if weights.shape != (2,) or not np.all(np.isfinite(weights)) or np.any(weights < 0) or not weights.any():
        raise ValueError(f"heavy_knee_light: ideal_weights={ideal_weights!r}; expected two non-negative weights")
    points = _minimised(pool)
    front = np.flatnonzero(_non_dominated(points))
    pair = points[np.ix_(front, [accuracy_index, complexity_index])]
    two = front[_non_dominated(pair)]
    acc, cpx = points[two, accuracy_index], points[two, complexity_index]
    order = np.arange(len(two))
    heavy = two[np.lexsort((order, cpx, acc))[0]]
    light = two[np.lexsort((order, acc, cpx))[0]]
    norm = []
    for column in (acc, cpx):
        span = column.max() - column.min()
        norm.append((column - column.min()) / span if span > 0 else np.zeros_like(column))
    distance = weights[0] * norm[0] + weights[1] * norm[1]
    knee = two[np.lexsort((order, acc, np.round(distance, 12)))[0]]
    trio = [pool[heavy], pool[knee], pool[light]]
    return [trio[i % 3] for i in range(k)]

