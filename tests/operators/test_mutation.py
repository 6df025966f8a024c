"""Tests for operators.mutation: DEAP contract, flip rates, gene types kept."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from deap import base, creator, tools

from operators import mutation

if not hasattr(creator, "OpsMutFitness"):
    creator.create("OpsMutFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "OpsMutIndividual"):
    creator.create("OpsMutIndividual", np.ndarray, fitness=creator.OpsMutFitness)
if not hasattr(creator, "OpsMutListIndividual"):
    creator.create("OpsMutListIndividual", list, fitness=creator.OpsMutFitness)


def make(bits: list[int], container: str) -> Any:
    if container == "numpy":
        return creator.OpsMutIndividual(np.asarray(bits, dtype=np.int8))
    return creator.OpsMutListIndividual(bits)


def n_diff(a: Any, b: Any) -> int:
    return sum(int(x) != int(y) for x, y in zip(a, b))


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_flip_bit_returns_one_tuple_in_place(container: str) -> None:
    random.seed(0)
    ind = make([0, 1] * 10, container)
    result = mutation.flip_bit(ind, indpb=0.5)
    assert isinstance(result, tuple) and len(result) == 1 and result[0] is ind
    assert set(int(g) for g in ind) <= {0, 1}
    if container == "numpy":
        assert ind.dtype == np.int8


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_flip_bit_zero_and_one(container: str) -> None:
    bits = [0, 1, 1, 0, 1]
    ind = make(bits, container)
    mutation.flip_bit(ind, indpb=0.0)
    assert list(ind) == bits
    mutation.flip_bit(ind, indpb=1.0)
    assert [int(g) for g in ind] == [1 - b for b in bits]


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_flip_bit_rate_is_indpb(container: str) -> None:
    random.seed(1)
    n = 20_000
    ind = make([0] * n, container)
    mutation.flip_bit(ind, indpb=0.1)
    # sd of the count is sqrt(n * 0.1 * 0.9) ~ 42: +-300 is about 7 sd.
    assert abs(sum(int(g) for g in ind) - 0.1 * n) < 300


def test_flip_bit_keeps_gene_types() -> None:
    random.seed(2)
    as_bool = np.array([True, False] * 5)
    mutation.flip_bit(as_bool, indpb=1.0)
    assert as_bool.dtype == bool and as_bool.tolist() == [False, True] * 5
    ints, bools = [0, 1, 0], [True, False]
    mutation.flip_bit(ints, indpb=1.0)
    mutation.flip_bit(bools, indpb=1.0)
    assert ints == [1, 0, 1] and all(type(g) is int for g in ints)
    assert bools == [False, True] and all(type(g) is bool for g in bools)


def test_flip_bit_same_as_deap_and_numpy_same_as_list() -> None:
    bits = [random.Random(3).randint(0, 1) for _ in range(50)]
    results = []
    for op, container in ((tools.mutFlipBit, "list"), (mutation.flip_bit, "list"), (mutation.flip_bit, "numpy")):
        ind = make(bits, container)
        random.seed(4)
        op(ind, indpb=0.3)
        results.append([int(g) for g in ind])
    assert results[0] == results[1] == results[2]
    assert results[0] != bits


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_flip_one_flips_exactly_one_bit_at_indpb_one(container: str) -> None:
    rng = random.Random(5)
    bits = [rng.randint(0, 1) for _ in range(30)]
    flipped_at = set()
    for seed in range(100):
        random.seed(seed)
        ind = make(bits, container)
        result = mutation.flip_one(ind)  # default indpb=1.0
        assert isinstance(result, tuple) and len(result) == 1 and result[0] is ind
        assert n_diff(ind, bits) == 1
        flipped_at.add(next(i for i in range(30) if int(ind[i]) != bits[i]))
    assert len(flipped_at) > 20, "the flipped position should be uniform over the genome"


@pytest.mark.parametrize("container", ["numpy", "list"])
def test_flip_one_never_flips_at_indpb_zero(container: str) -> None:
    bits = [0, 1] * 8
    for seed in range(50):
        random.seed(seed)
        ind = make(bits, container)
        mutation.flip_one(ind, indpb=0.0)
        assert list(map(int, ind)) == bits


def test_flip_one_mutation_rate_is_indpb() -> None:
    random.seed(6)
    trials = 4000
    mutated = 0
    for _ in range(trials):
        ind = make([0] * 10, "numpy")
        mutation.flip_one(ind, indpb=0.07)
        mutated += int(ind.sum())
    # sd of the count ~ 16: 0.07 +- 0.02 is about 5 sd.
    assert abs(mutated / trials - 0.07) < 0.02


def test_flip_one_on_an_empty_genome_is_a_no_op() -> None:
    assert mutation.flip_one([], indpb=1.0) == ([],)
