"""operators.integer: DEAP contract, ranges, registry names, a real DEAP loop."""

from __future__ import annotations

import random

import numpy as np
import pytest
from deap import algorithms, base, creator, tools

import operators
from operators import integer

if not hasattr(creator, "OpsIntFitness"):
    creator.create("OpsIntFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "OpsIntIndividual"):
    creator.create("OpsIntIndividual", list, fitness=creator.OpsIntFitness)
if not hasattr(creator, "OpsIntArrayIndividual"):
    creator.create("OpsIntArrayIndividual", np.ndarray, fitness=creator.OpsIntFitness)

CHOICES = [3, 3, 4, 2, 1, 10]


def test_registered_by_name() -> None:
    assert operators.get("init", "uniform_int") is integer.uniform_int
    assert operators.get("mutation", "mutate_categorical") is integer.mutate_categorical
    assert operators.get("mutation", "mutate_step") is integer.mutate_step
    function, options = operators.resolve({"name": "mutate_categorical", "choices": 3, "indpb": 0.2}, "mutation")
    assert function is integer.mutate_categorical and options["indpb"] == 0.2
    with pytest.raises(ValueError, match="indpb=1.5 is not a probability"):
        operators.resolve({"name": "mutate_step", "choices": 3, "indpb": 1.5}, "mutation")


@pytest.mark.parametrize("container", [creator.OpsIntIndividual, creator.OpsIntArrayIndividual, list])
def test_uniform_int_in_range_and_covers_choices(container) -> None:
    random.seed(1)
    seen = [set() for _ in CHOICES]
    for _ in range(200):
        ind = integer.uniform_int(container, len(CHOICES), CHOICES)
        assert isinstance(ind, container)
        for i, (g, c) in enumerate(zip(ind, CHOICES)):
            assert 0 <= int(g) < c
            seen[i].add(int(g))
    assert [len(s) for s in seen] == CHOICES
    if container is creator.OpsIntArrayIndividual:
        assert ind.dtype == np.int64 and isinstance(ind.fitness, creator.OpsIntFitness)


def test_uniform_int_bad_choices() -> None:
    with pytest.raises(ValueError, match="2 choice counts for a genome of 3 genes"):
        integer.uniform_int(list, 3, [2, 2])
    with pytest.raises(ValueError, match="choice count 0 is below 1"):
        integer.uniform_int(list, 2, [2, 0])
    with pytest.raises(ValueError, match="n=0"):
        integer.uniform_int(list, 0, 2)


@pytest.mark.parametrize("mutate", [integer.mutate_categorical, integer.mutate_step])
def test_mutation_contract_and_range(mutate) -> None:
    random.seed(2)
    for _ in range(100):
        ind = creator.OpsIntIndividual(integer.uniform_int(list, len(CHOICES), CHOICES))
        before = list(ind)
        result = mutate(ind, choices=CHOICES, indpb=1.0)
        assert isinstance(result, tuple) and len(result) == 1 and result[0] is ind
        for g, c, old in zip(ind, CHOICES, before):
            assert 0 <= g < c and isinstance(g, int)
            if c > 1:
                assert g != old  # indpb=1 always changes a gene that has another choice
            else:
                assert g == old
        if mutate is integer.mutate_step:
            assert all(abs(g - old) == 1 for g, old, c in zip(ind, before, CHOICES) if c > 1)


def test_mutation_rate_and_uniform_redraw() -> None:
    random.seed(3)
    n, changed = 2000, 0
    values = []
    for _ in range(n):
        ind = [0]
        integer.mutate_categorical(ind, choices=[4], indpb=0.3)
        changed += ind[0] != 0
        if ind[0]:
            values.append(ind[0])
    assert 0.25 < changed / n < 0.35
    counts = np.bincount(values, minlength=4)[1:]
    assert counts.min() > 0.25 * len(values)  # the other three values equally likely


def test_numpy_individual_mutates_in_place() -> None:
    random.seed(4)
    ind = creator.OpsIntArrayIndividual(np.zeros(6, dtype=np.int64))
    (out,) = integer.mutate_categorical(ind, choices=5, indpb=1.0)
    assert out is ind and ind.dtype == np.int64 and (ind > 0).all()


def test_deap_easimple_runs_with_registered_operators() -> None:
    """The operators plug into deap.algorithms.eaSimple and optimise a toy objective."""
    random.seed(5)
    choices = [5] * 8
    toolbox = base.Toolbox()
    toolbox.register("individual", operators.get("init", "uniform_int"), creator.OpsIntIndividual, 8, choices)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("mate", operators.get("crossover", "uniform"), indpb=0.5)
    toolbox.register("mutate", operators.get("mutation", "mutate_step"), choices=choices, indpb=0.2)
    toolbox.register("select", operators.get("selection", "tournament"), tournsize=3)
    toolbox.register("evaluate", lambda ind: (float(sum(ind)),))
    pop = toolbox.population(n=20)
    start = max(sum(i) for i in pop)
    pop, _ = algorithms.eaSimple(pop, toolbox, cxpb=0.5, mutpb=0.5, ngen=15, verbose=False)
    best = max(sum(i) for i in pop)
    assert best > start and best >= 30
    assert all(0 <= g < 5 for ind in pop for g in ind)
