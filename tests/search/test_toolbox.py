"""The DEAP toolbox: usable by DEAP's own algorithms, operators swappable, classes pickle."""

import pickle
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
from deap import algorithms as deap_algorithms
from deap import tools

import operators
from evoprune_tf.app.config import load_config
from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.search.toolbox import build_toolbox, individual_class
from evoprune_tf.train.numpy_engine import TrainConfig


@pytest.fixture
def evaluator(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    return PopulationEvaluator(FeatureSelection(spec), data, TrainConfig(epochs=5, engine="numpy"), seed=0)


def test_toolbox_has_every_deap_alias(evaluator):
    tb = build_toolbox(evaluator)
    for alias in ("individual", "population", "mate", "mutate", "select", "survive", "evaluate", "map", "clone"):
        assert hasattr(tb, alias)
    ind = tb.individual()
    assert isinstance(ind, np.ndarray) and ind.dtype == np.int8 and len(ind) == 64
    assert ind.fitness.weights == (1.0, -1.0, -1.0)


def test_deap_ea_simple_and_mu_plus_lambda_run_on_our_toolbox(evaluator):
    random.seed(1)
    tb = build_toolbox(evaluator, select={"name": "tournament", "tournsize": 3})
    hof = tools.HallOfFame(1, similar=np.array_equal)
    pop, log = deap_algorithms.eaSimple(tb.population(n=8), tb, cxpb=0.7, mutpb=0.3, ngen=3, halloffame=hof, verbose=False)
    assert len(pop) == 8 and len(log) == 4 and all(ind.fitness.valid for ind in pop)
    # every fitness is what the evaluator says for that genome
    for ind in pop:
        assert ind.fitness.values == evaluator.evaluate(ind)
    # the hall of fame eaSimple kept holds the best genome it ever evaluated
    assert len(hof) == 1 and hof[0].fitness.valid
    assert all(hof[0].fitness >= ind.fitness for ind in pop)
    pop, log = deap_algorithms.eaMuPlusLambda(tb.population(n=6), tb, mu=6, lambda_=6, cxpb=0.5, mutpb=0.5,
                                              ngen=2, verbose=False)
    assert len(pop) == 6 and all(ind.fitness.valid for ind in pop)
    assert len(log) == 3 and log[-1]["nevals"] <= 6


def test_swapping_an_operator_is_one_register_call(evaluator):
    tb = build_toolbox(evaluator)
    assert tb.mate.func is operators.get("crossover", "uniform")
    tb.register("mate", operators.get("crossover", "two_point"))
    a, b = tb.individual(), tb.individual()
    tb.mate(a, b)
    assert tb.mate.func is operators.get("crossover", "two_point")
    tb2 = build_toolbox(evaluator, mutate={"name": "flip_bit", "indpb": "1/L"})
    assert tb2.mutate.keywords["indpb"] == pytest.approx(1 / 64)
    tb3 = build_toolbox(evaluator, mate="cxTwoPoint")  # DEAP's own by name
    assert tb3.mate.func is tools.cxTwoPoint


def test_individuals_and_fitnesses_pickle(evaluator):
    tb = build_toolbox(evaluator)
    ind = tb.individual()
    ind.fitness.values = (0.5, 1.0, 0.25)
    back = pickle.loads(pickle.dumps(ind))
    assert np.array_equal(back, ind) and back.fitness.values == (0.5, 1.0, 0.25)
    # DEAP 1.4 pickles creator classes by re-creating them (meta_create): same name and weights
    assert type(back).__name__ == type(ind).__name__ and back.fitness.weights == ind.fitness.weights
    assert back.fitness > type(ind.fitness)((0.4, 0.0, 0.0))


def test_creator_classes_exist_at_import_and_never_warn():
    code = (
        "import warnings; warnings.simplefilter('error');"
        "import evoprune_tf.search.toolbox as t, importlib; importlib.reload(t);"
        "from deap import creator; print(hasattr(creator, 'IndividualMaxMinMin'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert individual_class((1.0, -1.0)) is individual_class((2.0, -0.5))


def test_config_operators_validate_at_load():
    with pytest.raises(ValueError, match="operators.mate") as info:
        load_config(overrides={"operators": {"mate": {"name": "uniform", "indpb": 1.5}}})
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="operators.select.*known"):
        load_config(overrides={"operators": {"select": "nope"}})
