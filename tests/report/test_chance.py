"""The final report says what chance would do: a random mask of the winner's size, on the same seeds."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store

from evoprune_tf.app.config import config_from_dict
from evoprune_tf.app.run import run, summary_metrics
from evoprune_tf.encodings import FeatureSelection, HeadSpec, unpack_genome
from evoprune_tf.report.single import final_report, format_report, retrain
from evoprune_tf.methods.head.baselines import random_count_genome
from evoprune_tf.train import TrainConfig, derive_seed


@pytest.fixture(scope="module")
def planted_report():
    data, informative = make_planted_features(n_features=48, n_informative=6, seed=3)
    encoding = FeatureSelection(HeadSpec(48, data.n_classes, (8,)))
    genome = informative.astype(np.int8)
    genome[np.flatnonzero(~informative)[:3]] = 1  # 9 genes: the 6 planted ones and 3 noise
    recipe = TrainConfig(epochs=15, engine="numpy")
    report, _ = final_report(encoding, data, genome, recipe, seed=11, seeds=2, export=False)
    return data, encoding, genome, recipe, report


def test_the_random_mask_has_the_winners_exact_size_and_a_derived_seed(planted_report):
    _, _, genome, _, report = planted_report
    chance = report["random"]
    assert chance["active_genes"] == int(genome.sum()) == 9
    assert chance["seed"] == derive_seed(11, "chance")
    mask = unpack_genome(chance["genome"], len(genome))
    assert int(mask.sum()) == 9 and not np.array_equal(mask, genome)
    assert np.array_equal(mask, random_count_genome(len(genome), 9, chance["seed"]))  # the random_mask baseline's draw
    assert len(chance["test_accuracy_per_seed"]) == 2 and len(chance["val_accuracy_per_seed"]) == 2


def test_the_random_mask_is_retrained_on_the_same_seeds_and_recipe(planted_report):
    """Retraining the report's random mask with the report's seeds gives its very numbers."""
    from evoprune_tf.metrics import accuracy_and_loss

    data, encoding, genome, recipe, report = planted_report
    mask = unpack_genome(report["random"]["genome"], len(genome)).astype(np.int8)
    heads = retrain(encoding, data, [mask], recipe, seed=11, seeds=2)
    again = [accuracy_and_loss(seed_heads[0].logits(data.x_test), data.y_test)[0] for seed_heads in heads]
    assert again == pytest.approx(report["random"]["test_accuracy_per_seed"], abs=1e-6)
    # a head of 6 planted features clearly beats 9 random ones (chance expects ~1 planted)
    assert report["pruned"]["test_accuracy_mean"] > report["random"]["test_accuracy_mean"] + 0.1


def test_adding_chance_does_not_change_the_pruned_and_unpruned_numbers(planted_report):
    data, encoding, genome, recipe, report = planted_report
    without, _ = final_report(encoding, data, genome, recipe, seed=11, seeds=2, export=False, chance=False)
    assert "random" not in without
    assert without["pruned"]["test_accuracy_per_seed"] == pytest.approx(report["pruned"]["test_accuracy_per_seed"])
    assert without["unpruned"]["test_accuracy_per_seed"] == pytest.approx(report["unpruned"]["test_accuracy_per_seed"])
    assert "random mask" not in format_report(without) and "vs chance" not in format_report(without)


def test_the_summary_prints_chance_beside_the_pruned_and_unpruned_heads(planted_report):
    *_, report = planted_report
    text = format_report(report)
    line = next(line for line in text.splitlines() if "test accuracy" in line)
    assert line.index("pruned") < line.index("unpruned") < line.index("random mask") < line.index("(2 seeds)")
    margin = report["pruned"]["test_accuracy_mean"] - report["random"]["test_accuracy_mean"]
    assert f"pruned - random mask = {margin:+.4f} on test" in text and "same 9 active genes" in text
    metrics = summary_metrics(report)
    assert metrics["random_test_accuracy_mean"] == pytest.approx(report["random"]["test_accuracy_mean"])
    assert "random_test_accuracy_std" in metrics


@pytest.mark.slow
def test_a_run_reports_chance_by_default_logs_it_and_report_chance_false_turns_it_off(tmp_path):
    from mlflow.tracking import MlflowClient

    data, _ = make_planted_features(n_features=32, seed=5)
    raw = {"seed": 4, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 3, "engine": "numpy"},
           "algorithm": {"population": 6, "evaluations": 12}, "report": {"seeds": 2, "export_model": False},
           "tracking": {"uri": new_mlflow_store(tmp_path), "experiment": "chance"},
           "checkpoint": {"dir": str(tmp_path / "ckpt")}}
    out = io.StringIO()
    result = run(config_from_dict(raw), features=data, out=out)
    chance = result.report["random"]
    assert chance["active_genes"] == int(np.count_nonzero(result.best))
    assert "random mask" in out.getvalue() and "vs chance" in out.getvalue()
    logged = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(result.run_id).data.metrics
    assert logged["random_test_accuracy_mean"] == pytest.approx(chance["test_accuracy_mean"])
    raw["report"]["chance"] = False
    raw["tracking"] = {"enabled": False}
    off = run(config_from_dict(raw), features=data, out=(quiet := io.StringIO()))
    assert "random" not in off.report and "random mask" not in quiet.getvalue()
    assert off.report["pruned"]["test_accuracy_per_seed"] == pytest.approx(result.report["pruned"]["test_accuracy_per_seed"])
