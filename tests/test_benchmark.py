"""`benchmarks/fitness.py --quick` runs end to end and writes the documented JSON."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "fitness.py"


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_json(tmp_path):
    out = tmp_path / "x.json"
    env = {
        **os.environ,
        "KERAS_HOME": str(tmp_path / "keras"),
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(
        # one encoding keeps it short; the other runs through the same code (`--encodings`)
        [sys.executable, str(SCRIPT), "--quick", "--encodings", "feature_selection", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| encoding | evaluator |" in proc.stdout and "Command: `python benchmarks/fitness.py --quick" in proc.stdout
    result = json.loads(out.read_text())
    assert {"command", "workload", "gemm", "encodings", "rss", "machine", "targets", "markdown"} <= set(result)
    assert result["workload"]["n_features"] == 1280 and result["workload"]["quick"] is True
    gemm = result["gemm"]
    assert _positive(gemm["reference_gflops"]) and gemm["reference"] in gemm["rates"]
    for rate in gemm["rates"].values():
        assert _positive(rate["head_shape"]) and _positive(rate["large"])
    assert set(result["encodings"]) == {"feature_selection"}
    for name, r in result["encodings"].items():
        assert _positive(r["naive"]["seconds_per_eval"]), name
        assert "numpy_group1" in r["population"] and "numpy" in r["alone"]
        entries = [r["one_at_a_time"], *r["population"].values()]
        for alone in r["alone"].values():
            entries += [alone["all_ones"], alone["density_20"]]
            assert _positive(alone["sparsity_speedup"])
        for e in entries:
            for key in ("seconds_per_eval", "evals_per_second", "gflops", "gemm_fraction", "speedup_vs_naive"):
                assert _positive(e[key]), (name, key, e)
        jax_runs = [e for label, e in r["population"].items() if label.startswith("jax")]
        for e in jax_runs:  # same fitness as the NumPy engine (at most one borderline sample may flip)
            assert e["max_accuracy_diff_vs_numpy"] <= 1.0 / result["workload"]["n_val"] + 1e-9
            assert e["max_loss_diff_vs_numpy"] < 1e-4
    rss = result["rss"]["numpy"]
    assert "error" not in rss, rss
    assert rss["evaluations"] > 0 and rss["peak_rss_growth_mb"] >= 0 and _positive(rss["rss_before_mb"])
    assert result["machine"]["load_average_before"] and result["machine"]["cpu_count"] >= 1
    targets = result["targets"]
    assert {"feature_selection", "peak_rss_growth_mb < 100"} <= set(targets)


AB_SCRIPT = SCRIPT.parent / "engine_ab.py"


def test_engine_ab_measures_both_encodings_and_rejects_a_bad_count(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(AB_SCRIPT), "--genomes", "2", "--repeats", "1", "--epochs", "1",
                           "--group-size", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["encoding"] for r in rows] == ["feature_selection", "neuron_pruning"]
    assert all(r["engine"] == "keras engine on tensorflow" and _positive(r["warm_s_per_eval"])
               and r["cold_s_per_eval"] >= r["warm_s_per_eval"] > 0 and r["first_loss"] > 0
               and _positive(r["warm_evals_per_s"]) for r in rows)
    bad = subprocess.run([sys.executable, str(AB_SCRIPT), "--genomes", "0"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "--genomes=0; expected a positive integer" in bad.stderr
