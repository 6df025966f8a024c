"""Tests for operators.selection: references, fitness order, the reference's pairing."""

from __future__ import annotations

import collections
import random
from typing import Any, Sequence

import numpy as np
import pytest
from deap import base, creator, tools

from operators import selection

if not hasattr(creator, "OpsSelFitMax"):
    creator.create("OpsSelFitMax", base.Fitness, weights=(1.0,))
if not hasattr(creator, "OpsSelFitMin"):
    creator.create("OpsSelFitMin", base.Fitness, weights=(-1.0,))
if not hasattr(creator, "OpsSelFitTwo"):
    creator.create("OpsSelFitTwo", base.Fitness, weights=(1.0, -1.0))
if not hasattr(creator, "OpsSelFitThree"):
    creator.create("OpsSelFitThree", base.Fitness, weights=(1.0, 1.0, 1.0))
for _fit in ("Max", "Min", "Two", "Three"):
    if not hasattr(creator, f"OpsSelInd{_fit}"):
        creator.create(f"OpsSelInd{_fit}", np.ndarray, fitness=getattr(creator, f"OpsSelFit{_fit}"))


def population(values: Sequence[Any], kind: str = "Max", n: int = 8, seed: int = 0) -> list[Any]:
    """One individual per fitness value (a number or a tuple), with random genes."""
    rng = random.Random(seed)
    cls = getattr(creator, f"OpsSelInd{kind}")
    pop = []
    for value in values:
        ind = cls(np.asarray([rng.randint(0, 1) for _ in range(n)], dtype=np.int8))
        ind.fitness.values = value if isinstance(value, tuple) else (value,)
        pop.append(ind)
    return pop


def assert_members(chosen: list[Any], pop: list[Any]) -> None:
    """Every chosen one is a member of ``pop`` itself (a reference, not a copy)."""
    assert isinstance(chosen, list)
    assert all(any(c is ind for ind in pop) for c in chosen)


def index_of(ind: Any, pop: list[Any]) -> int:
    return next(i for i, other in enumerate(pop) if other is ind)


def hamming(a: Any, b: Any) -> int:
    return int(np.count_nonzero(np.asarray(a) != np.asarray(b)))


@pytest.mark.parametrize(
    "select",
    [
        selection.tournament,
        selection.roulette,
        selection.random_choice,
        selection.hamming_farthest,
        selection.best,
    ],
)
def test_single_objective_selections_return_k_references(select: Any) -> None:
    random.seed(0)
    pop = population([0.1, 0.5, 0.9, 0.3, 0.7])
    for k in (0, 1, 4, 5, 9):
        chosen = select(pop, k)
        expected = min(k, len(pop)) if select is selection.best else k
        assert len(chosen) == expected
        assert_members(chosen, pop)


def test_tournament_same_choices_as_deap() -> None:
    pop = population([random.Random(1).random() for _ in range(12)])
    random.seed(2)
    ours = selection.tournament(pop, 20, tournsize=3)
    random.seed(2)
    theirs = tools.selTournament(pop, 20, tournsize=3)
    assert [index_of(i, pop) for i in ours] == [index_of(i, pop) for i in theirs]


@pytest.mark.parametrize("kind, best_index", [("Max", 3), ("Min", 0)])
def test_tournament_follows_fitness_weights(kind: str, best_index: int) -> None:
    random.seed(3)
    pop = population([1.0, 2.0, 3.0, 4.0], kind=kind)
    chosen = selection.tournament(pop, 200, tournsize=4)
    counts = collections.Counter(index_of(c, pop) for c in chosen)
    assert counts.most_common(1)[0][0] == best_index
    worst = selection.tournament(pop, 200, tournsize=1)
    assert len({index_of(c, pop) for c in worst}) == 4  # tournsize 1 is a random draw


def roulette_shares(values: Sequence[float], kind: str = "Max", k: int = 6000) -> list[float]:
    random.seed(4)
    pop = population(values, kind=kind)
    counts = collections.Counter(index_of(c, pop) for c in selection.roulette(pop, k))
    return [counts[i] / k for i in range(len(values))]


def test_roulette_favours_the_fitter_proportionally() -> None:
    shares = roulette_shares([1.0, 2.0, 3.0, 4.0])
    assert shares == sorted(shares)
    for share, expected in zip(shares, [0.1, 0.2, 0.3, 0.4]):
        assert abs(share - expected) < 0.03


def test_roulette_never_draws_a_zero_fitness() -> None:
    shares = roulette_shares([0.0, 1.0, 3.0])
    assert shares[0] == 0.0 and shares[2] > shares[1] > 0.0


def test_roulette_shifts_negative_values() -> None:
    shares = roulette_shares([-5.0, -3.0, -1.0])  # shifted to 0, 2, 4
    assert shares[0] == 0.0
    assert abs(shares[1] - 1 / 3) < 0.03 and abs(shares[2] - 2 / 3) < 0.03


@pytest.mark.parametrize("values", [[0.0, 0.0, 0.0], [-2.0, -2.0, -2.0], [0.5, 0.5, 0.5]])
def test_roulette_all_equal_is_uniform(values: list[float]) -> None:
    for share in roulette_shares(values):
        assert abs(share - 1 / 3) < 0.03


def test_roulette_minimisation_favours_smaller_values() -> None:
    shares = roulette_shares([1.0, 2.0, 3.0], kind="Min")  # wvalues -1, -2, -3
    assert shares[0] > shares[1] > shares[2] == 0.0


def test_roulette_rejects_nan() -> None:
    pop = population([1.0, float("nan")])
    with pytest.raises(ValueError, match=r"nan.*not finite"):
        selection.roulette(pop, 2)


def test_random_choice_is_uniform_over_members() -> None:
    random.seed(5)
    pop = population([1.0] * 4)
    counts = collections.Counter(index_of(c, pop) for c in selection.random_choice(pop, 4000))
    assert all(abs(counts[i] / 4000 - 0.25) < 0.03 for i in range(4))


def make_genomes(rows: list[list[int]]) -> list[Any]:
    pop = []
    for row in rows:
        ind = creator.OpsSelIndMax(np.asarray(row, dtype=np.int8))
        ind.fitness.values = (0.5,)
        pop.append(ind)
    return pop


def test_hamming_farthest_pairs_each_parent_with_its_farthest_candidate() -> None:
    # Distances from every member to every other differ, so the answer is unique when
    # all the others are candidates.
    pop = make_genomes([
        [0, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
    ])
    random.seed(6)
    chosen = selection.hamming_farthest(pop, 40, candidates=len(pop) - 1)
    assert_members(chosen, pop)
    firsts = set()
    for first, second in zip(chosen[::2], chosen[1::2]):
        assert second is not first
        farthest = max((o for o in pop if o is not first), key=lambda o: hamming(first, o))
        assert second is farthest
        firsts.add(index_of(first, pop))
    assert firsts == set(range(len(pop))), "the first parent is drawn at random"


def test_hamming_farthest_picks_the_farthest_of_the_drawn_candidates() -> None:
    # Member 0 is far from all of 1..9, which are close to each other: with 3 candidates
    # drawn among 9 others, the partner of a first parent in 1..9 is member 0 exactly
    # when 0 is among the candidates (probability 3/9).
    rows = [[1] * 12] + [[0] * 12 for _ in range(9)]
    for i in range(1, 10):
        rows[i][i] = 1  # the zeros differ by one bit from each other
    pop = make_genomes(rows)
    random.seed(7)
    chosen = selection.hamming_farthest(pop, 3000, candidates=3)
    partners_of_zeros = [index_of(s, pop) for f, s in zip(chosen[::2], chosen[1::2]) if f is not pop[0]]
    share = partners_of_zeros.count(0) / len(partners_of_zeros)
    # Expected 3/9 with the farthest rule; 1/9 if the partner were a random candidate.
    assert abs(share - 1 / 3) < 0.05
    # Replay of the documented draws: first = randrange(n), candidates = sample(others, 3).
    random.seed(8)
    first = random.randrange(10)
    drawn = random.sample([i for i in range(10) if i != first], 3)
    expected = max(drawn, key=lambda i: hamming(pop[first], pop[i]))
    random.seed(8)
    got = selection.hamming_farthest(pop, 2)
    assert got[0] is pop[first] and got[1] is pop[expected]


def test_hamming_farthest_odd_k_and_tiny_populations() -> None:
    random.seed(9)
    pop = make_genomes([[0, 0], [1, 1], [0, 1]])
    chosen = selection.hamming_farthest(pop, 5)
    assert len(chosen) == 5
    assert_members(chosen, pop)
    solo = make_genomes([[0, 1]])
    assert selection.hamming_farthest(solo, 3) == [solo[0]] * 3
    with pytest.raises(ValueError, match=r"candidates=0; expected a positive integer"):
        selection.hamming_farthest(pop, 2, candidates=0)


def test_best_sorts_by_fitness() -> None:
    pop = population([0.2, 0.9, 0.5, 0.7])
    assert [index_of(i, pop) for i in selection.best(pop, 3)] == [1, 3, 2]
    pop_min = population([0.2, 0.9, 0.5], kind="Min")
    assert index_of(selection.best(pop_min, 1)[0], pop_min) == 0


def two_objective_population() -> tuple[list[Any], list[Any]]:
    """Maximise f1, minimise f2: (i, i) are mutually non-dominated, (i, i + 5) dominated."""
    front = population([(float(i), float(i)) for i in range(5)], kind="Two")
    dominated = population([(float(i), float(i + 5)) for i in range(5)] * 2, kind="Two", seed=1)
    pop = dominated[:5] + front + dominated[5:]
    return pop, front


@pytest.mark.parametrize("nd", ["standard", "log"])
def test_nsga2_keeps_the_first_front(nd: str) -> None:
    pop, front = two_objective_population()
    chosen = selection.nsga2(pop, 5, nd=nd)
    assert len(chosen) == 5
    assert {id(c) for c in chosen} == {id(f) for f in front}
    chosen = selection.nsga2(pop, 8, nd=nd)
    assert len(chosen) == 8 and len({id(c) for c in chosen}) == 8
    assert_members(chosen, pop)
    assert {id(f) for f in front} <= {id(c) for c in chosen}


def test_nsga2_rejects_unknown_sorting() -> None:
    pop, _ = two_objective_population()
    with pytest.raises(ValueError, match=r"nd='fast'; expected one of 'standard', 'log'"):
        selection.nsga2(pop, 3, nd="fast")


def test_nsga3_returns_k_distinct_members_with_lazy_reference_points() -> None:
    rng = random.Random(10)
    pop = population([(rng.random(), rng.random(), rng.random()) for _ in range(24)], kind="Three")
    random.seed(11)
    chosen = selection.nsga3(pop, 12)
    assert len(chosen) == 12 and len({id(c) for c in chosen}) == 12
    assert_members(chosen, pop)
    # Explicit reference points and a coarser default grid work too.
    assert len(selection.nsga3(pop, 10, ref_points=tools.uniform_reference_points(3, 4))) == 10
    assert len(selection.nsga3(pop, 10, p=3, nd="standard")) == 10
    # The first front always survives when it fits.
    first_front = tools.sortNondominated(pop, len(pop), first_front_only=True)[0]
    if len(first_front) <= 12:
        assert {id(f) for f in first_front} <= {id(c) for c in chosen}


def test_nsga3_two_objectives_and_bad_p() -> None:
    pop, front = two_objective_population()
    chosen = selection.nsga3(pop, 5)
    assert {id(c) for c in chosen} == {id(f) for f in front}
    with pytest.raises(ValueError, match=r"p=0; expected a positive integer"):
        selection.nsga3(pop, 5, p=0)
