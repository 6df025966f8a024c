"""Issue 15, items 2, 5, 6, 7, 8: signals, output locations, operators on the CLI, the shared feature cache."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store
from helpers_runs import run_toml

import evoprune_tf.app.run as run_module
import evoprune_tf.methods.head.run as head_run
from evoprune_tf.app.cli import load_run_config, main as cli_main, parse_operator
from evoprune_tf.app.config import ConfigError, config_from_dict
from evoprune_tf.search.callbacks import EvolutionState, ProgressBar

# `evoprune run` in its own process on planted features, paced so it can be signalled mid-run.
SERVED = textwrap.dedent('''
    import functools, sys, time
    import numpy as np
    import evoprune_tf.app.run as run_module
    from evoprune_tf.app.cli import main
    from evoprune_tf.features.splits import FeatureSplits
    from evoprune_tf.search.callbacks import Callback

    class Pace(Callback):
        def on_generation(self, state):
            time.sleep(0.3)

    with np.load(sys.argv[2]) as z:
        data = FeatureSplits(*(z[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")),
                             class_names=("c0", "c1", "c2"), name="planted")
    import evoprune_tf.methods.head.run as head_run
    head_run.prepare_features = lambda config: (data, None, None)
    head_run.check_inputs = lambda config: None
    run_module.run = functools.partial(run_module.run, callbacks=[Pace()])
    sys.exit(main(["run", sys.argv[1]]))
''')


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return new_mlflow_store(tmp_path_factory.mktemp("store"))


def _toml(tmp_path: Path, store: str, experiment: str, ckpt: Path | str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(run_toml(checkpoint_dir=ckpt, evaluations=400,
                             tracking=f'uri = "{store}"\nexperiment = "{experiment}"'))
    return path


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, store: str) -> None:
    from mlflow import MlflowClient

    data, _ = make_planted_features(seed=1)
    features = tmp_path / "features.npz"
    np.savez(features, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
             x_test=data.x_test, y_test=data.y_test)
    (tmp_path / "served.py").write_text(SERVED)
    config = _toml(tmp_path, store, "sigterm", tmp_path / "ckpt")
    env = {**os.environ, "PYTHONPATH": str(Path(run_module.__file__).parents[2])}
    job = subprocess.Popen([sys.executable, str(tmp_path / "served.py"), str(config), str(features)], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "ckpt").glob("*/checkpoint.npz")):
            assert job.poll() is None and time.monotonic() < deadline, job.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        job.send_signal(signal.SIGTERM)
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 143, err.decode()[-2000:]
    [path] = list((tmp_path / "ckpt").glob("*/checkpoint.npz"))
    assert f"Resume with: evoprune resume {path}" in out.decode()
    assert "terminated (SIGTERM)" in err.decode()
    run = MlflowClient(store).get_run(path.parent.name)
    assert run.info.status == "KILLED"


@pytest.mark.parametrize("where", ["checkpoint", "cache"])
def test_an_unwritable_output_location_fails_before_any_work_naming_it(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch, capsys, where: str
) -> None:
    from mlflow import MlflowClient

    def never(config):
        raise AssertionError("the dataset was read before the output locations were checked")

    monkeypatch.setattr(head_run, "prepare_features", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = _toml(tmp_path, store, f"unwritable-{where}", blocker / "ck" if where == "checkpoint" else tmp_path / "ck")
    if where == "cache":
        monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(blocker / "cache"))
    assert cli_main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    name = "checkpoint.dir" if where == "checkpoint" else "feature cache"
    assert err.startswith(f"error: {name}") and str(blocker) in err and "not writable" in err
    experiment = MlflowClient(store).get_experiment_by_name(f"unwritable-{where}")
    assert experiment is None or not MlflowClient(store).search_runs([experiment.experiment_id])


def test_a_failure_before_the_loop_can_end_the_run_never_leaves_it_running(tmp_path, store, monkeypatch) -> None:
    from mlflow import MlflowClient

    import evoprune_tf.search.checkpoint as checkpoint_module

    def full_disk(path, checkpoint):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", full_disk)
    monkeypatch.setattr(head_run, "_report", lambda *args, **kwargs: ({}, None))
    data, _ = make_planted_features(seed=2)
    raw = {"seed": 1, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 2, "engine": "numpy"},
           "algorithm": {"population": 6, "evaluations": 30},
           "tracking": {"uri": store, "experiment": "disk-full"}, "checkpoint": {"dir": str(tmp_path / "ck")}}
    with pytest.raises(OSError, match="No space left"):
        run_module.run(config_from_dict(raw), features=data, out=io.StringIO())
    client = MlflowClient(store)
    [run] = client.search_runs([client.get_experiment_by_name("disk-full").experiment_id])
    assert run.info.status == "FAILED"


# ------------------------------------------------------------------ operators on the command line


def test_operator_syntax_separates_import_paths_from_options() -> None:
    assert parse_operator("uniform") == "uniform"
    assert parse_operator("uniform:indpb=0.3") == {"name": "uniform", "indpb": 0.3}
    assert parse_operator("uniform:") == {"name": "uniform"}
    assert parse_operator("my_ops:block_swap") == "my_ops:block_swap"
    assert parse_operator("pkg.mod:block_swap:width=8,p=0.5") == {"name": "pkg.mod:block_swap", "width": 8, "p": 0.5}
    with pytest.raises(ValueError, match=r"operator option 'indpb' in 'uniform:indpb'; expected key=value"):
        parse_operator("uniform:indpb")


PLUGIN = textwrap.dedent('''
    import operators

    @operators.register("crossover")
    def reliability_block_swap(ind1, ind2, width=4):
        ind1[:width], ind2[:width] = ind2[:width].copy(), ind1[:width].copy()
        return ind1, ind2

    def unregistered_swap(ind1, ind2):
        return ind1, ind2
''')


def test_cli_operators_replace_the_configs_and_plugins_name_user_operators(tmp_path, monkeypatch) -> None:
    from evoprune_tf.app.cli import build_parser, overrides_from_args

    (tmp_path / "reliability_ops.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    toml = tmp_path / "ops.toml"
    toml.write_text('[operators]\nmate = {name = "uniform", indpb = 0.3}\n')

    def config(*flags: str):
        args = build_parser().parse_args(["run", str(toml), *flags])
        return load_run_config(args.config, overrides_from_args(args))

    # The file's indpb is not merged into one_point's options (one_point has none).
    assert config("--mate", "one_point:").operators.mate == {"name": "one_point"}
    assert config("--mate", "uniform:indpb=0.1").operators.mate == {"name": "uniform", "indpb": 0.1}
    with pytest.raises(ConfigError, match="reliability_block_swap"):
        config("--mate", "reliability_block_swap")
    chosen = config("--plugin", "reliability_ops", "--mate", "reliability_block_swap:width=2")
    assert chosen.plugins == ["reliability_ops"] and chosen.operators.mate == {"name": "reliability_block_swap", "width": 2}
    assert config("--mate", "reliability_ops:unregistered_swap").operators.mate == "reliability_ops:unregistered_swap"
    toml.write_text('plugins = ["reliability_ops"]\n[operators]\nmate = "reliability_block_swap"\n')
    assert config().operators.mate == "reliability_block_swap"
    with pytest.raises(ConfigError, match=r"plugins: plugin 'no_such_plugin_module' cannot be imported"):
        config("--plugin", "no_such_plugin_module")


# ------------------------------------------------------------------ the feature cache


def test_the_feature_cache_is_shared_by_every_split_of_the_same_images(tmp_path, monkeypatch) -> None:
    from evoprune_tf import backbones
    from evoprune_tf.data import ImageSplits
    from evoprune_tf.features.extract import extract_features_with_info

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(24) % 2

    def split(order: np.ndarray) -> ImageSplits:
        a, b, c = order[:12], order[12:18], order[18:]
        return ImageSplits(pixels[a], labels[a], pixels[b], labels[b], pixels[c], labels[c], class_names=("x", "y"))

    common = dict(backbone="mobilenet", weights=None, cache_dir=tmp_path, backbone_kwargs={"alpha": 0.25}, progress=False)
    first, info = extract_features_with_info(split(np.arange(24)), **common)
    assert not info.hit

    def fail(*args, **kwargs):
        raise AssertionError("the backbone was built again for the same images")

    monkeypatch.setattr(backbones, "build_backbone", fail)
    order = rng.permutation(24)  # another seed's split, say
    second, info2 = extract_features_with_info(split(order), **common)
    assert info2.hit and info2.path == info.path and len(list(tmp_path.glob("*.npz"))) == 1
    everything = np.concatenate([first.x_train, first.x_val, first.x_test])
    assert np.array_equal(np.concatenate([second.x_train, second.x_val, second.x_test]), everything[order])
    assert np.array_equal(second.y_val, labels[order[12:18]])


# ------------------------------------------------------------------ fail before slow work


def test_missing_ood_and_unreachable_imagenet_weights_fail_before_images_are_read(tmp_path, monkeypatch, capsys) -> None:
    import socket

    import evoprune_tf.methods.head.build as build_module

    def never(*args, **kwargs):
        raise AssertionError("images were read before the inputs were checked")

    monkeypatch.setattr(build_module, "load_run_images", never)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("a", "b"):
        (tmp_path / "ds" / name).mkdir(parents=True)
    base = ["run", "--no-tracking", "--no-progress", "--data", str(tmp_path / "ds")]
    assert cli_main([*base, "--objectives", "accuracy,robustness", "--ood", str(tmp_path / "nope"),
                     "--weights", "none"]) == 2
    assert "error: OOD source objectives.ood=" in capsys.readouterr().err

    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", offline)
    assert cli_main(base) == 2
    err = capsys.readouterr().err
    assert "ImageNet weights 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5'" in err
    assert "--weights" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ quiet, complete records


def test_progress_writes_a_line_per_generation_when_not_on_a_terminal() -> None:
    from deap import tools

    stream = io.StringIO()
    bar = ProgressBar(file=stream)
    state = EvolutionState(population=[], halloffame=None, logbook=tools.Logbook(), budget=30)
    bar.on_start(state)
    for generation in range(3):
        state.generation, state.evaluations = generation, 10 * (generation + 1)
        state.logbook.record(gen=generation, best=0.5 + generation / 10, best_active=0.4)
        bar.on_generation(state)
    bar.on_end(state)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("gen=2 evals=30 best=0.7000 active=40%") and "[30/30" in lines[-1]


def test_tracked_runs_log_the_dataset_and_one_active_fraction_column(tmp_path, store, monkeypatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.setattr(head_run, "_report", lambda *args, **kwargs: ({}, None))
    data, _ = make_planted_features(seed=5)
    raw = {"seed": 1, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 2, "engine": "numpy"},
           "algorithm": {"name": "nsga2", "population": 6, "evaluations": 18},
           "objectives": {"names": ["accuracy", "active_fraction"]},
           "tracking": {"uri": store, "experiment": "records"}, "checkpoint": {"dir": str(tmp_path / "ck")}}
    result = run_module.run(config_from_dict(raw), features=data, out=io.StringIO())
    client = MlflowClient(store)
    run = client.get_run(result.run_id)
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.name == "planted" and len(dataset.dataset.digest) > 8
    header = client.download_artifacts(result.run_id, "halloffame.csv", str(tmp_path))
    assert Path(header).read_text().splitlines()[0] == "accuracy,active_fraction,genome"


def test_models_get_a_signature() -> None:
    import keras

    from evoprune_tf.tracking.tracker import _signature

    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    signature = _signature(model)
    assert signature is not None and "5" in json.dumps(signature.to_dict())


def test_tensorflow_start_up_noise_is_filtered(tmp_path) -> None:
    code = ("from evoprune_tf.app.cli import quiet_tensorflow; quiet_tensorflow(); import keras; "
            "keras.layers.Dense(2)(keras.ops.ones((1, 3))); print('ok')")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, timeout=120, cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(Path(run_module.__file__).parents[2])})
    assert done.returncode == 0 and done.stdout.decode().strip() == "ok", done.stderr.decode()[-2000:]
    err = done.stderr.decode()
    for noise in ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN custom operations"):
        assert noise not in err
