"""Pareto utilities: dominance, exact hypervolume, knee, DeepPruningES trade-offs, logbook record."""

import numpy as np
import pytest
from deap import base

from evoprune_tf.search.statistics import front_record, make_front_record
from evoprune_tf.search.pareto import (
    hypervolume,
    knee_point,
    non_dominated,
    normalise,
    trade_off_models,
)

# (accuracy max, active fraction min)
ACC_FRAC = (1.0, -1.0)


def test_non_dominated_respects_directions_and_keeps_duplicates():
    points = np.array([[0.9, 0.5], [0.8, 0.2], [0.6, 0.1], [0.7, 0.3], [0.9, 0.5], [0.5, 0.6]])
    assert non_dominated(points, ACC_FRAC).tolist() == [True, True, True, False, True, False]
    # both maximised: only the best accuracy survives among equal-or-worse fractions
    assert non_dominated(points, (1.0, 1.0)).tolist() == [True, False, False, False, True, True]
    # weight magnitudes are ignored
    assert non_dominated(points, (2.0, -0.5)).tolist() == non_dominated(points, ACC_FRAC).tolist()


def test_invalid_inputs_name_the_bad_value():
    with pytest.raises(ValueError, match="weights"):
        non_dominated(np.zeros((3, 2)), (1.0,))
    with pytest.raises(ValueError, match="non-zero"):
        non_dominated(np.zeros((3, 2)), (1.0, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        hypervolume(np.array([[np.nan, 0.1]]), ACC_FRAC)
    with pytest.raises(ValueError, match="reference"):
        hypervolume(np.array([[0.5, 0.1]]), ACC_FRAC, reference=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="upper > lower"):
        hypervolume(np.array([[0.5, 0.1]]), ACC_FRAC, bounds=([0, 1], [1, 1]))


def test_hypervolume_2d_hand_computed():
    points = np.array([[0.9, 0.5], [0.8, 0.2], [0.6, 0.1]])
    # normalised minimisation space: (0.1, 0.5), (0.2, 0.2), (0.4, 0.1)
    np.testing.assert_allclose(normalise(points, ACC_FRAC), [[0.1, 0.5], [0.2, 0.2], [0.4, 0.1]], atol=1e-12)
    # reference (1, 1): 0.1*0.5 + 0.2*0.8 + 0.6*0.9
    assert hypervolume(points, ACC_FRAC, reference=[1.0, 1.0]) == pytest.approx(0.75)
    # default reference (1.1, 1.1): 0.1*0.6 + 0.2*0.9 + 0.7*1.0
    assert hypervolume(points, ACC_FRAC) == pytest.approx(0.94)
    # dominated points and duplicates add nothing; order does not matter
    more = np.vstack([points, [[0.7, 0.3], [0.8, 0.2]]])[::-1]
    assert hypervolume(more, ACC_FRAC) == pytest.approx(0.94)
    # a point beyond the reference adds nothing; an empty set has volume 0
    assert hypervolume(np.array([[-0.5, 0.5]]), ACC_FRAC) == 0.0
    assert hypervolume(np.zeros((0, 2)), ACC_FRAC) == 0.0
    # custom bounds: accuracy in [0.5, 1] doubles the accuracy axis' normalised distances
    assert hypervolume(np.array([[0.75, 0.5]]), ACC_FRAC, reference=[1, 1], bounds=([0.5, 0], [1, 1])) == pytest.approx(
        0.5 * 0.5
    )


def test_hypervolume_3d_hand_computed():
    minimise = (-1.0, -1.0, -1.0)
    ref = [1.0, 1.0, 1.0]
    assert hypervolume(np.array([[0.5, 0.5, 0.5]]), minimise, reference=ref) == pytest.approx(0.125)
    # two boxes: [0,1]^2 x [0.5,1] (0.5) and [0.5,1]^2 x [0,1] (0.25), overlapping in 0.125
    two = np.array([[0.0, 0.0, 0.5], [0.5, 0.5, 0.0]])
    assert hypervolume(two, minimise, reference=ref) == pytest.approx(0.625)
    # three axis-aligned "L" points: inclusion-exclusion by hand
    three = np.array([[0.2, 0.6, 0.6], [0.6, 0.2, 0.6], [0.6, 0.6, 0.2]])
    single = 0.8 * 0.4 * 0.4
    overlap = 0.4**3  # every pair, and the triple, overlap in [0.6, 1]^3
    assert hypervolume(three, minimise, reference=ref) == pytest.approx(3 * single - 3 * overlap + overlap)
    # mixed directions: (accuracy max, active fraction min, AUROC max) with the default reference
    mo = np.array([[0.9, 0.3, 0.8]])
    assert hypervolume(mo, (1.0, -1.0, 1.0)) == pytest.approx((1.1 - 0.1) * (1.1 - 0.3) * (1.1 - 0.2))


def _grid_volume(norm: np.ndarray, ref: float, step: float) -> float:
    """Hypervolume by counting grid cells: exact when every coordinate and ``ref`` lie on the grid.

    A cell ``[c, c + step)^k`` is dominated when some point is ``<=`` its lower corner in
    every objective (minimisation); independent of moocore and of `hypervolume`.
    """
    k = norm.shape[1]
    n_cells = int(round(ref / step))
    axes = np.meshgrid(*[np.arange(n_cells) * step] * k, indexing="ij")
    corners = np.stack([a.ravel() for a in axes], axis=1)
    dominated = np.zeros(len(corners), dtype=bool)
    for point in norm:
        dominated |= np.all(corners >= point - 1e-9, axis=1)
    return float(dominated.sum()) * step**k


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_equals_cell_counting_on_random_grid_sets(k):
    # points on a 0.05 grid in natural units, random directions: the dominated region is a
    # union of whole grid cells below the default reference 1.1, so counting them is exact
    rng = np.random.default_rng(k)
    for _ in range(4):
        points = rng.integers(0, 21, size=(12, k)) / 20.0
        weights = tuple(rng.choice([-1.0, 1.0], size=k))
        norm = np.where(np.asarray(weights) > 0, 1.0 - points, points)
        expected = _grid_volume(norm, 1.1, 0.05)
        assert expected > 0
        assert hypervolume(points, weights) == pytest.approx(expected, abs=1e-9)


def test_hypervolume_reference_point_edge_cases():
    minimise = (-1.0, -1.0)
    # a point on the reference in one objective spans a box of zero width: it adds nothing
    assert hypervolume(np.array([[1.0, 0.2]]), minimise, reference=[1.0, 1.0]) == 0.0
    assert hypervolume(np.array([[1.0, 0.2], [0.5, 0.5]]), minimise, reference=[1.0, 1.0]) == pytest.approx(0.25)
    # beyond the reference in one objective only: nothing, whatever the other objective
    assert hypervolume(np.array([[1.05, 0.0]]), minimise, reference=[1.0, 1.0]) == 0.0
    # a reference below every point: volume 0; the ideal point against the reference: the full box
    assert hypervolume(np.array([[0.3, 0.3]]), minimise, reference=[0.2, 0.9]) == 0.0
    assert hypervolume(np.array([[0.0, 0.0]]), minimise, reference=[0.2, 0.9]) == pytest.approx(0.18)
    # a non-square reference scales each side separately: (2 - 0.5) * (0.5 - 0.25)
    assert hypervolume(np.array([[0.5, 0.25]]), minimise, reference=[2.0, 0.5]) == pytest.approx(0.375)
    # the reference is read in the normalised space: accuracy 0.9 maximised is 0.1 there
    assert hypervolume(np.array([[0.9, 0.25]]), ACC_FRAC, reference=[0.5, 0.5]) == pytest.approx(0.4 * 0.25)
    # 3-D: points on the reference faces add nothing, the rest keep their boxes
    three = np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert hypervolume(three, (-1.0,) * 3, reference=[1.0, 1.0, 1.0]) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="finite"):
        hypervolume(np.array([[0.5, 0.5]]), minimise, reference=[1.0, np.inf])


def _convex_front(n=11):
    """Accuracy vs active fraction with a clear knee at (0.9, 0.2)."""
    frac = np.linspace(0.0, 1.0, n)
    acc = np.where(frac < 0.2, 0.4 + 2.5 * frac, 0.9 + 0.1 * (frac - 0.2) / 0.8)
    return np.column_stack([acc, frac])


def test_knee_is_the_bend_of_the_front():
    front = _convex_front()
    assert front[knee_point(front, ACC_FRAC)].tolist() == pytest.approx([0.9, 0.2])
    # dominated extra points are never the knee; indices refer to the input rows
    noisy = np.vstack([[[0.5, 0.9], [0.3, 0.5]], front])
    assert knee_point(noisy, ACC_FRAC) == 2 + 2
    # one or two points: the one nearest the ideal point after normalisation
    assert knee_point(front[[2]], ACC_FRAC) == 0
    # the knee is found in three objectives too (a constant third objective changes nothing)
    three = np.column_stack([front, np.full(len(front), 0.7)])
    assert knee_point(three, (1.0, -1.0, 1.0)) == 2
    with pytest.raises(ValueError, match="empty"):
        knee_point(np.zeros((0, 2)), ACC_FRAC)


def test_knee_in_three_objectives_uses_the_extremes_hyperplane():
    minimise = (-1.0, -1.0, -1.0)
    points = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.3, 0.3, 0.3], [0.6, 0.6, 0.2]])
    assert knee_point(points, minimise) == 3


def test_trade_off_models_heavy_knee_light():
    front = _convex_front()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(front))
    points = np.vstack([front[order], [[0.6, 0.5]]])  # plus a dominated point
    picked = trade_off_models(points, ACC_FRAC)
    assert points[picked["heavy"]].tolist() == pytest.approx([1.0, 1.0])
    assert points[picked["light"]].tolist() == pytest.approx([0.4, 0.0])
    assert points[picked["knee"]].tolist() == pytest.approx([0.9, 0.2])
    # DeepPruningES: (error min, FLOPs min) in columns (1, 0), plus an extra objective
    error_flops = np.column_stack([points[:, 1] * 1e9, 1 - points[:, 0], rng.random(len(points))])
    swapped = trade_off_models(error_flops, (-1.0, -1.0, 1.0), accuracy_index=1, complexity_index=0)
    assert error_flops[swapped["heavy"], 1] == pytest.approx(0.0)
    assert error_flops[swapped["light"], 0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="complexity_index"):
        trade_off_models(points, ACC_FRAC, complexity_index=2)
    with pytest.raises(ValueError, match="different"):
        trade_off_models(points, ACC_FRAC, accuracy_index=1, complexity_index=1)


def test_trade_offs_break_accuracy_ties_by_complexity():
    points = np.array([[0.95, 0.6, 0.9], [0.95, 0.4, 0.5], [0.8, 0.1, 0.9]])
    picked = trade_off_models(points, (1.0, -1.0, 1.0))
    assert picked["heavy"] == 1 and picked["light"] == 2


class _Fitness(base.Fitness):
    weights = (1.0, -1.0)


class _Individual(np.ndarray):
    """A NumPy genome with a DEAP fitness, like the toolbox's individuals."""


def _individual(genes, values):
    ind = np.asarray(genes, dtype=np.int8).view(_Individual)
    ind.fitness = _Fitness(values)
    return ind


def test_front_record_adds_front_size_and_hypervolume():
    population = [
        _individual([1, 1, 1, 0, 0], (0.9, 0.5)),
        _individual([1, 1, 0, 0, 0], (0.8, 0.2)),
        _individual([1, 0, 0, 0, 0], (0.6, 0.1)),
        _individual([1, 1, 1, 1, 0], (0.7, 0.3)),
    ]
    halloffame = [population[0]]
    record = front_record(population, halloffame)
    assert record["front_size"] == 3
    assert record["hypervolume"] == pytest.approx(0.94)
    assert record["best"] == pytest.approx(0.9) and "mean_active" in record
    bound = make_front_record(bounds=([0.5, 0.0], [1.0, 1.0]), reference=[1.0, 1.0])(population, halloffame)
    # normalised: (0.2, 0.5), (0.4, 0.2), (0.8, 0.1)
    assert bound["hypervolume"] == pytest.approx(0.2 * 0.5 + 0.4 * 0.8 + 0.2 * 0.9)


def test_hypervolume_from_moocore_equals_the_former_exact_slicing():
    # Values of the hand-written exact slicing algorithm this module used before it
    # switched to moocore (DEAP's own hypervolume backend), for the same points.
    rng = np.random.default_rng(0)
    former = {2: 1.1636906296471914, 3: 0.8255966937393714, 4: 0.7725994788223177}
    for k, value in former.items():
        points = rng.random((30, k))
        assert hypervolume(points, (-1.0,) * k) == pytest.approx(value, rel=1e-12)
