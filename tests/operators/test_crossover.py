"""Tests for operators.crossover: DEAP contract, gene conservation, no NumPy aliasing."""

from __future__ import annotations

import functools
import random
from typing import Any, Callable

import numpy as np
import pytest
from deap import base, creator, tools
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import crossover

# DEAP classes at import time (picklable, no warning on re-import), with names no other
# test module uses.
if not hasattr(creator, "OpsCxFitness"):
    creator.create("OpsCxFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "OpsCxIndividual"):
    creator.create("OpsCxIndividual", np.ndarray, fitness=creator.OpsCxFitness)
if not hasattr(creator, "OpsCxListIndividual"):
    creator.create("OpsCxListIndividual", list, fitness=creator.OpsCxFitness)

CROSSOVERS: dict[str, Callable[..., Any]] = {
    "one_point": crossover.one_point,
    "two_point": crossover.two_point,
    "uniform": functools.partial(crossover.uniform, indpb=0.5),
}
DEAP_EQUIVALENT: dict[str, Callable[..., Any]] = {
    "one_point": tools.cxOnePoint,
    "two_point": tools.cxTwoPoint,
    "uniform": functools.partial(tools.cxUniform, indpb=0.5),
}


def make(bits: list[int], container: str) -> Any:
    if container == "numpy":
        return creator.OpsCxIndividual(np.asarray(bits, dtype=np.int8))
    return creator.OpsCxListIndividual(bits)


def random_bits(n: int, rng: random.Random) -> list[int]:
    return [rng.randint(0, 1) for _ in range(n)]


@pytest.mark.parametrize("container", ["numpy", "list"])
@pytest.mark.parametrize("name", list(CROSSOVERS))
def test_returns_both_parents_modified_in_place(name: str, container: str) -> None:
    random.seed(0)
    ind1, ind2 = make([0] * 20, container), make([1] * 20, container)
    result = CROSSOVERS[name](ind1, ind2)
    assert isinstance(result, tuple) and len(result) == 2
    assert result[0] is ind1 and result[1] is ind2
    assert type(ind1) is type(ind2) is type(make([0], container))
    assert list(ind1) != [0] * 20, "nothing was exchanged"
    if container == "numpy":
        assert ind1.dtype == ind2.dtype == np.int8


@pytest.mark.parametrize("name", list(CROSSOVERS))
def test_numpy_children_do_not_alias(name: str) -> None:
    random.seed(1)
    ind1, ind2 = make([0] * 32, "numpy"), make([1] * 32, "numpy")
    CROSSOVERS[name](ind1, ind2)
    assert not np.shares_memory(ind1, ind2)
    before = ind2.copy()
    ind1[:] = 7
    np.testing.assert_array_equal(ind2, before)
    ind2[:] = 5
    assert np.all(ind1 == 7)


@pytest.mark.parametrize("container", ["numpy", "list"])
@pytest.mark.parametrize("name", list(CROSSOVERS))
def test_complementary_parents_give_complementary_children(name: str, container: str) -> None:
    # DEAP's slice swap on NumPy arrays breaks exactly this: ind2 keeps its own tail.
    for seed in range(20):
        random.seed(seed)
        ind1, ind2 = make([0] * 15, container), make([1] * 15, container)
        CROSSOVERS[name](ind1, ind2)
        assert [a + b for a, b in zip(ind1, ind2)] == [1] * 15


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_one_point_exchanges_a_proper_suffix(container: str) -> None:
    for seed in range(30):
        random.seed(seed)
        ind1, ind2 = make([0] * 10, container), make([1] * 10, container)
        crossover.one_point(ind1, ind2)
        cut = list(ind1).index(1)
        assert 1 <= cut <= 9
        assert list(ind1) == [0] * cut + [1] * (10 - cut)


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_two_point_exchanges_one_block(container: str) -> None:
    for seed in range(30):
        random.seed(seed)
        ind1, ind2 = make([0] * 10, container), make([1] * 10, container)
        crossover.two_point(ind1, ind2)
        genes = list(ind1)
        start = genes.index(1)
        stop = start + genes[start:].index(0) if 0 in genes[start:] else 10
        assert genes == [0] * start + [1] * (stop - start) + [0] * (10 - stop)


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_uniform_indpb_zero_and_one(container: str) -> None:
    rng = random.Random(2)
    bits1, bits2 = random_bits(40, rng), random_bits(40, rng)
    ind1, ind2 = make(bits1, container), make(bits2, container)
    crossover.uniform(ind1, ind2, indpb=0.0)
    assert list(ind1) == bits1 and list(ind2) == bits2
    crossover.uniform(ind1, ind2, indpb=1.0)
    assert list(ind1) == bits2 and list(ind2) == bits1


def test_uniform_exchange_rate_follows_indpb() -> None:
    random.seed(3)
    ind1, ind2 = make([0] * 10_000, "numpy"), make([1] * 10_000, "numpy")
    crossover.uniform(ind1, ind2, indpb=0.2)
    assert 0.18 < ind1.mean() < 0.22


@pytest.mark.parametrize("name", list(CROSSOVERS))
def test_same_children_as_deap_on_lists(name: str) -> None:
    rng = random.Random(4)
    bits1, bits2 = random_bits(25, rng), random_bits(25, rng)
    for seed in range(10):
        ours = make(bits1, "list"), make(bits2, "list")
        theirs = make(bits1, "list"), make(bits2, "list")
        random.seed(seed)
        CROSSOVERS[name](*ours)
        random.seed(seed)
        DEAP_EQUIVALENT[name](*theirs)
        assert list(map(list, ours)) == list(map(list, theirs))


@pytest.mark.parametrize("name", list(CROSSOVERS))
def test_unequal_lengths_raise(name: str) -> None:
    with pytest.raises(ValueError, match=r"lengths 3 and 4; expected equal lengths"):
        CROSSOVERS[name](make([0, 1, 0], "list"), make([1, 0, 1, 1], "list"))


@pytest.mark.parametrize("container", ["numpy", "list"])
@pytest.mark.parametrize("name", ["one_point", "two_point"])
@pytest.mark.parametrize("n", [0, 1])
def test_too_short_for_a_cut_is_unchanged(name: str, container: str, n: int) -> None:
    ind1, ind2 = make([0] * n, container), make([1] * n, container)
    CROSSOVERS[name](ind1, ind2)
    assert list(ind1) == [0] * n and list(ind2) == [1] * n


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=64),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    name=st.sampled_from(sorted(CROSSOVERS)),
    indpb=st.floats(min_value=0.0, max_value=1.0),
)
def test_genes_are_conserved_per_position(n: int, seed: int, name: str, indpb: float) -> None:
    rng = random.Random(seed)
    bits1, bits2 = random_bits(n, rng), random_bits(n, rng)
    op = functools.partial(crossover.uniform, indpb=indpb) if name == "uniform" else CROSSOVERS[name]
    children = {}
    for container in ("numpy", "list"):
        ind1, ind2 = make(bits1, container), make(bits2, container)
        random.seed(seed)
        op(ind1, ind2)
        assert len(ind1) == len(ind2) == n
        for i in range(n):
            assert sorted((int(ind1[i]), int(ind2[i]))) == sorted((bits1[i], bits2[i]))
        children[container] = ([int(g) for g in ind1], [int(g) for g in ind2])
    # The vectorised NumPy path draws the same random numbers as the element loop.
    assert children["numpy"] == children["list"]
