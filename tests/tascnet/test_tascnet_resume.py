"""Issue 22 item 2: TASCNet checkpoints after every stage-1 candidate and stage-2 iteration; resume is exact.

A tiny image run (MobileNetV2, ``weights=None``, 32 px, 3 candidates, 2 prune iterations)
is run once without interruption and once SIGKILLed twice: after stage-1 candidate 2,
then (resumed with ``evoprune resume FOLDER`` in a second process) after stage-2
iteration 1, then resumed to the end with ``evoprune resume RUN_ID``. Both must give the
same candidates, iterations, report and final weights, and the MLflow run must hold each
step once. The two killed runs are real processes that really get SIGKILL; the last
resume and the uninterrupted reference run in the test's process (`main` of the CLI,
on the CPU as the killed processes), which saves two interpreter starts.

All four runs execute Keras' train and predict functions eagerly
(``tf.config.run_functions_eagerly``, tests/helpers_eager.py): the same steps and maths
without tracing a graph per model (a run: ~35 -> ~12 CPU-s); what is checked here is the checkpoint and resume
logic, which does not depend on it (graph-mode exactness of stage 2:
`test_stage2_continues_from_a_stored_state_exactly` below). The Keras latency timings,
which the comparison leaves out, are stubbed in the test's process (the killed ones stop
before the table; the timing itself: tests/tascnet/test_tascnet_latency.py).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import new_mlflow_store
from helpers_eager import EAGER_DATA_WARNING, eager_functions

from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.methods.tascnet.checkpointing import TascnetCheckpoints
from evoprune_tf.search import checkpoint_format as fmt

#: Runs the CLI and SIGKILLs its own process right after the N-th checkpoint write (``KILL_AFTER_SAVES``).
_KILLER = """
import os, signal, sys
from evoprune_tf.search import checkpoint
limit = int(os.environ.get("KILL_AFTER_SAVES", "0"))
original, saves = checkpoint.CheckpointCallback.save, []
def save(self, state):
    path = original(self, state)
    saves.append(path)
    if len(saves) == limit:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
checkpoint.CheckpointCallback.save = save
import tensorflow as tf
tf.config.run_functions_eagerly(True)  # as the test's process (_in_process)
from evoprune_tf.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _config(tmp_path: Path, store: str) -> Path:
    path = tmp_path / f"{store}.toml"
    path.write_text(
        f'seed = 1\nprogress = false\n[algorithm]\nname = "tascnet"\n'
        f'[data]\nsource = "{tmp_path / "tiny.npz"}"\nimage_size = 32\nval_fraction = 0.25\n'
        f'[backbone]\nname = "MobileNetV2"\nweights = "none"\n'
        f'[tracking]\nuri = "{new_mlflow_store(tmp_path / store)}"\nexperiment = "tascnet-resume"\n'
        f'[report]\nexport_model = false\nlitert = false\n'
        f'[tascnet]\nstage = "both"\nevaluations = 3\npopulation = 2\nsearch_epochs = 1\nfinal_epochs = 1\n'
        f'epochs = 1\nmax_iterations = 2\nlevels = 2\ntolerance = 1.0\nlr = 0.01\n'
        f'configuration = {{replace = 0, unfreeze = 1, dense = [[64, 0.3]]}}\n'
    )
    return path


def _cli(tmp_path: Path, *args: str, kill_after: int = 0) -> subprocess.Popen:
    env = {**os.environ, "KILL_AFTER_SAVES": str(kill_after), "PYTHONPATH": str(Path(__file__).parents[2]),
           "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-c", _KILLER, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@contextlib.contextmanager
def _in_process():
    """As in the killed processes: TensorFlow's ops on the CPU (a no-op without a GPU), functions
    run eagerly (the test's `untimed_keras` stubs the Keras latency timing `_results` leaves out)."""
    import tensorflow as tf

    with eager_functions(), tf.device("/CPU:0"):
        yield


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    out, _ = process.communicate(timeout=900)
    return process.returncode, out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _results(folder: Path) -> dict:
    import keras

    from evoprune_tf.backbones import BackbonePreprocessing  # noqa: F401 - registers the layer for loading

    report = json.loads((folder / "report.json").read_text())
    for key in ("wall_seconds", "model_path", "mlflow_run_id"):
        report.pop(key, None)
    # Timings differ from run to run; what was measured must not.
    report["latency"] = {name: (row["flops"], row["params"]) for name, row in report["latency"].items()}
    model = keras.models.load_model(folder / "models" / "tascnet.keras", compile=False)
    return {"stage1": _rows(folder / "stage1_candidates.csv"), "stage2": _rows(folder / "stage2_history.csv"),
            "report": report, "weights": model.get_weights()}


@pytest.mark.slow
@pytest.mark.filterwarnings(EAGER_DATA_WARNING)
def test_sigkilled_tascnet_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys,
                                                                    untimed_keras) -> None:
    import mlflow

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(48, 32, 32, 3), dtype=np.uint8)
    y = np.arange(48) % 2
    x[y == 1, :, :, 0] = 255
    np.savez(tmp_path / "tiny.npz", x_train=x[:36], y_train=y[:36], x_test=x[36:], y_test=y[36:])
    whole, killed = _config(tmp_path, "whole"), _config(tmp_path, "killed")

    code, out = _finish(_cli(tmp_path, "run", str(killed), kill_after=2))  # after stage-1 candidate 2
    assert code == -signal.SIGKILL, out
    (run_id,) = [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()]
    # Resumed from its folder: candidate 3 (save 1), stage-2 iteration 0 (save 2), iteration 1 (save 3): killed.
    code, out = _finish(_cli(tmp_path, "resume", str(tmp_path / "killed" / "checkpoints" / run_id), kill_after=3))
    assert code == -signal.SIGKILL, out
    # The rest in this process: by run id, in the run's store; then the uninterrupted reference.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'killed'}/mlflow.db")
    capsys.readouterr()
    with _in_process():  # as the killed processes (CUDA_VISIBLE_DEVICES="", eager functions)
        code = cli_main(["resume", run_id])
        out = capsys.readouterr().out
        assert code == 0 and "stage 2 resumed after iteration 1" in out, out
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        code = cli_main(["run", str(whole)])
        reference_out = capsys.readouterr().out
        assert code == 0, reference_out

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'killed'}/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    # Each candidate and iteration logged once, although the run was stopped twice.
    assert [m.step for m in client.get_metric_history(run_id, "stage1.val_loss")] == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(run_id, "stage2.params")] == [0, 1, 2]
    assert int(run.data.tags["evoprune.checkpoint_generation"]) == 6  # 3 candidates + iterations 0, 1, 2

    (reference_id,) = [p.name for p in (tmp_path / "whole" / "checkpoints").iterdir()]
    expected = _results(tmp_path / "whole" / "reports" / reference_id)
    resumed = _results(tmp_path / "killed" / "reports" / run_id)
    assert len(expected["stage1"]) == 3 and len(expected["stage2"]) == 3
    assert expected["report"]["pruned"]["conv_filters"] < expected["report"]["unpruned"]["conv_filters"]
    for key in ("stage1", "stage2", "report"):
        assert resumed[key] == expected[key], key
    assert len(resumed["weights"]) == len(expected["weights"])
    assert all(np.array_equal(a, b) for a, b in zip(resumed["weights"], expected["weights"]))


def _dropout_net() -> "keras.Model":
    import keras

    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(16, 1, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.4, seed=5, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(x))


def _session(state=None) -> SimpleNamespace:
    resumed = None if state is None else SimpleNamespace(state=state, path="checkpoint.npz")
    return SimpleNamespace(resumed=resumed, config=SimpleNamespace(checkpoint=SimpleNamespace(every=1)),
                           checkpoint_callback=lambda evaluator: None)


def _stored(value):
    """``value`` written to and read back from the data-only checkpoint format."""
    buffer = io.BytesIO()
    fmt.write_payload(buffer, {}, {"state": value})
    return fmt.read_payload(buffer.getvalue())[1]["state"]


def test_stage2_continues_from_a_stored_state_exactly() -> None:
    """Resumed after iteration 1 on a fresh model: the same records and final weights (in process, fast)."""
    from evoprune_tf.methods.tascnet.models import TrainRecipe
    from evoprune_tf.methods.tascnet.stage2 import PruneSettings, tascnet_prune

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 4)).astype("float32")
    y = (x[:, :, :, 0].mean(axis=(1, 2)) > 0).astype("int64")
    settings = PruneSettings(prune_percent=25, min_filters=4, epochs=1, reg_epochs=1, max_iterations=2,
                             tolerance=1.0, mode="merge", recipe=TrainRecipe(lr=0.05, batch_size=16))
    progress = TascnetCheckpoints(_session())
    states = []

    def keep(state) -> None:
        progress.save_stage2(state)
        states.append(_stored(progress.state()))

    whole = tascnet_prune(_dropout_net(), (x, y), (x[:32], y[:32]), settings, seed=0, on_state=keep,
                          test=(x[32:], y[32:]))
    assert [r.iteration for r in whole.history] == [0, 1, 2] and len(states) == 3
    restored = TascnetCheckpoints(_session(states[1]))
    loop = restored.restore_stage2(_dropout_net())
    assert loop.iteration == 1 and loop.current.get_layer("c1").filters == whole.history[1].filters["c1"]
    again = tascnet_prune(_dropout_net(), (x, y), (x[:32], y[:32]), settings, seed=0, resume=loop,
                          test=(x[32:], y[32:]))

    def plain(records):
        return [dataclasses.replace(r, seconds=0.0) for r in records]

    assert plain(again.history) == plain(whole.history) and again.stop_reason == whole.stop_reason
    expected, got = whole.model.get_weights(), again.model.get_weights()
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    # The unpruned reference (of the latency table) is the model iteration 0 scored, also when resumed.
    from evoprune_tf.methods.tascnet.models import evaluate_model

    for result in (whole, again):
        assert result.unpruned_model.count_params() == whole.unpruned.params
        assert evaluate_model(result.unpruned_model, (x[:32], y[:32]))[1] == whole.unpruned.val_accuracy
