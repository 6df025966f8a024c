"""``train.backend``: the fastest installed Keras backend per method, chosen at the edge.

`choose_backend` is a pure function of the method, ``train.backend``, ``train.engine``,
the environment, an already imported Keras and what is installed: tested directly. The
real switch (``run()`` from Python before Keras is imported, the command line) runs in
subprocesses with ``KERAS_BACKEND`` unset, since this test session stays on TensorFlow
(tests/conftest.py sets it).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from evoprune_tf.methods.head.build import run_tags
from evoprune_tf.experiment.backend import choose_backend
from evoprune_tf.experiment.config import ConfigError, load_config
from evoprune_tf.train import TrainConfig

TESTS = pathlib.Path(__file__).resolve().parents[1]
EVERYTHING = {"tensorflow", "jax"}


def _choose(method: str, requested: str = "auto", engine: str = "keras", *, env=None, loaded: str = "",
            installed=EVERYTHING):
    return choose_backend(method, requested, engine, environ=env or {}, loaded=loaded,
                          installed=lambda name: name in installed)


@pytest.mark.parametrize("method", ["steady_state", "nsga2", "nsga3", "ea_simple", "random_search", "unpruned",
                                    "magnitude"])
def test_auto_puts_head_methods_on_tensorflow_when_it_is_installed(method):
    choice = _choose(method)
    assert (choice.backend, choice.decided_by) == ("tensorflow", "config")
    assert "as fast on TensorFlow as on JAX or faster" in choice.reason and "train.backend='jax'" in choice.reason


@pytest.mark.parametrize("method", ["deep_pruning_es", "tascnet"])
def test_auto_puts_filter_methods_on_tensorflow(method):
    choice = _choose(method)
    assert choice.backend == "tensorflow"
    assert method in choice.reason


def test_auto_falls_back_to_what_is_installed_and_numpy_heads_stay_on_tensorflow():
    assert _choose("steady_state", installed={"tensorflow"}).backend == "tensorflow"
    no_tf = _choose("steady_state", installed={"jax"})
    assert no_tf.backend == "jax" and "TensorFlow is not installed" in no_tf.reason
    assert _choose("deep_pruning_es", installed={"jax"}).backend == "jax"
    numpy_heads = _choose("steady_state", engine="numpy")  # Keras only extracts there
    assert numpy_heads.backend == "tensorflow" and "NumPy engine" in numpy_heads.reason


def test_explicit_choice_and_keras_backend_env_wins():
    assert _choose("tascnet", "jax").backend == "jax"
    assert _choose("steady_state", "tensorflow").backend == "tensorflow"
    # The user's KERAS_BACKEND beats train.backend, even one that is not installed.
    choice = _choose("steady_state", "jax", env={"KERAS_BACKEND": "tensorflow"}, installed={"tensorflow"})
    assert (choice.backend, choice.decided_by, choice.wanted) == ("tensorflow", "environment", "jax")
    assert "KERAS_BACKEND=tensorflow" in choice.line and "not applied" in choice.line
    assert _choose("deep_pruning_es", env={"KERAS_BACKEND": "jax"}).backend == "jax"


def test_keras_already_imported_keeps_its_backend_and_says_why():
    choice = _choose("steady_state", loaded="jax")
    assert (choice.backend, choice.wanted, choice.decided_by) == ("jax", "tensorflow", "keras")
    assert "already imported on jax" in choice.line and "KERAS_BACKEND=tensorflow" in choice.line
    assert "\n" not in choice.line


def test_bad_value_and_missing_backend_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"train\.backend='torch'; expected 'auto', 'tensorflow' or 'jax'") as bad:
        load_config(None, {"train": {"backend": "torch"}})
    assert "\n" not in str(bad.value)
    with pytest.raises(ValueError, match="train.backend='pytorch'"):
        TrainConfig(backend="pytorch")
    with pytest.raises(ValueError, match=r"JAX is not installed; expected it installed: pip install "
                                         r"\"evoprune-tf\[jax\]\"") as missing:
        _choose("steady_state", "jax", installed={"tensorflow"})
    assert "\n" not in str(missing.value)
    with pytest.raises(ValueError, match="TensorFlow is not installed"):
        _choose("steady_state", "tensorflow", installed={"jax"})


def test_the_run_tag_names_the_backend_in_use():
    import keras

    config = load_config(None, {"train": {"backend": "jax"}})
    # This session runs on TensorFlow: the tag is what is used, train.backend is only a param.
    assert run_tags(config)["evoprune.keras_backend"] == keras.backend.backend() == "tensorflow"


def _env(tmp_path: pathlib.Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update({"JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore", "KERAS_HOME": str(tmp_path / "keras"),
                "TMPDIR": str(tmp_path),  # conftest (loaded by the script) makes its folder there
                "EVOPRUNE_CACHE_DIR": str(tmp_path / "cache")})
    return env


def _result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][len("RESULT "):])


RUN_SCRIPT = textwrap.dedent(
    """
    import importlib.util, io, json, os, sys
    spec = importlib.util.spec_from_file_location("_planted_conftest", os.path.join(sys.argv[1], "conftest.py"))
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    os.environ.pop("KERAS_BACKEND", None)  # conftest sets it for the test session; this process chooses

    import evoprune_tf.experiment.run as app_run
    from evoprune_tf.methods.deep_pruning_es.method import DeepPruningES
    from evoprune_tf.methods.head.build import run_tags
    from evoprune_tf.experiment.config import load_config

    out = {"keras_before": "keras" in sys.modules}
    common = {"seed": 1, "progress": False, "tracking": {"enabled": False}, "checkpoint": {"enabled": False}}
    if sys.argv[2] == "head":
        data, _ = conftest.make_planted_features(n_features=16, n_train=60, n_val=30, n_test=30)
        config = load_config(None, {**common, "head": {"hidden": [8]},
                                    "train": {"epochs": 1, "group_size": 4, "backend": "jax"},
                                    "algorithm": {"population": 4, "evaluations": 4},
                                    "report": {"export_model": False, "seeds": 1}})
        text = io.StringIO()
        app_run.run(config, features=data, out=text)
        out["first_line"] = text.getvalue().splitlines()[0]
        out["tag"] = run_tags(config)["evoprune.keras_backend"]
    seen = {}

    def fake_filter_run(config, **kwargs):  # DeepPruningES itself is not what is tested here
        import keras
        seen["backend"] = keras.backend.backend()
        print(kwargs["banner"], file=kwargs["out"])  # the real one prints it after its cheap input checks
        return "stub"

    DeepPruningES.check = lambda self, session: None
    DeepPruningES.run = lambda self, session: fake_filter_run(session.config, banner=session.banner, out=io.StringIO())
    text = io.StringIO()
    app_run.run(load_config(None, {**common, "algorithm": {"name": "deep_pruning_es"}}), out=text)
    out["filter_line"] = text.getvalue().splitlines()[0]
    out["filter_backend"] = seen["backend"]
    import keras
    out["keras_backend"] = keras.backend.backend()
    out["env"] = os.environ.get("KERAS_BACKEND")
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow  # a JAX process running a tiny evolution: about 20 s on 2 busy cores
def test_run_from_python_switches_to_jax_for_heads_before_keras_is_imported(tmp_path):
    pytest.importorskip("jax")
    env = _env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(TESTS), "head"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    out = _result(proc)
    assert out["keras_before"] is False
    assert out["first_line"] == "Keras backend: jax (train.backend='jax')"
    assert out["keras_backend"] == out["tag"] == out["env"] == "jax"
    # A later filter run in the same process cannot switch: it stays on JAX and says so.
    assert out["filter_backend"] == "jax"
    assert "already imported on jax" in out["filter_line"] and "KERAS_BACKEND=tensorflow" in out["filter_line"]


def test_run_from_python_chooses_tensorflow_for_filter_methods(tmp_path):
    proc = subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(TESTS), "filter"], capture_output=True,
                          text=True, env=_env(tmp_path), cwd=tmp_path, timeout=300)
    out = _result(proc)
    assert out["filter_line"] == ("Keras backend: tensorflow (auto: deep_pruning_es fine-tunes convolutions, "
                                  "faster on TensorFlow)")
    assert out["filter_backend"] == out["keras_backend"] == out["env"] == "tensorflow"


CLI_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoJax(importlib.abc.MetaPathFinder):  # JAX uninstalled
        def find_spec(self, name, path=None, target=None):
            if name == "jax" or name.startswith("jax."):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoJax())
    from evoprune_tf.app.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_cli_names_the_extra_of_a_missing_backend_and_keras_backend_wins(tmp_path):
    env = _env(tmp_path)
    args = ["run", "--backend", "jax", "--no-tracking", "--dry-run"]
    proc = subprocess.run([sys.executable, "-c", CLI_SCRIPT, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "train.backend='jax' but JAX is not installed" in lines[0] and 'pip install "evoprune-tf[jax]"' in lines[0]
    # KERAS_BACKEND set by the user wins: the same command is valid.
    proc = subprocess.run([sys.executable, "-c", CLI_SCRIPT, *args], capture_output=True, text=True,
                          env={**env, "KERAS_BACKEND": "tensorflow"}, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["train"]["backend"] == "jax"


GRID_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.pop("KERAS_BACKEND", None)
    from evoprune_tf.app.cli import grid_backend
    out = {name: grid_backend(name).line for name in sys.argv[1:]}
    out["env"] = os.environ.get("KERAS_BACKEND")
    out["keras_loaded"] = "keras" in sys.modules
    print("RESULT " + json.dumps(out))
    """
)


def test_a_grid_runs_on_its_cells_common_backend_or_tensorflow_when_they_differ(tmp_path):
    pytest.importorskip("jax")
    (tmp_path / "seeds.toml").write_text('[grid]\nname = "seeds"\n[grid.axes]\nseed = [0, 1]\n'
                                         '"train.backend" = ["jax"]\n')
    (tmp_path / "mixed.toml").write_text('[grid]\nname = "mixed"\n[grid.axes]\n"train.backend" = ["tensorflow", "jax"]\n')
    proc = subprocess.run([sys.executable, "-c", GRID_SCRIPT, "seeds.toml", "mixed.toml"], capture_output=True,
                          text=True, env=_env(tmp_path), cwd=tmp_path, timeout=120)
    out = _result(proc)
    assert out["seeds.toml"] == "Keras backend: jax (train.backend='jax')"
    assert out["mixed.toml"].startswith("Keras backend: tensorflow (the grid's cells want jax and tensorflow")
    assert out["env"] == "tensorflow" and not out["keras_loaded"]  # the last grid's choice, before any import
