"""Count-keeping operators (fixed-budget search): every operator keeps exactly k genes on."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from deap import base, creator
from hypothesis import given, settings
from hypothesis import strategies as st

import operators
from operators import cardinality

if not hasattr(creator, "OpsCardFitness"):
    creator.create("OpsCardFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "OpsCardIndividual"):
    creator.create("OpsCardIndividual", np.ndarray, fitness=creator.OpsCardFitness)
if not hasattr(creator, "OpsCardListIndividual"):
    creator.create("OpsCardListIndividual", list, fitness=creator.OpsCardFitness)


@st.composite
def genome_pair(draw: Any) -> tuple[list[int], list[int], int]:
    """Two genomes of one length n with the same count k of ones (0 <= k <= n)."""
    n = draw(st.integers(1, 60))
    k = draw(st.integers(0, n))
    first = draw(st.permutations(range(n)))[:k]
    second = draw(st.permutations(range(n)))[:k]
    a, b = [0] * n, [0] * n
    for i in first:
        a[i] = 1
    for i in second:
        b[i] = 1
    return a, b, k


def make(bits: list[int], container: str) -> Any:
    if container == "numpy":
        return creator.OpsCardIndividual(np.asarray(bits, dtype=np.int8))
    return creator.OpsCardListIndividual(list(bits))


def ones(individual: Any) -> int:
    return int(sum(int(g) for g in individual))


CONTAINERS = st.sampled_from(["numpy", "list"])


@settings(max_examples=150, deadline=None)
@given(pair=genome_pair(), container=CONTAINERS, seed=st.integers(0, 2**32 - 1),
       indpb=st.floats(0.0, 1.0), name=st.sampled_from(["uniform_k", "two_point_k"]))
def test_crossovers_keep_both_childrens_count(pair, container, seed, indpb, name) -> None:
    a, b, k = pair
    random.seed(seed)
    ind1, ind2 = make(a, container), make(b, container)
    options = {"indpb": indpb} if name == "uniform_k" else {}
    children = operators.get("crossover", name)(ind1, ind2, **options)
    assert children[0] is ind1 and children[1] is ind2  # DEAP: modified in place, returned as a pair
    assert ones(ind1) == ones(ind2) == k
    # genes both parents share stay; nothing appears where neither parent had a gene
    shared = [i for i in range(len(a)) if a[i] and b[i]]
    union = {i for i in range(len(a)) if a[i] or b[i]}
    for child in (ind1, ind2):
        assert all(child[i] for i in shared)
        assert {i for i, g in enumerate(child) if g} <= union
    if container == "numpy":
        assert ind1.dtype == ind2.dtype == np.int8


@settings(max_examples=150, deadline=None)
@given(pair=genome_pair(), container=CONTAINERS, seed=st.integers(0, 2**32 - 1), indpb=st.floats(0.0, 1.0),
       name=st.sampled_from(["swap", "swap_one"]))
def test_mutations_keep_the_count(pair, container, seed, indpb, name) -> None:
    a, _, k = pair
    random.seed(seed)
    ind = make(a, container)
    result = operators.get("mutation", name)(ind, indpb=indpb)
    assert isinstance(result, tuple) and len(result) == 1 and result[0] is ind
    assert ones(ind) == k
    assert set(int(g) for g in ind) <= {0, 1}


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 300), data=st.data(), seed=st.integers(0, 2**32 - 1), container=CONTAINERS)
def test_random_k_draws_exactly_k_for_a_count_or_a_fraction(n, data, seed, container) -> None:
    random.seed(seed)
    k = data.draw(st.integers(1, n))
    cls = creator.OpsCardIndividual if container == "numpy" else creator.OpsCardListIndividual
    assert ones(cardinality.random_k(cls, n, k)) == k
    fraction = data.draw(st.floats(1e-6, 1.0))
    expected = max(1, min(n, round(fraction * n)))
    assert ones(cardinality.random_k(cls, n, fraction)) == expected == cardinality.count_of(fraction, n)


def test_swap_moves_genes_at_the_rate_and_swap_one_exactly_one() -> None:
    random.seed(3)
    n, k = 2000, 500
    ind = np.zeros(n, dtype=np.int8)
    ind[:k] = 1
    before = ind.copy()
    cardinality.swap(ind, indpb=0.2)
    moved = int((before.astype(bool) & ~ind.astype(bool)).sum())
    assert ind.sum() == k and abs(moved - 0.2 * k) < 45  # sd ~ 9
    ind = before.copy()
    cardinality.swap_one(ind, indpb=1.0)
    assert ind.sum() == k and int((ind != before).sum()) == 2
    ind = before.copy()
    cardinality.swap_one(ind, indpb=0.0)
    assert np.array_equal(ind, before)


def test_uniform_k_mixes_the_parents_differing_genes() -> None:
    """Children are not copies of a parent: the repair picks among both parents' genes."""
    random.seed(0)
    a = np.zeros(40, dtype=np.int8)
    b = np.zeros(40, dtype=np.int8)
    a[:10], b[30:] = 1, 1
    mixed = 0
    for _ in range(50):
        c1, c2 = cardinality.uniform_k(a.copy(), b.copy())
        mixed += bool(c1[:10].any() and c1[30:].any())
    assert mixed > 40


def test_count_of_refuses_a_budget_outside_the_genome_in_one_line() -> None:
    assert cardinality.count_of(5, 100) == 5 and cardinality.count_of(0.05, 100) == 5
    assert cardinality.count_of(0.001, 100) == 1 and cardinality.count_of(1.0, 100) == 100
    for bad, pattern in ((0, r"active=0 is outside \(0, 100\]"), (101, r"active=101 is outside \(0, 100\]"),
                         (-3, r"active=-3 is outside"), (1.5, r"active=1.5 is outside \(0, 1\]"),
                         (0.0, r"active=0.0 is outside \(0, 1\]"), (True, "is not a number"),
                         ("5", "is not a number")):
        with pytest.raises(ValueError, match=pattern) as error:
            cardinality.count_of(bad, 100)
        assert "\n" not in str(error.value)


def test_registry_marks_the_cardinality_operators() -> None:
    assert operators.is_cardinality("random_k", "init")
    assert operators.is_cardinality({"name": "uniform_k", "indpb": 0.3}, "crossover")
    assert operators.is_cardinality("swap", "mutation") and operators.is_cardinality("swap_one", "mutation")
    assert not operators.is_cardinality("uniform", "crossover")
    assert not operators.is_cardinality("flip_one", "mutation")
    assert not operators.is_cardinality("cxTwoPoint", "crossover")
    with pytest.raises(ValueError, match="unknown mutation operator 'nope'"):
        operators.is_cardinality("nope", "mutation")
