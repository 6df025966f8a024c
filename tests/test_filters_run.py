"""`evoprune run` with deep_pruning_es: bad input before long work, one tiny tracked run end to end, and its resume."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.methods.deep_pruning_es import report as filters_report
from evoprune_tf.methods.deep_pruning_es import run as filters_run
from evoprune_tf.app.config import load_config

L = keras.layers


def tiny_config(tmp_path, **sections):
    overrides = {
        "algorithm": {"name": "deep_pruning_es", "generations": 2, "population": 4},
        "data": {"source": "builtin:synthetic", "image_size": 32},
        "backbone": {"name": "mobilenet_v2", "weights": "none", "options": {"alpha": 0.35}},
        "train": {"epochs": 1},
        "report": {"epochs": 1, "seeds": 1},
        "tracking": {"enabled": False},
        "checkpoint": {"dir": str(tmp_path / "checkpoints")},
        "cache_dir": str(tmp_path / "cache"),
        "progress": False,
    }
    for key, value in sections.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return load_config(overrides=overrides)


def no_images(*args, **kwargs):
    raise AssertionError("images were loaded before the network was checked")


def test_blocks_larger_than_the_network_fail_before_images(tmp_path, monkeypatch):
    monkeypatch.setattr(filters_run, "load_run_images", no_images)
    config = tiny_config(tmp_path, encoding={"blocks": 99})
    with pytest.raises(ValueError, match=r"^encoding.blocks=99: network .* has only \d+ blocks") as info:
        filters_run.run_filter_pruning(config)
    assert "\n" not in str(info.value)


@keras.saving.register_keras_serializable(package="evoprune_tf_tests")
class Gate(keras.layers.Layer):
    """A layer the coupling analysis does not know."""

    def call(self, inputs):
        return inputs * keras.ops.sigmoid(inputs)


def test_unsupported_layer_is_named_before_images(tmp_path, monkeypatch):
    monkeypatch.setattr(filters_run, "load_run_images", no_images)
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, name="stem_conv")(inputs)
    x = Gate(name="gate")(x)
    x = L.Conv2D(8, 3, name="block_1_conv")(x)
    out = L.Dense(3, activation="softmax", name="predictions")(L.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match=r"cannot analyse layer 'gate' \(Gate\)"):
        filters_run.run_filter_pruning(tiny_config(tmp_path), network=(keras.Model(inputs, out), "mobilenet_v2"))


def test_config_wiring_for_the_method():
    config = load_config(overrides={"algorithm": {"name": "deep_pruning_es"}})
    assert (config.encoding.name, config.encoding.blocks) == ("filters", 2)
    assert config.objectives.names == ["error", "flops"] and config.operators.select == "heavy_knee_light"
    assert config.operators.mutate == {"name": "flip_bit", "indpb": 0.2} and config.train.epochs == 3
    assert (config.algorithm.population, config.algorithm.generations) == (30, 11)
    from evoprune_tf.app.cli import build_parser, overrides_from_args

    args = build_parser().parse_args(["run", "--algorithm", "deep_pruning_es", "--encoding", "filters",
                                      "--blocks", "all"])
    assert overrides_from_args(args)["encoding"] == {"name": "filters", "blocks": "all"}


#: Epochs of the head warm-up in the runs of this file (30 by default, `HEAD_WARMUP_EPOCHS`):
#: the same seeded fit, shorter; every run and resume that is compared passes the same number.
HEAD_EPOCHS = 2


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One tiny tracked DeepPruningES run: the end-to-end test reads it, the resume tests compare with it."""
    from conftest import new_mlflow_store
    from evoprune_tf.app.run import run

    tmp_path = tmp_path_factory.mktemp("dpes")
    uri = new_mlflow_store(tmp_path)
    config = tiny_config(tmp_path, tracking={"enabled": True, "uri": uri, "experiment": "dpes-test"},
                         algorithm={"population": 3})
    return run(config, head_epochs=HEAD_EPOCHS), uri, tmp_path  # dispatched to run_filter_pruning


@pytest.mark.slow
def test_tiny_run_end_to_end_is_tracked_and_exports_compact_models(tracked_run):
    from mlflow import MlflowClient

    result, uri, tmp_path = tracked_run
    assert isinstance(result, filters_run.FilterRunResult)
    assert result.logbook[0]["nevals"] == 1 and len(result.logbook) == 3
    assert [r["model"] for r in result.table] == list(filters_report.MODEL_NAMES)
    base, knee = result.table[0], result.table[2]
    assert base["flops_searched_reduction_pct"] == 0.0 and knee["flops_searched"] <= base["flops_searched"]
    assert knee["flops_network"] - knee["flops_searched"] == base["flops_network"] - base["flops_searched"]
    # The shared latency helper: LiteRT at batch 1 on 1 and 2 threads, Keras at batch 32, reductions vs unpruned.
    for row in result.table:
        assert row["keras_ms_b32"] > 0 and row["litert_ms_b1_t1"] > 0 and row["litert_ms_b1_t2"] > 0
        assert row["litert_max_abs_diff"] < 1e-4 and row["tflite_bytes"] > 10_000
        assert row["litert_ms_b1_t1_reduction_pct"] == pytest.approx(
            100 * (1 - row["litert_ms_b1_t1"] / base["litert_ms_b1_t1"]), abs=0.006)
    client = MlflowClient(tracking_uri=uri)
    run_info = client.get_run(result.run_id)
    assert run_info.info.status == "FINISHED"
    assert "evoprune.model_uri.knee_model" in run_info.data.tags
    assert "knee_flops_searched_reduction_pct" in run_info.data.metrics and "hypervolume" in run_info.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "report")}
    assert {"report/trade_off_models.csv", "report/trade_off_models.md", "report/flops_vs_accuracy.png",
            "report/latency.csv", "report/latency.md"} <= artifacts
    assert "knee_litert_ms_b1_t1" in run_info.data.metrics and "unpruned_keras_ms_b32" in run_info.data.metrics
    tflite = {a.path for a in client.list_artifacts(result.run_id, "litert")}
    assert tflite == {f"litert/{name}.tflite" for name in filters_report.MODEL_NAMES}
    # The logged .tflite of the knee computes what the knee's Keras model computes.
    from evoprune_tf.report.latency import litert_predict

    knee_file = client.download_artifacts(result.run_id, "litert/knee.tflite", str(tmp_path))
    model = result.models["knee"]
    images = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3)).astype(np.float32)
    expected = model.predict(images, verbose=0)  # one traced predict serves both comparisons
    np.testing.assert_allclose(litert_predict(knee_file, images), expected, atol=1e-4)
    # The exported model is the compact network: images in, same outputs after a .keras round trip.
    path = tmp_path / "knee.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-5)
    assert loaded.count_params() == result.table[2]["params_network"]



#: The cut runs of the resume tests: the tracked run's search, without the LiteRT export.
#: The resumes compare the search and the retrained accuracies with the tracked run; the
#: LiteRT files and timings (most of a report's time: 4 conversions) are the end-to-end
#: test's, and the report's LiteRT setting acts after the search and the retraining.
CUT = {"algorithm": {"population": 3}, "report": {"litert": False}}


def cut_config(tracked_run, folder):
    """The cut run's config in ``folder``, its cache seeded with the tracked run's prefix activations.

    Same network, images and cut as the tracked run: the cut run reads the activations the
    tracked run computed instead of running the prefix again (the warm resume of the SIGKILL
    test shows that read activations give the same run).
    """
    import shutil

    shutil.copytree(tracked_run[2] / "cache", folder / "cache")
    return tiny_config(folder, **CUT)


@pytest.mark.slow
def test_an_interrupted_deep_pruning_es_run_resumes_to_the_uninterrupted_result(tracked_run, tmp_path, untimed_keras):
    """`evoprune resume` for a filter run: Ctrl-C after generation 1, resume, same archive and report as one go.

    The uninterrupted run is the tracked one (tracking does not change a run's results).
    """
    from helpers_runs import Interrupt

    from evoprune_tf.app.run import resume, run

    whole = tracked_run[0]
    config = cut_config(tracked_run, tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        run(config, callbacks=[Interrupt(1, KeyboardInterrupt())], head_epochs=HEAD_EPOCHS)
    checkpoints = list((tmp_path / "cut" / "checkpoints").rglob("checkpoint.npz"))
    assert len(checkpoints) == 1
    resumed = resume(checkpoints[0], head_epochs=HEAD_EPOCHS)
    assert resumed.evaluator.activations_from_disk  # a warm cache: the resume reads the prefix activations
    assert [g["nevals"] for g in resumed.logbook] == [g["nevals"] for g in whole.logbook]
    key = lambda ind: (tuple(ind.fitness.values), bytes(np.asarray(ind, dtype=np.int8)))  # noqa: E731
    assert sorted(map(key, resumed.halloffame)) == sorted(map(key, whole.halloffame))
    assert [r["test_accuracy"] for r in resumed.table] == [r["test_accuracy"] for r in whole.table]


KILLED = """
import json, os, signal, sys
from evoprune_tf.app.config import config_from_dict
from evoprune_tf.app.run import run
from evoprune_tf.search.callbacks import Callback

class Die(Callback):
    def on_generation(self, state):
        if state.generation == 1:  # after the checkpoint of generation 1
            os.kill(os.getpid(), signal.SIGKILL)

run(config_from_dict(json.load(open(sys.argv[1]))), callbacks=[Die()], head_epochs=int(sys.argv[2]))
"""


@pytest.mark.slow
def test_a_sigkilled_deep_pruning_es_run_resumes_exactly_with_a_cold_cache(tracked_run, tmp_path, untimed_keras):
    """SIGKILL after generation 1; the data-only checkpoint resumes to the uninterrupted result.

    Cold: the prefix-activation cache is deleted before the resume, which computes the
    activations again (the warm resume, which reads them: the interrupted-run test above).
    """
    import json
    import os
    import shutil
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from evoprune_tf.app.run import resume

    whole = tracked_run[0]
    config = cut_config(tracked_run, tmp_path / "cut")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    (tmp_path / "killed.py").write_text(KILLED)
    env = {**os.environ, "PYTHONPATH": str(Path(filters_run.__file__).parents[3])}
    job = subprocess.run([sys.executable, str(tmp_path / "killed.py"), str(tmp_path / "config.json"),
                          str(HEAD_EPOCHS)], cwd=tmp_path, capture_output=True, timeout=600, env=env)
    assert job.returncode == -signal.SIGKILL, job.stderr.decode()[-2000:]
    [path] = list((tmp_path / "cut" / "checkpoints").rglob("checkpoint.npz"))
    shutil.rmtree(tmp_path / "cut" / "cache")
    key = lambda ind: (tuple(ind.fitness.values), bytes(np.asarray(ind, dtype=np.int8)))  # noqa: E731
    resumed = resume(path, head_epochs=HEAD_EPOCHS)
    assert not resumed.evaluator.activations_from_disk
    assert [g["nevals"] for g in resumed.logbook] == [g["nevals"] for g in whole.logbook]
    assert sorted(map(key, resumed.halloffame)) == sorted(map(key, whole.halloffame))
    assert [r["test_accuracy"] for r in resumed.table] == [r["test_accuracy"] for r in whole.table]


# -- a user's own model: backbone.name = "<file>.keras" or network=keras.Model ---------------------
def own_model(n_classes: int = 3, side: int = 32) -> keras.Model:
    """A small trained-looking classifier with its own head and a nested Sequential stem."""
    stem = keras.Sequential([keras.Input((side, side, 3)), L.Rescaling(1 / 255.0, name="scale"),
                             L.Conv2D(8, 3, name="stem_conv"), L.BatchNormalization(name="stem_bn"),
                             L.ReLU(name="stem_relu")], name="stem")
    inputs = keras.Input((side, side, 3), name="pixels")
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="block_1_conv")(stem(inputs))
    x = L.Dense(16, activation="relu", name="hidden")(L.GlobalAveragePooling2D(name="pool")(x))
    return keras.Model(inputs, L.Dense(n_classes, activation="softmax", name="classes")(x), name="own")


@keras.saving.register_keras_serializable(package="evoprune_tf_tests")
class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_own_model_file_loads_as_saved_and_bad_files_fail_in_one_line(tmp_path, monkeypatch):
    from evoprune_tf.app.config import ConfigError
    from evoprune_tf.model_files import load_model_file, model_file_image_size
    from evoprune_tf.nn import filter_groups

    model = own_model()
    model.save(tmp_path / "own.keras")
    assert model_file_image_size(tmp_path / "own.keras") == 32
    loaded, module = filters_run.build_filter_network(str(tmp_path / "own.keras"), weights=None, image_size=32,
                                                      n_classes=3)
    assert module is None and loaded.count_params() == model.count_params()
    assert [(g.name, g.size, g.prunable) for g in filter_groups(loaded)] == [
        ("stem_conv", 8, True), ("block_1_conv", 12, True), ("hidden", 16, True), ("classes", 3, False)]
    sub = Subclassed()
    sub(np.zeros((1, 4), np.float32))
    sub.save(tmp_path / "sub.keras")
    with pytest.raises(ValueError, match=r"^model file '.*sub.keras' holds a Subclassed, a model without a layer "
                                         r"graph; expected a functional or Sequential model$"):
        load_model_file(tmp_path / "sub.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"^cannot load model file '.*junk.keras' \(") as info:
        load_model_file(tmp_path / "junk.keras")
    assert "\n" not in str(info.value)
    # The config accepts a model file for deep_pruning_es only.
    with pytest.raises(ConfigError, match="is a model file: only algorithm 'deep_pruning_es'"):
        load_config(overrides={"backbone": {"name": str(tmp_path / "own.keras")}})
    with pytest.raises(ConfigError, match="missing.keras' is not a file; expected a saved .keras model"):
        load_config(overrides={"algorithm": {"name": "deep_pruning_es"}, "backbone": {"name": "missing.keras"}})
    # A keras.Model handed in (the Python API) is checked against the images before long work.
    monkeypatch.setattr(filters_run, "load_run_images", no_images)
    with pytest.raises(ValueError, match=r"model 'own' takes 32x32 images; data.image_size=48: expected"):
        filters_run.run_filter_pruning(tiny_config(tmp_path, data={"image_size": 48}), network=model)


@pytest.mark.slow
def test_own_model_file_is_pruned_whole_with_its_head(tmp_path, untimed_keras):
    """A user's ``.keras`` file pruned whole; no LiteRT files or Keras timings (the end-to-end test's)."""
    from evoprune_tf.data.synthetic import CLASSES

    model = own_model(n_classes=len(CLASSES))
    path = tmp_path / "own.keras"
    model.save(path)
    config = tiny_config(tmp_path, backbone={"name": str(path), "weights": "none", "options": {}},
                         encoding={"blocks": "all"}, algorithm={"population": 3, "generations": 1},
                         report={"litert": False})
    result = filters_run.run_filter_pruning(config, out=open(tmp_path / "log.txt", "w"))
    rows = {r["model"]: r for r in result.table}
    assert rows["unpruned"]["params_network"] == model.count_params()
    assert rows["light"]["params_network"] <= rows["unpruned"]["params_network"]
    assert {g.name for g in result.evaluator.encoding.groups} == {"stem_conv", "block_1_conv", "hidden"}
    # The compact model takes raw pixels like the user's model (no preprocessing layer added).
    compact = result.models["light"]
    assert not any(type(lay).__name__ == "BackbonePreprocessing" for lay in compact.layers)
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    unpruned = result.models["unpruned"].predict(images, verbose=0)
    assert unpruned.shape == (2, len(CLASSES))
