"""`benchmarks/filter_eval.py --rss-only`: the RSS trace alone, its target verdict, bad counts in one line."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "filter_eval.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("filter_eval_benchmark_rss", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rss_only_needs_no_litert_and_names_a_bad_block_count(monkeypatch, capsys):
    bench = _benchmark()
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(SystemExit):
        bench.main(["--rss-only", "--rss-blocks", "0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--rss-blocks 0 / --rss-evaluations 330: expected positive counts" in err and "LiteRT" not in err


@pytest.mark.slow
def test_rss_only_quick_run_writes_the_trace_and_its_verdict(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EVOPRUNE_ASSETS", raising=False)  # --quick: random weights, synthetic images
    out = tmp_path / "rss.json"
    assert _benchmark().main(["--quick", "--rss-only", "--rss-blocks", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rss = result["rss"]
    assert rss["evaluations"] == 3 == len(rss["trace_mb"]) and rss["blocks"] == 1 and rss["genome_length"] > 0
    assert rss["target_mb"] == 200.0 and rss["within_target"] == (rss["rss_growth_mb"] < 200.0)
    assert "cached_seconds" not in result and "latency" not in result
    printed = capsys.readouterr().out
    assert "RSS over 3 cached evaluations" in printed and "the 200 MB target" in printed
