"""Tests for operators.registry: names, DEAP fallback, option checks, toolbox use."""

from __future__ import annotations

import pickle
import random
from typing import Any

import numpy as np
import pytest
from deap import algorithms, base, creator, tools

import operators
from operators import crossover, init, mutation, registry, selection

if not hasattr(creator, "OpsRegFitness"):
    creator.create("OpsRegFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "OpsRegIndividual"):
    creator.create("OpsRegIndividual", np.ndarray, fitness=creator.OpsRegFitness)

BUILTINS = {
    "crossover": ["one_point", "two_point", "two_point_k", "uniform", "uniform_k"],
    "mutation": ["flip_bit", "flip_one", "mutate_categorical", "mutate_step", "swap", "swap_one"],
    "selection": ["best", "hamming_farthest", "heavy_knee_light", "nsga2", "nsga3", "random", "roulette",
                  "tournament"],
    "init": ["bernoulli", "ones", "random_density", "random_k", "uniform_int"],
}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets a test register operators without leaking them into other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", {kind: dict(entries) for kind, entries in registry._REGISTRY.items()})


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_builtin_names() -> None:
    assert operators.available() == BUILTINS
    assert operators.available("selection") == BUILTINS["selection"]
    assert operators.KINDS == ("crossover", "mutation", "selection", "init")


@pytest.mark.parametrize(
    "kind, name, function",
    [
        ("crossover", "uniform", crossover.uniform),
        ("mutation", "flip_one", mutation.flip_one),
        ("selection", "random", selection.random_choice),
        ("selection", "hamming_farthest", selection.hamming_farthest),
        ("init", "random_density", init.random_density),
    ],
)
def test_get_builtin(kind: str, name: str, function: Any) -> None:
    assert operators.get(kind, name) is function


@pytest.mark.parametrize(
    "kind, name",
    [("crossover", "cxTwoPoint"), ("mutation", "mutFlipBit"), ("selection", "selTournament"),
     ("selection", "selNSGA2"), ("init", "initRepeat")],
)
def test_deap_fallback_by_name(kind: str, name: str) -> None:
    assert operators.get(kind, name) is getattr(tools, name)


def test_deap_fallback_respects_the_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown crossover operator 'selBest'"):
        operators.get("crossover", "selBest")


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError) as error:
        operators.get("crossover", "three_point")
    message = one_line(error)
    assert "'three_point'" in message and "one_point, two_point, two_point_k, uniform, uniform_k" in message
    assert "cx*" in message


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown operator kind 'crossovers'; expected one of: crossover, "):
        operators.get("crossovers", "uniform")
    with pytest.raises(ValueError, match=r"unknown operator kind"):
        operators.register("repair")


def test_register_decorator(scratch_registry: None) -> None:
    @operators.register("mutation")
    def flip_block(individual: Any, indpb: float, width: int = 4) -> tuple[Any]:
        return (individual,)

    @operators.register("crossover", "swap_none")
    def no_swap(ind1: Any, ind2: Any) -> tuple[Any, Any]:
        return ind1, ind2

    assert flip_block.__name__ == "flip_block"  # returned unchanged
    assert operators.get("mutation", "flip_block") is flip_block
    assert operators.get("crossover", "swap_none") is no_swap
    assert "flip_block" in operators.available("mutation")
    # Probability options of a user function are checked by their name.
    with pytest.raises(ValueError, match=r"indpb=2 is not a probability"):
        operators.resolve({"name": "flip_block", "indpb": 2})
    assert operators.resolve({"name": "flip_block", "indpb": 0.1, "width": 8}) == (flip_block, {"indpb": 0.1, "width": 8})


def test_duplicate_name_raises_unless_overwrite(scratch_registry: None) -> None:
    def uniform(ind1: Any, ind2: Any) -> tuple[Any, Any]:
        return ind1, ind2

    with pytest.raises(ValueError) as error:
        operators.register("crossover")(uniform)
    message = one_line(error)
    assert "'uniform' is already registered" in message and "overwrite=True" in message
    assert operators.get("crossover", "uniform") is crossover.uniform
    operators.register("crossover", overwrite=True)(uniform)
    assert operators.get("crossover", "uniform") is uniform
    operators.register("crossover")(uniform)  # the same function again is harmless


def test_resolve_string_and_dict_specs() -> None:
    assert operators.resolve("two_point") == (crossover.two_point, {})
    spec = {"name": "uniform", "indpb": 0.5}
    assert operators.resolve(spec, "crossover") == (crossover.uniform, {"indpb": 0.5})
    assert spec == {"name": "uniform", "indpb": 0.5}, "the spec must not be modified"
    assert operators.resolve({"name": "selTournament", "tournsize": 5}) == (tools.selTournament, {"tournsize": 5})
    assert operators.resolve({"name": "nsga3", "p": 12}) == (selection.nsga3, {"p": 12})  # p: divisions
    assert operators.resolve("operators.crossover:one_point") == (crossover.one_point, {})
    assert operators.resolve(crossover.uniform, "crossover") == (crossover.uniform, {})


def test_bad_option_name_lists_accepted_options() -> None:
    with pytest.raises(ValueError) as error:
        operators.resolve({"name": "uniform", "indp": 0.5}, "crossover")
    assert one_line(error) == "crossover 'uniform' has no option 'indp'; accepted options: indpb"
    with pytest.raises(ValueError, match=r"has no option 'k'; accepted options: tournsize"):
        operators.resolve({"name": "tournament", "k": 3})  # k is passed at call time


@pytest.mark.parametrize(
    "spec, value",
    [
        ({"name": "uniform", "indpb": 1.5}, "1.5"),
        ({"name": "flip_bit", "indpb": -0.01}, "-0.01"),
        ({"name": "flip_one", "indpb": "0.07"}, "'0.07'"),
        ({"name": "bernoulli", "p": 2}, "2"),
        ({"name": "mutFlipBit", "indpb": 1.01}, "1.01"),
        ({"name": "random_density", "high": 1.2}, "1.2"),
    ],
)
def test_out_of_range_probability(spec: dict[str, Any], value: str) -> None:
    with pytest.raises(ValueError) as error:
        operators.resolve(spec)
    message = one_line(error)
    assert f"={value} is not a probability; expected a number in [0, 1]" in message


def test_counts_and_missing_options() -> None:
    with pytest.raises(ValueError, match=r"tournsize=0 is not a count"):
        operators.resolve({"name": "tournament", "tournsize": 0})
    with pytest.raises(ValueError, match=r"p=0 is not a count"):
        operators.resolve({"name": "nsga3", "p": 0})
    with pytest.raises(ValueError, match=r"'flip_bit' needs option 'indpb'"):
        operators.resolve("flip_bit")
    with pytest.raises(ValueError, match=r"'selTournament' needs option 'tournsize'"):
        operators.resolve("selTournament", "selection")


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match=r"has no 'name'"):
        operators.resolve({"indpb": 0.5}, "crossover")
    with pytest.raises(ValueError, match=r"expected a name, a callable or a dict"):
        operators.resolve(3, "crossover")
    with pytest.raises(ValueError, match=r"cannot import operator 'no_such_module:f'"):
        operators.resolve("no_such_module:f")
    with pytest.raises(ValueError, match=r"unknown operator 'nope'; expected one of: bernoulli, best"):
        operators.resolve("nope")


def test_ambiguous_name_needs_a_kind(scratch_registry: None) -> None:
    @operators.register("mutation", "uniform")
    def uniform_mutation(individual: Any) -> tuple[Any]:
        return (individual,)

    with pytest.raises(ValueError, match=r"'uniform' is registered as crossover and mutation; pass kind="):
        operators.resolve("uniform")
    assert operators.resolve("uniform", "mutation") == (uniform_mutation, {})


def test_register_on_toolbox_pickles() -> None:
    toolbox = base.Toolbox()
    operators.register_on(toolbox, "mate", "crossover", {"name": "uniform", "indpb": 0.5})
    operators.register_on(toolbox, "mutate", "mutation", {"name": "flip_one", "indpb": 0.07})
    operators.register_on(toolbox, "select", "selection", "hamming_farthest")
    operators.register_on(toolbox, "individual", "init", "random_density", creator.OpsRegIndividual, 16)
    assert toolbox.mate.func is crossover.uniform and toolbox.mate.keywords == {"indpb": 0.5}
    assert toolbox.individual().shape == (16,)
    restored = pickle.loads(pickle.dumps(toolbox.mate))  # spawned workers receive these
    assert restored.func is crossover.uniform
    with pytest.raises(ValueError, match=r"'random_density' needs option 'n'"):
        operators.register_on(toolbox, "individual", "init", "random_density", creator.OpsRegIndividual)


def test_deap_ea_simple_runs_on_the_registered_toolbox() -> None:
    """OneMax with our operators on NumPy individuals through deap.algorithms.eaSimple."""
    random.seed(12)
    toolbox = base.Toolbox()
    operators.register_on(toolbox, "individual", "init", {"name": "random_density", "high": 0.3},
                          creator.OpsRegIndividual, 40)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", lambda ind: (float(ind.sum()),))
    operators.register_on(toolbox, "mate", "crossover", "two_point")
    operators.register_on(toolbox, "mutate", "mutation", {"name": "flip_bit", "indpb": 0.025})
    operators.register_on(toolbox, "select", "selection", {"name": "tournament", "tournsize": 3})
    pop = toolbox.population(n=30)
    start = max(toolbox.evaluate(ind)[0] for ind in pop)
    hof = tools.HallOfFame(1, similar=np.array_equal)
    pop, logbook = algorithms.eaSimple(pop, toolbox, cxpb=0.7, mutpb=0.3, ngen=25, halloffame=hof, verbose=False)
    assert len(logbook) == 26
    assert hof[0].fitness.values[0] >= start + 10
    assert all(ind.fitness.valid for ind in pop)
    # Offspring are clones: no two members of the final population share memory.
    for i, a in enumerate(pop):
        assert not any(np.shares_memory(a, b) for b in pop[i + 1:])
