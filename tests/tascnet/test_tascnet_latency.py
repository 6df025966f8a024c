"""Issue 24 item 5: TASCNet's final models get DeepPruningES's latency table (one latency helper)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import new_mlflow_store


@pytest.mark.slow
def test_tascnet_reports_the_latency_of_its_unpruned_and_pruned_models(tmp_path) -> None:
    import mlflow

    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.methods.tascnet.run import run_tascnet
    from evoprune_tf.report.latency import litert_available

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(48, 32, 32, 3), dtype=np.uint8)
    y = np.arange(48) % 2
    x[y == 1, :, :, 0] = 255
    np.savez(tmp_path / "tiny.npz", x_train=x[:36], y_train=y[:36], x_test=x[36:], y_test=y[36:])
    uri = new_mlflow_store(tmp_path)
    config = config_from_dict({
        "seed": 2, "progress": False, "algorithm": {"name": "tascnet"},
        "data": {"source": str(tmp_path / "tiny.npz"), "image_size": 32, "val_fraction": 0.25},
        "backbone": {"name": "MobileNetV2", "weights": "none"},
        "tracking": {"uri": uri, "experiment": "tascnet-latency"},
        "report": {"export_model": False, "litert": "auto"},
        "tascnet": {"stage": 2, "epochs": 1, "final_epochs": 1, "max_iterations": 1, "tolerance": 1.0,
                    "reg_epochs": 0,  # the pair-similarity epoch only moves weights; the table needs the pruning
                    "lr": 0.01, "prune_percent": 20, "configuration": {"replace": 0, "unfreeze": 1,
                                                                       "dense": [[64, 0.0]]}},
    })
    report = run_tascnet(config, out_dir=tmp_path / "out")
    unpruned, pruned = report["latency"]["unpruned"], report["latency"]["pruned"]
    # The table's FLOPs are the whole deployable network: the frozen prefix plus the searched layers.
    assert unpruned["flops"] - pruned["flops"] == report["unpruned"]["flops"] - report["pruned"]["flops"] > 0
    assert unpruned["params"] > pruned["params"] and pruned["params_reduction_pct"] > 0
    assert unpruned["keras_ms_b32"] > 0 and pruned["keras_ms_b32"] > 0 and "keras_ms_b32_reduction_pct" in pruned
    with open(tmp_path / "out" / "latency" / "latency.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["unpruned", "pruned"]
    assert (tmp_path / "out" / "latency" / "latency.md").read_text().count("|") > 10
    if litert_available():
        for name, row in (("unpruned", unpruned), ("pruned", pruned)):
            assert (tmp_path / "out" / "latency" / "litert" / f"{name}.tflite").stat().st_size == row["tflite_bytes"]
            assert row["litert_ms_b1_t1"] > 0 and row["litert_ms_b1_t2"] > 0
            assert row["litert_max_abs_diff"] < 1e-3  # the .tflite computes what the Keras model does
    client = mlflow.MlflowClient(tracking_uri=uri)
    logged = {a.path for a in client.list_artifacts(report["mlflow_run_id"], "latency")}
    assert {"latency/latency.csv", "latency/latency.md"} <= logged
    metrics = client.get_run(report["mlflow_run_id"]).data.metrics
    assert metrics["final.latency.pruned.keras_ms_b32"] == pruned["keras_ms_b32"]
