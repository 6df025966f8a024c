"""Tests for operators.init: containers, densities, never an empty head."""

from __future__ import annotations

import pickle
import random
import statistics
from typing import Any

import numpy as np
import pytest
from deap import base, creator, tools

from operators import init

if not hasattr(creator, "OpsInitFitness"):
    creator.create("OpsInitFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "OpsInitIndividual"):
    creator.create("OpsInitIndividual", np.ndarray, fitness=creator.OpsInitFitness)
if not hasattr(creator, "OpsInitListIndividual"):
    creator.create("OpsInitListIndividual", list, fitness=creator.OpsInitFitness)

INITIALISERS = {
    "random_density": init.random_density,
    "bernoulli": init.bernoulli,
    "ones": init.ones,
}


@pytest.mark.parametrize("name", list(INITIALISERS))
def test_numpy_creator_individual(name: str) -> None:
    random.seed(0)
    ind = INITIALISERS[name](creator.OpsInitIndividual, 50)
    assert type(ind) is creator.OpsInitIndividual
    assert ind.dtype == np.int8 and ind.shape == (50,)
    assert set(np.unique(ind).tolist()) <= {0, 1}
    # A real Fitness instance (not the class, as ``.view(container)`` would leave).
    assert isinstance(ind.fitness, creator.OpsInitFitness) and not ind.fitness.valid
    ind.fitness.values = (1.0,)
    clone = pickle.loads(pickle.dumps(ind))
    np.testing.assert_array_equal(clone, ind)
    assert clone.fitness.values == (1.0,)


@pytest.mark.parametrize("name", list(INITIALISERS))
@pytest.mark.parametrize("container", [creator.OpsInitListIndividual, list, np.ndarray])
def test_other_containers(name: str, container: type) -> None:
    random.seed(1)
    ind = INITIALISERS[name](container, 20)
    assert type(ind) is container and len(ind) == 20
    if container is np.ndarray:
        assert ind.dtype == np.int8
    else:
        assert all(type(g) is int and g in (0, 1) for g in ind)


def test_random_density_densities_vary_across_individuals() -> None:
    random.seed(2)
    densities = [float(init.random_density(creator.OpsInitIndividual, 400).mean()) for _ in range(60)]
    assert min(densities) < 0.2 and max(densities) > 0.8
    assert statistics.stdev(densities) > 0.2  # U(0, 1) has sd 0.29


def test_random_density_is_never_all_zero() -> None:
    random.seed(3)
    for n in (1, 2, 5):
        for _ in range(300):
            assert init.random_density(creator.OpsInitIndividual, n).sum() >= 1
    # A zero density still leaves exactly one active bit.
    for _ in range(20):
        assert init.random_density(list, 30, low=0.0, high=0.0).count(1) == 1


def test_random_density_bounds_and_exact_count() -> None:
    random.seed(4)
    assert init.random_density(list, 30, low=1.0, high=1.0) == [1] * 30
    densities = [init.random_density(list, 500, low=0.3, high=0.4).count(1) / 500 for _ in range(30)]
    assert all(0.22 < d < 0.48 for d in densities)
    for _ in range(10):
        assert init.random_density(list, 100, low=0.25, high=0.25, exact=True).count(1) == 25
    assert init.random_density(list, 100, low=0.0, high=0.0, exact=True).count(1) == 1


@pytest.mark.parametrize("low, high", [(-0.1, 0.5), (0.6, 0.5), (0.0, 1.5)])
def test_random_density_rejects_bad_bounds(low: float, high: float) -> None:
    with pytest.raises(ValueError, match=rf"low={low!r}, high={high!r}; expected 0 <= low <= high <= 1"):
        init.random_density(list, 10, low=low, high=high)


@pytest.mark.parametrize("name", list(INITIALISERS))
@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_length_raises(name: str, n: Any) -> None:
    with pytest.raises(ValueError, match=rf"n={n!r}; expected a positive integer"):
        INITIALISERS[name](list, n)


def test_bernoulli_density_and_extremes() -> None:
    random.seed(5)
    assert abs(float(init.bernoulli(creator.OpsInitIndividual, 10_000, p=0.3).mean()) - 0.3) < 0.02
    assert init.bernoulli(list, 40, p=1.0) == [1] * 40
    for _ in range(20):
        assert init.bernoulli(list, 40, p=0.0).count(1) == 1


def test_ones_is_the_unpruned_head() -> None:
    assert init.ones(creator.OpsInitIndividual, 7).tolist() == [1] * 7


def test_seeding_random_reproduces_a_population() -> None:
    def draw() -> list[list[int]]:
        random.seed(6)
        pop = tools.initRepeat(list, lambda: init.random_density(creator.OpsInitIndividual, 64), 10)
        return [ind.tolist() for ind in pop]

    np.random.seed(0)
    first = draw()
    np.random.seed(1)  # NumPy's global RNG plays no part
    assert draw() == first
