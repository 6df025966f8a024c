"""Resampled fitness: partitions of train+validation, the mean over them, HoF re-scoring."""

import io

import numpy as np
import pytest

from conftest import make_planted_features
from evoprune_tf.app.config import ConfigError, load_config
from evoprune_tf.app.run import run
from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.resampling import ResampledEvaluator, partition_splits, partitions
from evoprune_tf.train import TrainConfig


def test_cv_partitions_validate_every_sample_once_and_keep_classes_balanced():
    labels = np.repeat([0, 1, 2], [20, 30, 10])
    parts = partitions(labels, "cv", folds=5, seed=1)
    val = np.concatenate([va for _, va in parts])
    assert sorted(val.tolist()) == list(range(60))
    for tr, va in parts:
        assert not set(tr) & set(va) and len(tr) + len(va) == 60
        assert np.bincount(labels[va]).tolist() == [4, 6, 2]
    assert [v.tolist() for _, v in parts] == [v.tolist() for _, v in partitions(labels, "cv", folds=5, seed=1)]
    assert [v.tolist() for _, v in parts] != [v.tolist() for _, v in partitions(labels, "cv", folds=5, seed=2)]


def test_repeated_partitions_and_bad_values():
    labels = np.repeat([0, 1], [10, 30])
    parts = partitions(labels, "repeated", repeats=3, val_fraction=0.2, seed=0)
    assert len(parts) == 3 and all(np.bincount(labels[va]).tolist() == [2, 6] for _, va in parts)
    with pytest.raises(ValueError, match="smallest class has only 10"):
        partitions(labels, "cv", folds=11)
    with pytest.raises(ValueError, match="expected 'holdout', 'cv' or 'repeated'"):
        partitions(labels, "bootstrap")


def test_the_resampled_fitness_is_the_mean_over_partition_evaluators_and_test_is_never_used():
    data, _ = make_planted_features(n_features=24, n_train=120, n_val=60, n_test=40, seed=3)
    spec = HeadSpec(data.n_features, data.n_classes, (8,))
    cfg = TrainConfig(epochs=4)
    genome = np.r_[np.ones(12, np.int8), np.zeros(12, np.int8)]
    resampled = ResampledEvaluator(FeatureSelection(spec), data, cfg, method="cv", folds=3, seed=0)
    expected = [PopulationEvaluator(FeatureSelection(spec), split, cfg, seed=0).measure([genome])[0]
                for split in partition_splits(data, resampled.parts)]
    got = resampled.measure([genome])[0]
    assert got.accuracy == pytest.approx(np.mean([e.accuracy for e in expected]))
    assert got.loss == pytest.approx(np.mean([e.loss for e in expected]))
    assert resampled.stats()["heads_trained"] == 3 and resampled.n_trained == 1
    for split in partition_splits(data, resampled.parts):
        assert split.x_test is data.x_test and len(split.y_train) + len(split.y_val) == 180


def test_a_run_with_cv_fitness_and_hall_of_fame_rescoring(tmp_path, planted):
    data, _ = planted
    config = load_config(overrides={
        "seed": 2, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 4, "engine": "numpy"},
        "algorithm": {"population": 6, "evaluations": 12, "hall_of_fame": 3},
        "objectives": {"resampling": "cv", "folds": 3}, "report": {"seeds": 1, "export_model": False,
                                                                   "rescore_folds": 3},
        "tracking": {"enabled": False}, "checkpoint": {"enabled": False},
    })
    out = io.StringIO()
    result = run(config, features=data, out=out)
    assert isinstance(result.evaluator, ResampledEvaluator)
    rescore = result.report["rescore"]
    assert rescore["folds"] == 3 and len(rescore["members"]) == 3
    chosen = rescore["members"][rescore["chosen"]]
    assert chosen["rescore_fitness"][0] == max(m["rescore_fitness"][0] for m in rescore["members"])
    assert "Re-scored 3 hall-of-fame members" in out.getvalue()


def test_bad_resampling_settings_are_config_errors():
    with pytest.raises(ConfigError, match="objectives.resampling='boot'"):
        load_config(overrides={"objectives": {"resampling": "boot"}})
    with pytest.raises(ConfigError, match="report.rescore_folds=1"):
        load_config(overrides={"report": {"rescore_folds": 1}})
