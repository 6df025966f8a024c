"""The demo's embedded setting: a fixed-budget search whose best climbs, reported against chance."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from deap import tools

import evoprune_tf.app.demo as demo


def _logbook(best):
    logbook = tools.Logbook()
    for generation, value in enumerate(best):
        logbook.record(gen=generation, best=value)
    return logbook


def test_the_demo_searches_a_fixed_budget_of_two_percent_of_the_features(monkeypatch, tmp_path):
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(tmp_path))
    (tmp_path / "datasets" / "rps_28px").mkdir(parents=True)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / demo._ASSETS_WEIGHTS).write_bytes(b"")  # only its existence is checked here
    config, sentence = demo.demo_config()
    assert sentence.startswith("shared assets: RPS")
    assert config.encoding.active == demo.DEMO_ACTIVE == 26  # 2% of MobileNetV2's 1,280 features
    # the budget switches the default operators to count-keeping ones
    assert config.operators.init == "random_k"
    assert config.report.chance  # the report's random mask of the same size
    assert config.algorithm.evaluations // config.algorithm.population >= 8  # generations enough to climb


def test_the_evolution_summary_lists_the_best_of_every_generation():
    line = demo.evolution_summary(_logbook([0.9563, 0.9563, 0.9643, 0.9802]), 20)
    assert line == ("best validation accuracy by generation (20 evaluations each): "
                    "0.956 0.956 0.964 0.980 (+0.024 over the first population)")


def test_the_evolution_summary_of_a_flat_search_says_it_did_not_rise():
    assert demo.evolution_summary(_logbook([0.998, 0.998]), 30).endswith("0.998 0.998 (+0.000 over the first population)")


ASSETS = Path(os.environ.get("EVOPRUNE_ASSETS", "/nonexistent"))


@pytest.mark.slow
@pytest.mark.skipif(not (ASSETS / "datasets" / "rps_28px").is_dir(), reason="needs EVOPRUNE_ASSETS with rps_28px")
def test_on_real_rps_the_demo_setting_climbs_and_beats_chance(tmp_path):
    """The demo's own config, on the shared RPS copy, with half its evaluations and two retrain seeds."""
    from evoprune_tf.app.run import run

    config, _ = demo.demo_config()
    config.algorithm.evaluations = 100
    config.report.seeds = 2
    config.report.export_model = False
    config.progress = False
    config.tracking.enabled = False
    config.checkpoint.dir = str(tmp_path)
    result = run(config)
    best = [record["best"] for record in result.logbook]
    assert best[-1] > best[0]  # the best genome changes after generation 0
    report = result.report
    assert report["active_features"] == demo.DEMO_ACTIVE
    assert report["pruned"]["test_accuracy_mean"] > report["random"]["test_accuracy_mean"] + 0.05
