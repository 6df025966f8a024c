"""Filter baselines end to end: `evoprune run --algorithm l1_filters` tracked, taylor at another run's FLOPs, real RPS."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from evoprune_tf.app.config import load_config
from evoprune_tf.methods.deep_pruning_es import run as filters_run

TOML = """
seed = 0
progress = false
cache_dir = "{cache}"

[data]
source = "builtin:synthetic"
image_size = 32

[backbone]
name = "mobilenet_v2"
weights = "none"
options = {{alpha = 0.35}}

[algorithm]
flops_reduction = 0.4

[report]
epochs = 1
seeds = 1
litert = false

[tracking]
uri = "{uri}"
experiment = "filter-baselines"
"""


def tiny_config(tmp_path, **sections):
    overrides = {
        "algorithm": {"name": "l1_filters"},
        "data": {"source": "builtin:synthetic", "image_size": 32},
        "backbone": {"name": "mobilenet_v2", "weights": "none", "options": {"alpha": 0.35}},
        "report": {"epochs": 1, "seeds": 1, "litert": False},
        "tracking": {"enabled": False},
        "cache_dir": str(tmp_path / "cache"),
        "progress": False,
    }
    for key, value in sections.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return load_config(overrides=overrides)


def test_an_unreachable_target_fails_before_any_image_is_read(tmp_path, monkeypatch):
    def no_images(*args, **kwargs):
        raise AssertionError("images were loaded before the FLOPs target was checked")

    monkeypatch.setattr(filters_run, "load_run_images", no_images)
    from evoprune_tf.app.run import run

    for name in ("l1_filters", "taylor"):
        config = tiny_config(tmp_path, algorithm={"name": name, "flops_reduction": 0.9999})
        with pytest.raises(ValueError, match=r"^algorithm.flops_reduction: the target of .* cannot be reached; "
                                             r"the smallest reachable is"):
            run(config)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`evoprune run cfg.toml --algorithm l1_filters`, tracked in a fresh store."""
    from conftest import new_mlflow_store, untimed_keras_latency

    from evoprune_tf.app.cli import main as cli_main
    from evoprune_tf.report import latency

    tmp_path = tmp_path_factory.mktemp("l1run")
    uri = new_mlflow_store(tmp_path)
    path = tmp_path / "run.toml"
    path.write_text(TOML.format(cache=tmp_path / "cache", uri=uri))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(latency, "keras_latency_ms", untimed_keras_latency)  # no test here reads them
        assert cli_main(["run", str(path), "--algorithm", "l1_filters"]) == 0
    return uri, tmp_path


@pytest.mark.slow
def test_evoprune_run_l1_filters_is_tracked_with_the_report_table(cli_run):
    from mlflow import MlflowClient

    uri, tmp_path = cli_run
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("filter-baselines").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["evoprune.ranking"] == "layer"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/trade_off_models.csv", "report/trade_off_models.md", "report/latency.md",
            "report/flops_vs_accuracy.png"} <= artifacts
    table = Path(client.download_artifacts(run.info.run_id, "report/trade_off_models.md", str(tmp_path))).read_text()
    assert "| unpruned |" in table and "| l1_filters |" in table
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "report.json", str(tmp_path))).read_text())
    assert report["method"] == "l1_filters" and report["plan"]["target_error_pct"] < 1.0
    base, pruned = report["table"]
    assert pruned["flops_searched_reduction_pct"] == pytest.approx(40.0, abs=0.4)
    assert pruned["flops_searched"] == report["plan"]["flops_searched"]
    assert "l1_filters_test_accuracy" in run.data.metrics and "evoprune.model_uri.l1_filters_model" in run.data.tags


@pytest.mark.slow
def test_taylor_at_the_flops_of_another_run(cli_run, tmp_path, untimed_keras):
    from mlflow import MlflowClient

    from evoprune_tf.app.run import run

    uri, first = cli_run
    client = MlflowClient(tracking_uri=uri)
    [other] = client.search_runs([client.get_experiment_by_name("filter-baselines").experiment_id])
    report = json.loads(Path(client.download_artifacts(other.info.run_id, "report.json", str(tmp_path))).read_text())
    # No model logged to MLflow (the pipeline's export is the l1 test's: same code path).
    config = tiny_config(tmp_path, algorithm={"name": "taylor", "flops_of": other.info.run_id[:8], "taylor_batches": 2},
                         tracking={"enabled": True, "uri": uri, "experiment": "filter-baselines"},
                         report={"dir": str(tmp_path / "report"), "export_model": False})
    # Same network and images as the other run: its prefix activations are read, not computed again.
    shutil.copytree(first / "cache", tmp_path / "cache")
    result = run(config, head_epochs=2)  # a shorter head warm-up (30 epochs by default)
    assert result.evaluator.activations_from_disk
    knee = report["table"][1]
    assert result.plan.scope == "global" and result.plan.error < 0.01
    assert result.plan.target == pytest.approx(knee["flops_searched"])  # same network: same prefix
    assert result.table[1]["model"] == "taylor"
    assert result.table[1]["flops_network"] == pytest.approx(knee["flops_network"], rel=0.01)
    assert (tmp_path / "report" / "trade_off_models.md").is_file()


@pytest.mark.slow
def test_l1_filters_on_the_shared_rps_assets(tmp_path, untimed_keras):
    """The real shared RPS images and ImageNet MobileNetV2 weights, last block, 1 retrain epoch."""
    assets = os.environ.get("EVOPRUNE_ASSETS")
    if not assets:
        pytest.skip("EVOPRUNE_ASSETS is not set: needs the shared RPS images and MobileNetV2 weights")
    weights = Path(assets) / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    data = Path(assets) / "datasets" / "rps_28px"
    if not weights.is_file() or not data.is_dir():
        pytest.skip(f"{weights} or {data} is missing")
    from evoprune_tf.app.run import run

    config = tiny_config(tmp_path, data={"source": str(data), "image_size": 32, "max_per_class": 60},
                         backbone={"weights": str(weights), "options": {}}, encoding={"blocks": 1, "round_to": 8},
                         algorithm={"flops_reduction": 0.5})
    result = run(config)
    assert result.plan.error < 0.01
    widths = result.plan.describe()["widths"]
    assert all(w % 8 == 0 for w in widths.values())
    base, pruned = result.table
    assert pruned["flops_searched_reduction_pct"] == pytest.approx(50.0, abs=0.6)
    assert base["test_accuracy"] > 0.5  # ImageNet features separate rock, paper and scissors well above chance
