"""Feature extraction in a TensorFlow child process (`evoprune_tf.features.child`).

A process whose Keras runs on JAX extracts a cache miss in ``python -m
evoprune_tf.features.child`` on TensorFlow: the child writes the same cache entry as
in-process extraction, and the features equal in-process ones (the same backend:
exactly; JAX in-process: to float32 rounding). Without TensorFlow the JAX process
extracts in-process. A tiny MobileNetV2 (alpha 0.35, 32 px) with random weights saved
to a file, so that every process and backend loads the very same weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from evoprune_tf.data import ImageSplits
from evoprune_tf.features.extract import extract_features_with_info

SIZE = 32
OPTIONS = {"alpha": 0.35}


def _images(seed: int = 0) -> ImageSplits:
    rng = np.random.default_rng(seed)

    def pixels(n: int) -> np.ndarray:
        return rng.integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)

    train = pixels(6)
    # A duplicate across splits: the cache table holds it once, both splits get its row.
    return ImageSplits(train, np.array([0, 1, 0, 1, 0, 1]), np.concatenate([pixels(2), train[:1]]),
                       np.array([0, 1, 0]), pixels(3), np.array([1, 0, 1]), ("a", "b"), name="tiny")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> pathlib.Path:
    """A tiny MobileNetV2's random weights (BatchNorm statistics included), saved once."""
    import keras

    model = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                           pooling="avg", **OPTIONS)
    rng = np.random.default_rng(1)
    # Keras' own init gives near-zero pooled features here; these weights give features
    # of order one, so that an equality check means something.
    values = [np.abs(rng.normal(1.0, 0.1, w.shape)) if "variance" in w.path else rng.normal(0.0, 0.15, w.shape)
              for w in model.weights]
    model.set_weights([v.astype(np.float32) for v in values])
    path = tmp_path_factory.mktemp("weights") / "tiny_mobilenet_v2.weights.h5"
    model.save_weights(path)
    return path


def _extract(images: ImageSplits, weights: pathlib.Path, cache: pathlib.Path, child: bool | None):
    return extract_features_with_info(images, backbone="mobilenet_v2", weights=str(weights), image_size=SIZE,
                                      cache_dir=cache, batch_size=4, backbone_kwargs=OPTIONS, progress=False,
                                      tensorflow_child=child)


JAX_TEST = "test_jax_process_extracts_on_a_tensorflow_child_and_in_process_without_tensorflow"


@pytest.fixture(scope="module")
def child_extraction(request, tmp_path_factory, weights_file):
    """One TensorFlow child's extraction of `_images()` (the weights file) into ``FOLDER/child``.

    Each child imports TensorFlow (~10 CPU-s), so one child serves two tests: where the
    JAX test runs, its JAX process starts the child (the automatic choice) and the
    features the child path returned are saved in ``FOLDER/child_features.npz``; else this
    process starts it (``tensorflow_child=True``).

    Returns:
        (FOLDER, the child extraction's info as a dict, the JAX process's results or None).
    """
    folder = tmp_path_factory.mktemp("child_extraction")
    if JAX_TEST in {item.name for item in request.session.items} and importlib.util.find_spec("jax"):
        # (conftest's XLA_FLAGS: compiling the MobileNetV2 takes ~8 CPU-s instead of ~19; the
        # features are the same to float32 rounding, what is checked)
        env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(
            [sys.executable, "-c", JAX_SCRIPT, str(pathlib.Path(__file__).parent), str(weights_file), str(folder)],
            capture_output=True, text=True, env=env, cwd=folder, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][len("RESULT "):])
        return folder, out["auto"], out
    there, info = _extract(_images(), weights_file, folder / "child", child=True)
    _save_splits(there, folder / "child_features.npz")
    return folder, _info_record(info), None


def _save_splits(features, path) -> None:
    np.savez(path, x_train=features.x_train, x_val=features.x_val, x_test=features.x_test, y_val=features.y_val)


def _info_record(info) -> dict:
    return {"child": info.child, "backend": info.backend, "hit": info.hit, "file": info.path.name}


def test_tensorflow_child_writes_the_in_process_cache_entry(tmp_path, weights_file, child_extraction):
    folder, there_info, _ = child_extraction
    images = _images()
    here, here_info = _extract(images, weights_file, tmp_path / "in_process", child=False)
    assert (here_info.child, here_info.backend) == (False, "tensorflow")
    assert (there_info["child"], there_info["backend"], there_info["hit"]) == (True, "tensorflow", False)
    assert there_info["file"] == here_info.path.name  # same key, same file name
    with np.load(folder / "child_features.npz") as saved:
        there = {name: saved[name] for name in saved.files}  # what the child path returned
    assert float(np.std(here.x_train)) > 1e-3  # the check below compares real numbers
    for split in ("x_train", "x_val", "x_test"):
        np.testing.assert_allclose(there[split], getattr(here, split), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(there["y_val"], images.val_labels)
    np.testing.assert_array_equal(there["x_val"][2], there["x_train"][0])  # the duplicate got its row
    # The child's file is a valid cache entry: read as a hit, without extracting again.
    again, again_info = _extract(images, weights_file, folder / "child", child=False)
    assert again_info.hit and again_info.backend == ""
    np.testing.assert_array_equal(again.x_test, there["x_test"])


def test_child_input_errors_are_raised_with_their_own_one_line_message(tmp_path, weights_file):
    # The alpha-0.35 weights asked for as another width: they do not fit alpha 0.5.
    with pytest.raises(ValueError, match=r"does not fit backbone MobileNetV2\(alpha=0.5\)") as caught:
        extract_features_with_info(_images(), backbone="mobilenet_v2", weights=str(weights_file), image_size=SIZE,
                                   cache_dir=tmp_path / "cache", batch_size=4, backbone_kwargs={"alpha": 0.5},
                                   progress=False, tensorflow_child=True)
    assert "\n" not in str(caught.value)
    assert not list((tmp_path / "cache").glob("*.npz"))  # nothing half-written is left to trust


@pytest.mark.slow  # a TensorFlow child process: about 15 s, 35 s on 2 busy cores
def test_a_random_init_backbone_draws_the_same_weights_in_the_child(tmp_path):
    import random

    import keras  # imported before the draw, as in a run: the child then sets the state after its own import

    assert keras.backend.backend() == "tensorflow"  # the comparison is TensorFlow in-process vs the child

    def draw(child: bool, folder: str):
        random.seed(5)
        np.random.seed(5)
        return extract_features_with_info(_images(), backbone="mobilenet_v2", weights=None, image_size=SIZE,
                                          cache_dir=tmp_path / folder, batch_size=4, backbone_kwargs=OPTIONS,
                                          progress=False, tensorflow_child=child)[0]

    here, there = draw(False, "in_process"), draw(True, "child")
    # Keras' default initialisers draw their seeds from Python's `random`: other seeds,
    # other weights, other (tiny but nonzero) features.
    assert np.abs(here.x_train).max() > 0
    np.testing.assert_array_equal(there.x_train, here.x_train)
    np.testing.assert_array_equal(there.x_test, here.x_test)


def test_a_crashed_child_is_a_warning_and_the_features_are_extracted_in_process(tmp_path, weights_file, monkeypatch):
    import shutil

    import evoprune_tf.features.extract as extract
    from evoprune_tf.features.child import ChildExtractionError

    monkeypatch.setattr(extract, "_use_child", lambda flag: True)  # as in a JAX process
    monkeypatch.setattr(sys, "executable", shutil.which("false") or "/bin/false")  # a child that dies at once
    with pytest.raises(ChildExtractionError, match="exited with status 1"):  # asked for: no fallback
        _extract(_images(), weights_file, tmp_path / "required", child=True)
    with pytest.warns(RuntimeWarning, match="exited with status 1.*extracting the features in this process"):
        features, info = _extract(_images(), weights_file, tmp_path / "auto", child=None)
    assert (info.child, info.backend, info.hit) == (False, "tensorflow", False)
    assert features.x_train.shape == (6, 1280) and info.path.is_file()


JAX_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, os, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_extract_subprocess import _extract, _images, _info_record, _save_splits
    from evoprune_tf.features.child import process_backend

    weights, tmp = sys.argv[2], sys.argv[3]
    images = _images()
    out = {"process_backend": process_backend()}
    child, info = _extract(images, weights, os.path.join(tmp, "child"), child=None)  # the default: auto
    out["auto"] = _info_record(info)
    _save_splits(child, os.path.join(tmp, "child_features.npz"))  # test_tensorflow_child_writes_...'s

    class NoTensorFlow(importlib.abc.MetaPathFinder):  # TensorFlow uninstalled, from here on
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    here, info = _extract(images, weights, os.path.join(tmp, "in_process"), child=None)
    out["without_tf"] = {"child": info.child, "backend": info.backend}
    import keras
    out["keras_backend"] = keras.backend.backend()
    out["tensorflow_loaded"] = "tensorflow" in sys.modules
    scale = max(float(np.abs(here.x_train).max()), 1e-12)
    out["max_abs_diff"] = max(float(np.abs(getattr(child, s) - getattr(here, s)).max())
                              for s in ("x_train", "x_val", "x_test"))
    out["scale"] = scale
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow  # a JAX process, a TensorFlow child and a JAX extraction: about 30 s on 2 busy cores
def test_jax_process_extracts_on_a_tensorflow_child_and_in_process_without_tensorflow(child_extraction):
    pytest.importorskip("jax")
    out = child_extraction[2]  # the JAX process (JAX_SCRIPT) the fixture ran
    assert out["process_backend"] == "jax"
    assert (out["auto"]["child"], out["auto"]["backend"]) == (True, "tensorflow")
    assert out["without_tf"] == {"child": False, "backend": "jax"}
    assert out["keras_backend"] == "jax" and not out["tensorflow_loaded"]
    assert out["scale"] > 1e-3
    assert out["max_abs_diff"] <= 1e-5 * max(1.0, out["scale"]), out  # float32 rounding, not other weights
