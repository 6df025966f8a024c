"""Pareto fronts of multi-objective runs: dominance, hypervolume, knee and trade-off models.

Objective vectors are plain arrays ``(n, k)`` in their natural units (accuracy, active
fraction, AUROC...) together with DEAP fitness weights: the *sign* of each weight says
whether the objective is maximised (``> 0``) or minimised (``< 0``); magnitudes are
ignored. Everything here is NumPy only.

Hypervolumes are computed after mapping every objective to "minimise within [0, 1]"
with **fixed** bounds (default ``[0, 1]`` for every objective, which fits accuracy,
active fraction and AUROC), so values of different runs, generations and datasets are
comparable; the default reference point is ``(1.1, ..., 1.1)`` in that normalised
space, so the extreme points of a front still contribute. The computation is exact
(a sweep for two objectives, slicing along the last objective for three or more).

The knee and the DeepPruningES trade-off models (``heavy`` / ``knee`` / ``light``) use
the front's *own* range instead, since a knee is a property of the front's shape.
"""

from __future__ import annotations

from typing import Sequence

import moocore
import numpy as np

__all__ = [
    "non_dominated",
    "normalise",
    "hypervolume",
    "knee_point",
    "trade_off_models",
]


# ------------------------------------------------------------------------- helpers


def _check(points: np.ndarray | Sequence[Sequence[float]], weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Validate points ``(n, k)`` and weights ``(k,)``; returns float points and weight signs."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size == 0:
        pts = pts.reshape(0, len(weights))
    if pts.ndim != 2:
        raise ValueError(f"points have shape {pts.shape}; expected (n_points, n_objectives)")
    signs = np.sign(np.asarray(weights, dtype=np.float64))
    if signs.ndim != 1 or len(signs) != pts.shape[1]:
        raise ValueError(f"weights={tuple(weights)}; expected {pts.shape[1]} weights, one per objective")
    if np.any(signs == 0):
        raise ValueError(f"weights={tuple(weights)}; expected non-zero weights (+1 maximise, -1 minimise)")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points hold NaN or infinite values; expected finite objective values")
    return pts, signs


def normalise(
    points: np.ndarray,
    weights: Sequence[float],
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Map objective values to "minimise, 0 = best bound, 1 = worst bound".

    Args:
        points: ``(n, k)`` objective values in their natural units.
        weights: DEAP weights; the sign gives the direction of each objective.
        bounds: ``(lower, upper)``, each ``(k,)``, the range of every objective in its
            natural units; default ``[0, 1]`` for every objective. Values outside the
            bounds map outside ``[0, 1]`` (they are not clipped).

    Returns:
        ``(n, k)`` float64 array: for a maximised objective ``(upper - v) / (upper - lower)``,
        for a minimised one ``(v - lower) / (upper - lower)``.
    """
    pts, signs = _check(points, weights)
    k = pts.shape[1]
    if bounds is None:
        lower, upper = np.zeros(k), np.ones(k)
    else:
        if len(bounds) != 2:
            raise ValueError(f"bounds has {len(bounds)} entries; expected (lower, upper)")
        lower = np.broadcast_to(np.asarray(bounds[0], dtype=np.float64), (k,))
        upper = np.broadcast_to(np.asarray(bounds[1], dtype=np.float64), (k,))
        if not np.all(upper > lower):
            raise ValueError(f"bounds=({lower.tolist()}, {upper.tolist()}); expected upper > lower for every objective")
    scaled = (pts - lower) / (upper - lower)
    return np.where(signs > 0, 1.0 - scaled, scaled)


def non_dominated(points: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Which points are not dominated by any other point.

    Args:
        points: ``(n, k)`` objective values.
        weights: DEAP weights (``+1`` maximise, ``-1`` minimise).

    Returns:
        ``(n,)`` boolean mask. Duplicate points do not dominate each other, so every
        copy of a non-dominated point is kept.
    """
    pts, signs = _check(points, weights)
    return moocore.is_nondominated(-pts * signs, keep_weakly=True)


# --------------------------------------------------------------------- hypervolume


def hypervolume(
    points: np.ndarray,
    weights: Sequence[float],
    reference: np.ndarray | Sequence[float] | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Exact hypervolume of a set of objective vectors in normalised space.

    Every objective is mapped to "minimise within [0, 1]" by `normalise` with fixed
    ``bounds`` (default ``[0, 1]`` for every objective: accuracy, active fraction and
    AUROC all live there), so the largest possible value is ``prod(reference)`` and
    values are comparable across runs. Dominated points are allowed (they add nothing).
    Points that are not strictly better than the reference in every objective add
    nothing either.

    Args:
        points: ``(n, k)`` objective values in natural units.
        weights: DEAP weights (``+1`` maximise, ``-1`` minimise).
        reference: ``(k,)`` reference point in the *normalised minimisation* space;
            default ``(1.1, ..., 1.1)``.
        bounds: ``(lower, upper)`` of every objective in natural units (see `normalise`).

    Returns:
        The hypervolume (``0.0`` for an empty set), exact, computed by `moocore` (the
        library DEAP's own hypervolume indicator uses).
    """
    norm = normalise(points, weights, bounds)
    k = norm.shape[1]
    ref = np.full(k, 1.1) if reference is None else np.asarray(reference, dtype=np.float64)
    if ref.shape != (k,) or not np.all(np.isfinite(ref)):
        raise ValueError(f"reference={np.asarray(reference).tolist()}; expected {k} finite values (normalised space)")
    inside = norm[np.all(norm < ref, axis=1)]
    return float(moocore.hypervolume(inside, ref=ref)) if len(inside) else 0.0


# ------------------------------------------------------------ knee and trade-offs


def _front_normalised(pts: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Minimisation space scaled to the points' own range: 0 = best, 1 = worst (constant objective: 0)."""
    minimised = -pts * signs
    low, high = minimised.min(axis=0), minimised.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return (minimised - low) / span


def _knee(norm: np.ndarray) -> int:
    """Index of the knee of normalised (minimised, front-range) points."""
    n, k = norm.shape
    if n <= 2:
        # two points: neither is a knee of a curve; take the one nearer the ideal point
        return int(np.argmin(np.linalg.norm(norm, axis=1)))
    # extreme points: best in each objective, ties broken by the sum of the others
    extremes = np.stack([norm[np.lexsort((norm.sum(axis=1), norm[:, j]))[0]] for j in range(k)])
    normal, _, rank, _ = np.linalg.lstsq(extremes, np.ones(k), rcond=None)
    if rank < k or not np.all(np.isfinite(normal)) or np.linalg.norm(normal) == 0:
        return int(np.argmin(np.linalg.norm(norm, axis=1)))
    # signed distance from the hyperplane {p : p @ normal = 1}, positive on the ideal side
    distance = (1.0 - norm @ normal) / np.linalg.norm(normal)
    ideal = np.linalg.norm(norm, axis=1)
    return int(np.lexsort((ideal, -np.round(distance, 12)))[0])


def knee_point(points: np.ndarray, weights: Sequence[float]) -> int:
    """Index of the knee of a front.

    Only the non-dominated points are candidates. They are normalised to their own range
    (minimisation, 0 = best value on the front, 1 = worst) and the knee is the point
    farthest from the hyperplane through the extreme points (for two objectives: the
    line between the two ends of the front), on the side of the ideal point. Ties go to
    the point nearest the ideal point. When the extreme points do not span a hyperplane
    (a degenerate front, or at most two points), the point nearest the ideal point is
    returned instead.

    Args:
        points: ``(n, k)`` objective values, ``n >= 1``.
        weights: DEAP weights (``+1`` maximise, ``-1`` minimise).

    Returns:
        An index into ``points``.
    """
    pts, signs = _check(points, weights)
    if len(pts) == 0:
        raise ValueError("points is empty; expected at least one point to find a knee")
    front = np.flatnonzero(moocore.is_nondominated(-pts * signs, keep_weakly=True))
    return int(front[_knee(_front_normalised(pts[front], signs))])


def trade_off_models(
    points: np.ndarray,
    weights: Sequence[float],
    accuracy_index: int = 0,
    complexity_index: int = 1,
) -> dict[str, int]:
    """DeepPruningES's three models for the decision maker: ``heavy``, ``knee``, ``light``.

    Candidates are the non-dominated points (in all objectives); the three models are
    picked on the accuracy-complexity trade-off, i.e. on the points among them that are
    also non-dominated in those two objectives alone:

    * ``heavy``: the best accuracy (ties: the lower complexity);
    * ``light``: the lowest complexity (ties: the better accuracy);
    * ``knee``: `knee_point` of that two-objective front.

    Directions come from ``weights``, so "accuracy" may as well be an error (weight -1)
    and "complexity" FLOPs or the active fraction (weight -1).

    Args:
        points: ``(n, k)`` objective values, ``n >= 1``.
        weights: DEAP weights.
        accuracy_index: column of the accuracy (or error) objective.
        complexity_index: column of the complexity objective.

    Returns:
        ``{"heavy": i, "knee": j, "light": l}``, indices into ``points`` (they may coincide).
    """
    pts, signs = _check(points, weights)
    k = pts.shape[1]
    for name, index in (("accuracy_index", accuracy_index), ("complexity_index", complexity_index)):
        if not 0 <= index < k:
            raise ValueError(f"{name}={index}; expected an objective index in [0, {k - 1}]")
    if accuracy_index == complexity_index:
        raise ValueError(f"accuracy_index == complexity_index == {accuracy_index}; expected two different objectives")
    if len(pts) == 0:
        raise ValueError("points is empty; expected at least one point")
    minimised = -pts * signs
    front = np.flatnonzero(moocore.is_nondominated(minimised, keep_weakly=True))
    cols = [accuracy_index, complexity_index]
    two = front[moocore.is_nondominated(minimised[np.ix_(front, cols)], keep_weakly=True)]
    acc, cpx = minimised[two, accuracy_index], minimised[two, complexity_index]
    heavy = two[np.lexsort((cpx, acc))[0]]
    light = two[np.lexsort((acc, cpx))[0]]
    knee = two[_knee(_front_normalised(pts[np.ix_(two, cols)], signs[cols]))]
    return {"heavy": int(heavy), "knee": int(knee), "light": int(light)}


# --------------------------------------------------------------- logbook records
