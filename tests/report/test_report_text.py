"""Report summaries print what was measured: no `± std` for one seed, singular counts, integer counts."""

from __future__ import annotations

import math

import pytest

from evoprune_tf.methods.deep_pruning_es.report import markdown_table as _markdown
from evoprune_tf.methods.tascnet.report import results_table
from evoprune_tf.report.pareto import format_pareto_report
from evoprune_tf.report.single import format_report
from evoprune_tf.report.text import count, mean_std, plural
from evoprune_tf.studies.markdown import _p_verdict


def test_helpers():
    assert plural(1, "seed") == "1 seed" and plural(3, "seed") == "3 seeds" and plural(0, "file") == "0 files"
    assert plural(2.5, "member") == "2.5 members" and plural(1.0, "seed") == "1 seed"
    assert mean_std(0.81234, 0.01, 3) == "0.8123 ± 0.0100"
    assert mean_std(0.81234, 0.0, 1) == "0.8123"
    assert mean_std(0.8, None, 3) == "0.8000" and mean_std(0.8, math.nan, 2) == "0.8000"
    assert mean_std(None, None, 3) == "-" and mean_std(0.5, 0.1, 2, digits=2) == "0.50 ± 0.10"
    assert count(16.0) == "16" and count(16) == "16" and count(15.5) == "15.5" and count(2 / 3) == "0.7"


def _single(seeds: int) -> dict:
    std = 0.0 if seeds == 1 else 0.02
    return {
        "dataset": "planted", "encoding": "feature_selection", "genome_length": 64, "active_fraction": 0.1,
        "active_percent": 9.38, "active_features": 1, "active_neurons": [16],
        "retrain": {"seeds": seeds, "epochs": 10, "early_stopping": False},
        "pruned": {"val_accuracy_mean": 0.9, "test_accuracy_mean": 0.85, "test_accuracy_std": std},
        "unpruned": {"val_accuracy_mean": 0.7, "test_accuracy_mean": 0.6, "test_accuracy_std": std},
        "parameters": {"pruned_head": 100, "full_head": 1000, "compact_model": 120, "full_model": 1100},
        "inference_ms": {"compact": 0.1, "full": 0.2, "samples": 150},
    }


def test_single_report_with_one_seed_has_no_spread_and_a_singular_count():
    text = format_report(_single(1))
    assert "±" not in text and "(1 seed)" in text and "seeds" not in text
    assert "pruned 0.8500   unpruned 0.6000" in text
    assert "(1 feature," in text and "of 64 genes" in text


def test_single_report_with_several_seeds_shows_the_spread():
    text = format_report(_single(3))
    assert "pruned 0.8500 ± 0.0200" in text and "unpruned 0.6000 ± 0.0200" in text and "(3 seeds)" in text


def test_single_report_on_validation_only_has_no_spread():
    report = _single(3)
    report["pruned"] = {"val_accuracy_mean": 0.9}
    report["unpruned"] = {"val_accuracy_mean": 0.7}
    text = format_report(report)
    assert "validation accuracy  pruned 0.9000   unpruned 0.7000" in text and "±" not in text


def _pareto(seeds: int, n_members: float = 16.0) -> dict:
    std = 0.0 if seeds == 1 else 0.01
    member = {"index": 0, "search": {"accuracy": 0.9, "active_fraction": 0.1}, "active_percent": 10.0,
              "test_accuracy": 0.8, "test_accuracy_std": std, "test_auroc": None, "trade_off": "heavy+knee+light"}
    ensemble = {"accuracy": 0.82, "accuracy_std": std, "auroc": None, "n_members": n_members}
    trade = {"member": 0, "active_percent": 10.0, "test_accuracy": 0.8}
    return {
        "objectives": ["accuracy", "active_fraction"], "n_members": 1, "hypervolume": 0.5, "hypervolume_test": None,
        "retrain": {"seeds": seeds}, "members": [member],
        "ensembles": {"seeds": seeds, "temperature": 1000.0, "band": 0.02, "best_single": {**ensemble, "n_members": 1.0},
                      "all": ensemble, "banded": ensemble},
        "trade_offs": {"heavy": trade, "knee": trade, "light": trade},
        "explanations": {"files": ["/x/explanations/knee/c0.png"]}, "local_dir": "/x",
    }


def test_pareto_summary_with_one_seed():
    text = format_pareto_report(_pareto(1))
    assert "±" not in text and "seed(s)" not in text and "seeds" not in text and "member(s)" not in text
    assert "1 member over accuracy, active_fraction" in text and "retrained with 1 seed" in text
    assert "test, 1 seed;" in text
    assert "n=16 " in text and "n=1 " in text and "n=16.0" not in text and "n=1.0" not in text
    assert "accuracy 0.8200   AUROC -" in text
    assert "Explanations: 1 file in /x/explanations/knee" in text


def test_pareto_summary_with_several_seeds():
    text = format_pareto_report(_pareto(3, n_members=15.5))
    assert "0.8000 ± 0.0100" in text and "test_acc ± std" in text and "retrained with 3 seeds" in text
    assert "mean of 3 seeds" in text and "n=15.5" in text and "accuracy 0.8200 ± 0.0100" in text


def _filter_rows(std: float) -> list[dict]:
    row = {"model": "unpruned", "test_accuracy": 0.75, "test_accuracy_std": std, "flops_searched": 2e6,
           "flops_network": 4e6, "params_network": 3000, "keras_ms_b32": 5.0,
           "flops_searched_reduction_pct": 0.0, "flops_network_reduction_pct": 0.0, "params_network_reduction_pct": 0.0}
    return [row]


@pytest.mark.parametrize("seeds", [1, 3])
def test_filter_table_shows_the_spread_only_over_several_seeds(seeds):
    text = _markdown(_filter_rows(0.0 if seeds == 1 else 0.05), seeds)
    if seeds == 1:
        assert "±" not in text and "| test acc |" in text and "| 0.7500 |" in text
    else:
        assert "test acc (mean ± std, 3 seeds)" in text and "| 0.7500 ± 0.0500 |" in text


def _tascnet(seed: int) -> dict:
    side = {"params": 1000, "flops": 5000, "conv_filters": 36, "test_accuracy": 0.8}
    return {"seed": seed, "unpruned": side, "pruned": {**side, "params": 800, "test_accuracy": 0.79},
            "reduction": {"params": 0.2, "flops": 0.0, "conv_filters": 0.0}, "iterations": 2, "wall_seconds": 3.0}


def test_tascnet_table_has_a_mean_row_only_over_several_seeds():
    one = results_table([_tascnet(0)]).splitlines()
    assert len(one) == 3 and not any("mean" in line for line in one)
    assert one[1].count("---") == one[0].count(" | ") + 1  # one separator per column
    two = results_table([_tascnet(0), _tascnet(1)]).splitlines()
    assert len(two) == 5 and two[-1].startswith("| mean of 2 seeds | -20.0% |")


def test_compare_p_value_verdict():
    assert _p_verdict(0.01, 0.05) == "p = 0.0100 (significant at alpha = 0.05)"
    assert _p_verdict(0.2, 0.05) == "p = 0.2000 (not significant at alpha = 0.05)"
    assert _p_verdict(1e-6, 0.05).startswith("p = 1.00e-06 (significant")


def test_filter_table_shows_litert_latency_when_measured_and_a_dash_when_off():
    off = _markdown(_filter_rows(0.0), 1)
    assert "LiteRT b1 1 thread (ms)" in off and "| - | - | 5.00 |" in off
    row = {**_filter_rows(0.0)[0], "litert_ms_b1_t1": 1.5, "litert_ms_b1_t2": 1.0, "litert_ms_b1_t1_reduction_pct": 0.0,
           "keras_ms_b32_reduction_pct": 0.0}
    assert "| 1.50 | 1.00 | 5.00 |" in _markdown([row], 1)
