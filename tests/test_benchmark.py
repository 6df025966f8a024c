"""`benchmarks/fitness.py --quick` runs end to end and writes the documented JSON (in this process: see `_script`)."""

import json
import pathlib
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "fitness.py"


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def _assert_consistent(e: dict, evaluations: int, gflop: float, naive_spe: float | None) -> None:
    """One timing entry: its rates follow from its seconds, evaluations and work (to the JSON's rounding)."""
    seconds = e["seconds"]
    rel = 5e-5 / seconds + 2e-3  # "seconds" is rounded to 4 decimals
    assert e["evaluations"] == evaluations, e
    assert e["seconds_per_eval"] == pytest.approx(seconds / evaluations, rel=rel, abs=1e-5), e
    assert e["evals_per_second"] == pytest.approx(evaluations / seconds, rel=rel, abs=1e-3), e
    assert e["gflops"] == pytest.approx(gflop / seconds, rel=rel, abs=0.01), e
    if naive_spe is not None:
        assert e["speedup_vs_naive"] == pytest.approx(naive_spe / e["seconds_per_eval"], rel=rel, abs=0.01), e


def _script(monkeypatch, path: pathlib.Path):
    """A benchmark script imported as a module, to run its ``main`` in this process.

    A child would import TensorFlow again (~10 CPU-s); the Keras engine runs in this
    process as in the script's. The script's own subprocesses (the Keras-on-JAX and memory
    workers) still start. ``sys.path`` and the ``sys.modules`` entry are restored after
    the test (``engine_ab.py`` puts ``benchmarks/`` first on the path and imports ``fitness``).
    """
    import importlib.util

    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_json(tmp_path, monkeypatch, capsys):
    out = tmp_path / "x.json"
    for name, value in {"KERAS_HOME": str(tmp_path / "keras"), "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
                        "PYTHONWARNINGS": "ignore"}.items():
        monkeypatch.setenv(name, value)  # as the script's own environment (its workers inherit it)
    # One encoding keeps it short; the other runs through the same code (`--encodings`).
    # `--rss-backends` with no backend: the memory test on the NumPy engine only (the one
    # checked below); the Keras engine's is the same worker with another TrainConfig, and
    # its subprocess (a TensorFlow start-up and 21 warm-up compilations) is not worth its time here.
    code = _script(monkeypatch, SCRIPT).main(["--quick", "--encodings", "feature_selection", "--rss-backends",
                                              "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "| encoding | evaluator |" in stdout and "Command: `python benchmarks/fitness.py --quick" in stdout
    check_quick_result(json.loads(out.read_text()))


def check_quick_result(result: dict) -> None:
    """The JSON of ``fitness.py --quick --encodings feature_selection``: complete and self-consistent."""
    assert {"command", "workload", "gemm", "encodings", "rss", "machine", "targets", "markdown"} <= set(result)
    assert result["workload"]["n_features"] == 1280 and result["workload"]["quick"] is True
    gemm = result["gemm"]
    assert _positive(gemm["reference_gflops"]) and gemm["reference"] in gemm["rates"]
    for rate in gemm["rates"].values():
        assert _positive(rate["head_shape"]) and _positive(rate["large"])
    assert set(result["encodings"]) == {"feature_selection"}
    workload = result["workload"]
    # --quick: 400 / 100 samples, 1 epoch, 4 genomes, 1 naive genome (benchmarks/fitness.py:resolve)
    assert (workload["n_train"], workload["n_val"], workload["epochs"], workload["genomes"],
            workload["naive_genomes"]) == (400, 100, 1, 4, 1)
    for name, r in result["encodings"].items():
        naive = r["naive"]
        assert naive["genomes"] == len(naive["seconds_each"]) == workload["naive_genomes"], name
        assert naive["seconds_per_eval"] == pytest.approx(np.mean(naive["seconds_each"]), abs=1e-3), name
        assert "numpy_group1" in r["population"] and "numpy" in r["alone"]
        # every genome of the population is evaluated once, by every path
        entries = [r["one_at_a_time"], *r["population"].values()]
        for e in entries:
            for key in ("seconds_per_eval", "evals_per_second", "gflops", "gemm_fraction", "speedup_vs_naive"):
                assert _positive(e[key]), (name, key, e)
            _assert_consistent(e, workload["genomes"], r["population_gflop"], naive["seconds_per_eval"])
        # every entry's GEMM fraction is its GFLOP/s over the same reference rate
        ratios = [e["gemm_fraction"] / e["gflops"] for e in entries if e["gflops"] >= 1]
        assert max(ratios) == pytest.approx(min(ratios), rel=0.05), (name, ratios)
        for alone in r["alone"].values():
            ones, sparse = alone["all_ones"], alone["density_20"]
            assert ones["density"] == 1.0 and sparse["density"] == pytest.approx(0.2, abs=0.01)
            for e in (ones, sparse):
                assert e["evaluations"] == 1 and e["seconds_per_eval"] == pytest.approx(e["seconds"], abs=1e-4)
            assert alone["sparsity_speedup"] == pytest.approx(ones["seconds"] / sparse["seconds"], rel=0.02)
            assert _positive(alone["sparsity_speedup"])
            # the work done (GFLOP/s x s): 20% of the features is well under half the all-ones head's
            assert ones["gflops"] * ones["seconds"] > 2 * sparse["gflops"] * sparse["seconds"]
        keras_runs = [e for label, e in r["population"].items() if label.startswith("keras")]
        assert keras_runs, sorted(r["population"])  # keras_tensorflow, and keras_jax where JAX is installed
        for e in keras_runs:  # same fitness as the NumPy engine (at most one borderline sample may flip)
            assert e["max_accuracy_diff_vs_numpy"] <= 1.0 / result["workload"]["n_val"] + 1e-9
            assert e["max_loss_diff_vs_numpy"] < 1e-4
    assert set(result["rss"]) == {"numpy"}
    rss = result["rss"]["numpy"]
    assert "error" not in rss, rss
    # --quick: 40 memory evaluations
    assert rss["evaluations"] == 40 and rss["peak_rss_growth_mb"] >= 0 and _positive(rss["rss_before_mb"])
    assert result["machine"]["load_average_before"] and result["machine"]["cpu_count"] >= 1
    targets = result["targets"]
    assert {"feature_selection", "peak_rss_growth_mb < 100"} <= set(targets)


AB_SCRIPT = SCRIPT.parent / "engine_ab.py"


def test_engine_ab_measures_both_encodings_and_rejects_a_bad_count(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setitem(sys.modules, "fitness", _script(monkeypatch, SCRIPT))  # what its `from fitness import` gets
    engine_ab = _script(monkeypatch, AB_SCRIPT)
    capsys.readouterr()
    assert engine_ab.main(["--genomes", "2", "--repeats", "1", "--epochs", "1", "--group-size", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["encoding"] for r in rows] == ["feature_selection", "neuron_pruning"]
    assert all(r["engine"] == "keras engine on tensorflow" and _positive(r["warm_s_per_eval"])
               and r["cold_s_per_eval"] >= r["warm_s_per_eval"] > 0 and r["first_loss"] > 0
               and _positive(r["warm_evals_per_s"]) for r in rows)
    with pytest.raises(SystemExit) as bad:  # argparse's exit: status 2 and the message on stderr
        engine_ab.main(["--genomes", "0"])
    assert bad.value.code == 2 and "--genomes=0; expected a positive integer" in capsys.readouterr().err
