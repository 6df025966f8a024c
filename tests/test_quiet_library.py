"""Issue 25 item 6: the library starts as quietly as the CLI, and image stages log one line each off a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from evoprune_tf.data.images import load_images
from evoprune_tf.progress import LineProgress, stage_progress

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_library_then_keras_prints_no_tensorflow_start_up_lines():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_DISABLE_TELEMETRY")}
    env.update(PYTHONPATH=str(ROOT), KERAS_BACKEND="tensorflow")
    code = "import evoprune_tf as ep; spec = ep.HeadSpec(4, 2, (3,)); import keras; print(keras.backend.backend())"
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "tensorflow"
    for noise in ("absl::InitializeLog", "cuInit", "cudart_stub", "cpu_feature_guard", "oneDNN"):
        assert noise not in child.stderr, child.stderr


def test_a_real_tensorflow_error_line_still_shows():
    from evoprune_tf.quiet import _TF_NOISE

    assert not any(noise in "ValueError: something real" for noise in _TF_NOISE)


def _folder(root: Path, per_class: int = 5) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_reading_images_into_a_log_writes_one_line_per_stage_and_no_carriage_returns(tmp_path, capsys):
    load_images(_folder(tmp_path / "data"), image_size=8, progress=True)
    err = capsys.readouterr().err  # not a terminal, as a redirected log
    assert "\r" not in err, repr(err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(" img in " in line for line in lines), lines
    assert sum(int(line.split(": ")[-1].split()[0]) for line in lines) == 10, lines


def test_stage_progress_is_a_bar_on_a_terminal_and_a_line_elsewhere(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(stage_progress(3, "x"), LineProgress)
    assert not isinstance(stage_progress(3, "x", enabled=False), LineProgress)  # disabled: nothing shown
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not isinstance(stage_progress(3, "x"), LineProgress)
    out = io.StringIO()
    with LineProgress(4, "reading test images", stream=out) as bar:
        bar.update(3)
    assert out.getvalue().startswith("reading test images: 3 of 4 img in ")
