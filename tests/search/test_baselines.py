"""Baselines as methods: genomes without search, and random search at the GA's budget."""

import numpy as np
import pytest

from conftest import make_planted_features, new_mlflow_store
from evoprune_tf.app.config import ConfigError, load_config
from evoprune_tf.app.run import run
from evoprune_tf.encodings import ConnectionPruning, FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.methods.head.baselines import baseline_genome, magnitude_scores, n_active, random_mask_genome, top_k_genome
from evoprune_tf.report.single import retrain
from evoprune_tf.train import TrainConfig


def _config(tmp_path, name, **algorithm):
    return load_config(overrides={
        "seed": 3, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 10, "engine": "numpy"},
        "algorithm": {"name": name, "population": 8, "evaluations": 20, **algorithm},
        "report": {"seeds": 1, "export_model": False},
        "tracking": {"uri": new_mlflow_store(tmp_path), "experiment": "baselines"},
        "checkpoint": {"dir": str(tmp_path / "ckpt")},
    })


def test_random_mask_has_exactly_the_density_and_depends_on_the_seed():
    a, b = random_mask_genome(200, 0.3, seed=1), random_mask_genome(200, 0.3, seed=2)
    assert a.sum() == b.sum() == 60 and not np.array_equal(a, b)
    assert np.array_equal(a, random_mask_genome(200, 0.3, seed=1))
    assert n_active(10, 0.01) == 1
    with pytest.raises(ValueError, match=r"density=1.5; expected a fraction in \(0, 1\]"):
        n_active(10, 1.5)


def test_top_k_keeps_the_largest_scores_with_ties_to_the_lower_index():
    genome = top_k_genome(np.array([0.1, 5.0, 5.0, 3.0, 0.0]), 0.4)
    assert genome.tolist() == [0, 1, 1, 0, 0]


def test_magnitude_scores_follow_each_encoding():
    spec = HeadSpec(4, 2, (3,))
    k0 = np.arange(12, dtype=np.float32).reshape(4, 3) - 6
    k1 = np.ones((3, 2), np.float32)
    assert np.allclose(magnitude_scores(FeatureSelection(spec), [k0, k1]), np.abs(k0).sum(axis=1))
    assert np.allclose(magnitude_scores(NeuronPruning(spec), [k0, k1]), np.abs(k0).sum(axis=0))
    assert np.allclose(magnitude_scores(ConnectionPruning(spec, layer=1), [k0, k1]), np.ones(6))


def test_l1_and_magnitude_find_the_planted_features():
    data, informative = make_planted_features(n_features=40, n_informative=5, noise=3.0, seed=2)
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    evaluator = PopulationEvaluator(FeatureSelection(spec), data, TrainConfig(epochs=20, engine="numpy"), seed=0)
    density = 5 / 40
    l1 = baseline_genome("l1_selection", evaluator.encoding, density=density, seed=0, evaluator=evaluator)
    assert l1.sum() == 5 and (l1.astype(bool) & informative).sum() >= 4
    magnitude = baseline_genome("magnitude", evaluator.encoding, density=density, seed=0, evaluator=evaluator)
    # magnitude is a weaker signal on this noisy head (chance expects 0.6 of 5)
    assert magnitude.sum() == 5 and (magnitude.astype(bool) & informative).sum() >= 2
    chance = random_mask_genome(40, density, seed=0)
    assert (chance.astype(bool) & informative).sum() < (l1.astype(bool) & informative).sum()


@pytest.mark.parametrize("name,algorithm", [
    ("unpruned", {}),
    ("random_mask", {"density": 0.25}),
    ("magnitude", {"density": 0.25}),
    ("l1_selection", {"density": 0.25}),
])
def test_fixed_baselines_are_tracked_and_reported_like_a_run(tmp_path, planted, name, algorithm):
    from mlflow import MlflowClient

    data, _ = planted
    result = run(_config(tmp_path, name, **algorithm), features=data)
    expected = 1.0 if name == "unpruned" else 0.25
    assert np.mean(result.best) == pytest.approx(expected, abs=1 / data.n_features)
    assert result.report["search"]["evaluations"] == 1
    # the reported test accuracy is the run's genome retrained with the report recipe and
    # scored on the test split, recomputed here from the genome alone
    pruned = result.report["pruned"]["test_accuracy_mean"]
    recipe = result.config.train if result.config.report.recipe == "search" else TrainConfig.reference()
    head = retrain(result.evaluator.encoding, data, [result.best], recipe, seed=3, seeds=1)[0][0]
    assert pruned == pytest.approx(float(np.mean(head.predict_proba(data.x_test).argmax(axis=1) == data.y_test)))
    assert pruned > 1 / data.n_classes + 0.1  # the planted signal is learned, with any of the masks
    if name == "unpruned":
        assert pruned == result.report["unpruned"]["test_accuracy_mean"]
    tags = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(result.run_id).data.tags
    assert tags["evoprune.algorithm"] == name


def test_random_search_spends_the_budget_on_fresh_random_genomes(tmp_path, planted):
    data, _ = planted
    result = run(_config(tmp_path, "random_search", evaluations=20), features=data)
    assert result.report["search"]["evaluations"] == 20
    assert [r["nevals"] for r in result.logbook] == [8, 8, 4]
    assert result.evaluator.n_trained + result.evaluator.n_cache_hits >= 20
    best = max(result.evaluator.cache.values(), key=lambda e: (e.accuracy, -e.loss))
    assert result.halloffame[0].fitness.values[0] == best.accuracy


def test_density_of_reads_the_density_of_another_run(tmp_path, planted):
    data, _ = planted
    first = run(_config(tmp_path, "random_mask", density=0.5), features=data)
    second = run(_config(tmp_path, "random_mask", density_of=first.run_id[:10]), features=data)
    assert np.mean(second.best) == pytest.approx(np.mean(first.best))


def test_a_baseline_without_a_density_or_l1_on_neurons_is_refused_at_config_time(tmp_path):
    with pytest.raises(ConfigError, match="needs algorithm.density in"):
        _config(tmp_path, "magnitude")
    with pytest.raises(ConfigError, match="l1_selection.*not feature_selection"):
        load_config(overrides={"algorithm": {"name": "l1_selection", "density": 0.5},
                               "encoding": {"name": "neuron_pruning"}})
