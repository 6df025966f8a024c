"""The Keras engine's memory on JAX: compiled programs stay bounded and die with their cache entry.

Pins the mechanisms behind the JAX engine's memory over a search (issue #9, "RSS"):

* host -> device transfers compile nothing (``jnp.asarray`` of a NumPy array compiles a
  staging program per shape that JAX keeps for the life of the process: most of the
  growth measured before);
* the live programs are bounded by ``MAX_CACHED_PROGRAMS`` however many shapes and group
  sizes a search trains, and an evicted entry is garbage-collected with its jitted
  functions and model;
* early stopping's best-state merge runs as a jitted program of the entry and gives the
  same heads as on TensorFlow;
* a lone head, which trains unbatched rather than vmapped over one head, gets the
  fitness it gets in a group.

The JAX checks run in a subprocess with ``KERAS_BACKEND=jax`` (this process' Keras runs on
its own backend), as `tests/test_keras_engine.py` does.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.train import TrainConfig

TESTS = pathlib.Path(__file__).resolve().parent.parent
# One JAX subprocess (Keras import + about a dozen small compilations) serves the module:
# about 25 s on a quiet 2-core machine, 80 s on a loaded one.
pytestmark = pytest.mark.slow

ON_JAX = textwrap.dedent(
    """
    import gc, json, logging, os, re, sys, weakref, importlib.util
    spec = importlib.util.spec_from_file_location("_c", os.path.join(sys.argv[1], "conftest.py"))
    conftest = importlib.util.module_from_spec(spec); spec.loader.exec_module(conftest)
    import numpy as np
    import jax
    from evoprune_tf.encodings import HeadSpec, FeatureSelection
    from evoprune_tf.evaluation import PopulationEvaluator
    from evoprune_tf.train import TrainConfig, keras_engine

    data, _ = conftest.make_planted_features()
    enc = FeatureSelection(HeadSpec(64, 3, (16,)))
    out = {}

    # 1. After a warm-up, a new group size compiles its training program and nothing else.
    class Names(logging.Handler):
        def __init__(self):
            super().__init__(); self.names = []
        def emit(self, record):
            found = re.match(r"Compiling (\\S+)", record.getMessage())
            if found:
                self.names.append(found.group(1))
    names = Names()
    logging.getLogger("jax").addHandler(names)
    cfg = TrainConfig(epochs=2, bucket=8, group_size=8)

    def same_width(k, n_on, seed):  # k genomes with n_on active features: one compact shape
        r = np.random.default_rng(seed)
        return [np.isin(np.arange(64), r.choice(64, n_on, replace=False)).astype(np.int8) for _ in range(k)]

    PopulationEvaluator(enc, data, cfg, seed=1).evaluate_population(same_width(1, 36, 0))
    ev = PopulationEvaluator(enc, data, cfg, seed=1)  # built (Keras initializers) before logging starts
    before = keras_engine.compiled_program_count()
    jax.config.update("jax_log_compiles", True)
    ev.evaluate_population(same_width(4, 36, 1))  # the same width as a group of 4
    jax.config.update("jax_log_compiles", False)
    out["compiled_names"] = names.names
    out["new_programs"] = keras_engine.compiled_program_count() - before

    # 2. Many shapes and group sizes under a small cap: bounded, evicted entries collected.
    keras_engine._SHARED.clear()
    keras_engine.MAX_CACHED_PROGRAMS = 3
    first = None
    counts = []
    ev = PopulationEvaluator(enc, data, TrainConfig(epochs=1, bucket=8, group_size=4), seed=1)
    for step, n_on in enumerate(range(4, 36, 8)):  # 4 padded widths, alternately groups of 1 and 2
        ev.evaluate_population(same_width(1 + step % 2, n_on, 10 + step))
        if first is None:
            entry = next(iter(keras_engine._SHARED.values()))
            first = (weakref.ref(entry), weakref.ref(entry.model),
                     [weakref.ref(f) for fns in entry.functions.values() for f in fns.values()])
            del entry
        counts.append(keras_engine.compiled_program_count())
    gc.collect()
    out["counts"] = counts
    out["shapes_left"] = len(keras_engine._SHARED)
    out["first_entry_alive"] = first[0]() is not None
    out["first_model_alive"] = first[1]() is not None
    out["first_functions_alive"] = sum(r() is not None for r in first[2])

    # 3. val_loss early stopping (the jitted merge) on JAX, for the parent to compare.
    keras_engine.MAX_CACHED_PROGRAMS = 128
    genomes = [np.array(g) for g in json.loads(sys.argv[2])]
    es = TrainConfig(epochs=4, bucket=8, group_size=4, learning_rate=0.05, early_stopping="val_loss", patience=1)
    out["early_stopping_fitness"] = PopulationEvaluator(enc, data, es, seed=2).evaluate_population(genomes)

    # 4. A lone head runs unbatched (not vmapped over one head): alone == in a group of 4.
    four = same_width(4, 28, 20)
    es1 = TrainConfig(epochs=4, bucket=8, group_size=1, learning_rate=0.05, early_stopping="val_loss", patience=1)
    es4 = TrainConfig(epochs=4, bucket=8, group_size=4, learning_rate=0.05, early_stopping="val_loss", patience=1)
    out["alone"] = [PopulationEvaluator(enc, data, es1, seed=2).evaluate_population([g])[0] for g in four]
    out["grouped"] = PopulationEvaluator(enc, data, es4, seed=2).evaluate_population(four)
    out["default_group_size"] = keras_engine.KerasTrainer(enc.spec, data, TrainConfig(epochs=1), seed=0).group_size
    print("RESULT " + json.dumps(out))
    """
)


def _genomes(n: int, length: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random(length) < d).astype(np.int8) for d in rng.uniform(0.3, 0.9, n)]


@pytest.fixture(scope="module")
def on_jax(tmp_path_factory):
    """What the JAX subprocess measured (skips when JAX is not installed)."""
    pytest.importorskip("jax")
    genomes = _genomes(3, 64, seed=5)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore",
           "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(tmp_path_factory.mktemp("keras"))}
    proc = subprocess.run([sys.executable, "-c", ON_JAX, str(TESTS), json.dumps([g.tolist() for g in genomes])],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return genomes, json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])


def test_a_new_group_size_compiles_only_its_training_program(on_jax):
    _, out = on_jax
    # no staging / conversion programs for the host -> device transfers (JAX would keep those)
    assert out["compiled_names"] == ["jit(train)"], out["compiled_names"]
    assert out["new_programs"] == 1


def test_live_programs_stay_bounded_and_evicted_entries_are_collected(on_jax):
    _, out = on_jax
    assert max(out["counts"]) <= 3 and out["counts"][-1] >= 1, out["counts"]
    assert out["shapes_left"] < 4  # of the 4 shapes trained, some were evicted
    assert not out["first_entry_alive"] and not out["first_model_alive"]
    assert out["first_functions_alive"] == 0


def test_early_stopping_on_jax_matches_tensorflow(on_jax, planted):
    genomes, out = on_jax
    data, _ = planted
    enc = FeatureSelection(HeadSpec(64, 3, (16,)))
    es = TrainConfig(epochs=4, bucket=8, group_size=4, learning_rate=0.05, early_stopping="val_loss", patience=1)
    here = PopulationEvaluator(enc, data, es, seed=2).evaluate_population(genomes)
    np.testing.assert_allclose(out["early_stopping_fitness"], here, atol=1e-5)


def test_a_lone_head_on_jax_gets_the_fitness_it_gets_in_a_group(on_jax):
    _, out = on_jax
    np.testing.assert_allclose(out["alone"], out["grouped"], atol=1e-5)
    assert len({tuple(f) for f in out["grouped"]}) == 4  # four different heads, not one repeated
    assert out["default_group_size"] == 1  # on CPU: no faster in groups, and every group size is a program
