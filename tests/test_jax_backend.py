"""The whole evolution path on Keras' JAX backend with TensorFlow absent (a GPU machine's set-up).

A subprocess sets ``KERAS_BACKEND=jax`` and installs an import hook that makes every
``import tensorflow...`` fail (and records where it came from), then runs short
evolutions end to end on planted features: once with the JAX training engine and no
export, once with the default NumPy engine and the compact Keras model export (built
by Keras on JAX).
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

TESTS = pathlib.Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, io, json, os, sys, traceback

    attempts = []

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                stack = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-1]]
                attempts.append({"module": name, "stack": stack})
                raise ImportError(f"No module named {name!r} (TensorFlow is absent in this test)")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    import importlib.util  # conftest by path: tests/ on sys.path would shadow the `operators` package
    spec = importlib.util.spec_from_file_location("_planted_conftest", os.path.join(sys.argv[1], "conftest.py"))
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    make_planted_features = conftest.make_planted_features

    from evoprune_tf.app.config import load_config
    from evoprune_tf.app.run import run

    data, informative = make_planted_features(n_features=32, n_train=200, n_val=100, n_test=100)
    out = {}
    for label, engine, export in (("jax_engine", "keras", False), ("export", "numpy", True)):
        config = load_config(None, {
            "seed": 1, "progress": False,
            "head": {"hidden": [16]},
            "train": {"epochs": 2, "engine": engine, "bucket": 32, "group_size": 16},
            "algorithm": {"name": "steady_state", "population": 8, "evaluations": 16},
            "tracking": {"enabled": False}, "checkpoint": {"enabled": False},
            "report": {"export_model": export, "seeds": 1},
        })
        result = run(config, features=data, out=io.StringIO())
        out[label] = {
            "best_length": len(result.best),
            "trained": result.evaluator.n_trained,
            "fitness": list(result.halloffame[0].fitness.values),
            "report_keys": sorted(result.report),
            "compact_max_abs_diff": result.report.get("compact_max_abs_diff"),
            "parameters": result.report["parameters"],
        }
    import keras
    out["keras_backend"] = keras.backend.backend()
    out["tensorflow_loaded"] = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
    out["attempts"] = attempts
    print("RESULT " + json.dumps(out))
    """
)


def test_evolution_runs_on_keras_jax_without_tensorflow(tmp_path):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "KERAS_HOME": str(tmp_path / "keras"),
        "EVOPRUNE_CACHE_DIR": str(tmp_path / "cache"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(TESTS)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["keras_backend"] == "jax"
    assert out["tensorflow_loaded"] == []
    # every attempt to import TensorFlow, with the frame that made it: none expected
    # (Keras' own optional probe, `module_utils.tensorflow.available` in `set_random_seed`, may try
    # and fail: that is Keras asking whether TensorFlow exists, not our code needing it.)
    where = [a["module"] + " <- " + " <- ".join([f for f in a["stack"] if "<frozen" not in f][::-1][:4])
             for a in out["attempts"] if not any("keras/src/utils/module_utils.py" in f for f in a["stack"])]
    assert where == [], "TensorFlow import attempted:\n" + "\n".join(where)
    for label in ("jax_engine", "export"):
        run = out[label]
        assert run["best_length"] == 32
        assert run["trained"] >= 8
        assert 0.0 <= run["fitness"][0] <= 1.0
    # same seed and search: the JAX engine finds what the NumPy engine finds, with the same fitness
    assert out["jax_engine"]["fitness"][:2] == out["export"]["fitness"][:2]
    assert abs(out["jax_engine"]["fitness"][2] - out["export"]["fitness"][2]) < 1e-5
    assert out["jax_engine"]["compact_max_abs_diff"] is None  # no export asked
    export = out["export"]
    assert export["compact_max_abs_diff"] < 1e-4  # the Keras-on-JAX compact model reproduces the head
    assert export["parameters"]["compact_model"] <= export["parameters"]["full_model"]
