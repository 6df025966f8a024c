"""Fitness evaluation: planted signal, cache, objectives, memory."""

import functools

import numpy as np
import pytest

from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.metrics import auroc, max_softmax_score
from evoprune_tf.train.numpy_engine import TrainConfig


def _evaluator(data, **kwargs):
    spec = HeadSpec(data.n_features, data.n_classes, (32,))
    return PopulationEvaluator(FeatureSelection(spec), data, TrainConfig(epochs=30, engine="numpy"), seed=0, **kwargs)


def test_planted_signal_restricted_head_beats_all_ones(planted):
    """The fixture later evolution tests build on: the informative features win on validation."""
    data, informative = planted
    evaluator = _evaluator(data)
    full, restricted = evaluator.measure([np.ones(data.n_features, int), informative.astype(int)])
    assert restricted.accuracy > full.accuracy + 0.15
    assert restricted.loss < full.loss
    assert restricted.active_fraction == pytest.approx(informative.mean())
    # lexicographic single-objective fitness: (accuracy, loss, active_fraction), weights (+1, -1, -1)
    assert evaluator.weights == (1.0, -1.0, -1.0)
    assert evaluator.evaluate(informative.astype(int))[0] == restricted.accuracy


def test_duplicates_are_served_from_the_cache_and_deterministic(planted):
    data, informative = planted
    evaluator = _evaluator(data)
    genome = informative.astype(int)
    first = evaluator.evaluate(genome)
    again = evaluator.evaluate_population([genome, genome.astype(bool)])
    assert again == [first, first]
    assert evaluator.stats()["trained"] == 1 and evaluator.stats()["cache_hits"] == 2
    assert _evaluator(data).evaluate(genome) == first  # a fresh process-state gives the same fitness


def test_map_batches_the_toolbox_evaluate(planted):
    data, _ = planted
    evaluator = _evaluator(data)
    calls = []
    evaluator.evaluate_population = lambda genomes: calls.append(list(genomes)) or [(1.0,)] * len(calls[-1])
    genomes = [np.ones(data.n_features, int)] * 3
    assert evaluator.map(functools.partial(evaluator.evaluate), genomes) == [(1.0,)] * 3
    assert len(calls) == 1 and len(calls[0]) == 3
    assert evaluator.map(len, [[1, 2], [3]]) == [2, 1]


def test_robustness_objective_and_every_objective_restored_from_cache(planted):
    data, informative = planted
    rng = np.random.default_rng(1)
    # OOD samples sit between the class centres: a good head is unsure about them
    ood = rng.normal(0, 3.0, size=(100, data.n_features)).astype(np.float32)
    ood[:, informative] = rng.normal(0, 0.3, size=(100, informative.sum()))
    evaluator = _evaluator(data, objectives=("accuracy", "active_fraction", "robustness"), ood_features=ood)
    values = evaluator.evaluate(informative.astype(int))
    assert len(values) == 3 and 0.5 < values[2] <= 1.0
    assert evaluator.evaluate(informative.astype(int)) == values
    with pytest.raises(ValueError, match=r"OOD features have shape \(100, 5\); expected \(n, 64\)"):
        _evaluator(data, ood_features=ood[:, :5])
    with pytest.raises(ValueError, match="needs OOD features"):
        _evaluator(data, objectives=("accuracy", "robustness"))


def test_auroc_and_temperature_score():
    assert auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auroc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    scores = max_softmax_score(logits, temperature=1000.0)
    assert scores[0] > scores[1] and scores[1] == pytest.approx(1 / 3)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_memory_stays_flat_over_500_evaluations(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    evaluator = PopulationEvaluator(FeatureSelection(spec), data, TrainConfig(epochs=1), seed=0)
    rng = np.random.default_rng(0)
    evaluator.evaluate_population(rng.integers(0, 2, (50, data.n_features)))
    before = _rss_mb()
    for _ in range(9):
        evaluator.evaluate_population(rng.integers(0, 2, (50, data.n_features)))
    assert evaluator.stats()["trained"] >= 490
    assert _rss_mb() - before < 30
