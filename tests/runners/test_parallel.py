"""ProcessPoolMap: spawned workers, one evaluator per worker, the parent's cache, serial results."""

from __future__ import annotations

import functools
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_planted_features

from evoprune_tf.search.checkpoint import load_checkpoint
from evoprune_tf.app.config import config_from_dict
from evoprune_tf.methods.inputs import operator_specs
from evoprune_tf.encodings import HeadSpec, make_encoding
from evoprune_tf.encodings import genome_key
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.resampling import ResampledEvaluator
from evoprune_tf.runners.processes import EvaluatorRecipe, ProcessPoolMap
from evoprune_tf.app.run import run
from evoprune_tf.search.toolbox import build_toolbox
from evoprune_tf.train.numpy_engine import TrainConfig


def _evaluator(data, engine: str | None = None, **kwargs) -> PopulationEvaluator:
    encoding = make_encoding("feature_selection", HeadSpec(data.n_features, data.n_classes, (16,)))
    config = TrainConfig(epochs=3) if engine is None else TrainConfig(epochs=3, engine=engine)
    return PopulationEvaluator(encoding, data, config, seed=5, **kwargs)


def _genomes(n: int, length: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 2, length).astype(np.int8) for _ in range(n)]


def test_pool_map_equals_serial_evaluation_and_fills_the_parents_cache() -> None:
    data, _ = make_planted_features()
    genomes = _genomes(9)
    genomes.append(genomes[3].copy())  # a repeat inside the batch
    serial = _evaluator(data).evaluate_population(genomes)

    evaluator = _evaluator(data)
    known = evaluator.evaluate(genomes[0])  # already cached in the parent: never sent
    # One worker: a Keras-engine worker imports TensorFlow (~10 CPU-s); batches cut over
    # two workers are the NumPy-engine tests' below.
    with ProcessPoolMap(evaluator, workers=1) as pool:
        evaluate = functools.partial(evaluator.evaluate)  # what Toolbox.register makes of it
        assert pool.map(evaluate, genomes) == serial
        assert known == serial[0]
        assert evaluator.n_trained == 9 and evaluator.n_cache_hits == 2  # genomes[0] and the repeat
        assert set(evaluator.cache) == {genome_key(g.astype(bool)) for g in genomes}
        tasks = sum(r["tasks"] for r in pool.worker_reports.values())
        assert sum(r["genomes"] for r in pool.worker_reports.values()) == 8

        # Everything is cached now: nothing goes to the workers, order is the input's.
        again = pool.map(evaluate, genomes[::-1])
        assert again == serial[::-1]
        assert sum(r["tasks"] for r in pool.worker_reports.values()) == tasks
        assert evaluator.n_trained == 9

        # More work in several calls: each worker built its evaluator once.
        for seed in (1, 2):
            fresh = _genomes(6, seed=seed)
            assert pool.map(evaluator.evaluate, fresh) == _evaluator(data).evaluate_population(fresh)
        reports = pool.worker_reports
        assert len(reports) == 1 and sum(r["tasks"] for r in reports.values()) > len(reports)
        for report in reports.values():
            assert report["builds"] == 1
            assert report["keras"] is True  # the workers train with the Keras engine

        # Anything but the evaluator's evaluate is mapped serially, in this process.
        assert pool.map(len, [[1], [1, 2], []]) == [1, 2, 0]
        assert pool.map(lambda g: int(np.sum(g)), genomes[:2]) == [int(genomes[0].sum()), int(genomes[1].sum())]
    pool.close()  # a second close does nothing
    with pytest.raises(RuntimeError, match="closed"):
        pool.map(evaluator.evaluate, _genomes(1, seed=9))
    with pytest.raises(ValueError, match="workers=0"):
        ProcessPoolMap(evaluator, workers=0)


def test_ood_objective_and_its_features_reach_the_workers() -> None:
    data, _ = make_planted_features()
    ood = np.random.default_rng(1).normal(0, 3, (40, data.n_features)).astype(np.float32)
    # The NumPy engine keeps the workers free of TensorFlow: what is tested is the recipe
    # (the Keras engine's workers are the test above's).
    options = dict(objectives=("accuracy", "robustness", "active_fraction"), ood_features=ood, temperature=10.0,
                   engine="numpy")
    genomes = _genomes(4, seed=3)
    serial = _evaluator(data, **options).evaluate_population(genomes)
    evaluator = _evaluator(data, **options)
    with ProcessPoolMap(evaluator, workers=2) as pool:
        assert pool.map(evaluator.evaluate, genomes) == serial
        assert all(not r["keras"] for r in pool.worker_reports.values())
    assert all(len(values) == 3 and 0.0 <= values[1] <= 1.0 for values in serial)
    rebuilt = EvaluatorRecipe.from_evaluator(evaluator).build()
    assert rebuilt.objectives == evaluator.objectives and rebuilt.temperature == 10.0
    assert np.array_equal(rebuilt.ood_features, ood) and not rebuilt.cache


def _resampled(data, method: str) -> ResampledEvaluator:
    encoding = make_encoding("feature_selection", HeadSpec(data.n_features, data.n_classes, (8,)))
    # The NumPy engine keeps the workers free of TensorFlow: what is tested is the recipe.
    return ResampledEvaluator(encoding, data, TrainConfig(epochs=2, engine="numpy"), seed=5, method=method,
                              folds=3, repeats=2, val_fraction=0.3, partition_seed=9, loss_resolution=1e-3)


@pytest.mark.parametrize("method", ["cv", "repeated"])
def test_the_recipe_rebuilds_the_resampled_evaluator_with_its_partitions(method) -> None:
    data, _ = make_planted_features(n_train=120, n_val=60, n_test=30)
    original = _resampled(data, method)
    rebuilt = EvaluatorRecipe.from_evaluator(original).build()
    assert type(rebuilt) is ResampledEvaluator and rebuilt.options() == original.options()
    assert rebuilt.options()["partition_seed"] == 9 and rebuilt.options()["method"] == method
    assert [(tr.tolist(), va.tolist()) for tr, va in rebuilt.parts] == \
        [(tr.tolist(), va.tolist()) for tr, va in original.parts]
    assert not rebuilt.cache and len(rebuilt.members) == (3 if method == "cv" else 2)


def test_the_workers_compute_the_resampled_fitness_of_the_parent() -> None:
    data, _ = make_planted_features(n_train=120, n_val=60, n_test=30)
    genomes = _genomes(4, seed=4)
    serial = _resampled(data, "cv").evaluate_population(genomes)
    holdout = PopulationEvaluator(_resampled(data, "cv").encoding, data, TrainConfig(epochs=2, engine="numpy"),
                                  seed=5, loss_resolution=1e-3).evaluate_population(genomes)
    assert not np.allclose(serial, holdout, atol=1e-6)  # resampling changes the fitness: the test can fail

    evaluator = _resampled(data, "cv")
    with ProcessPoolMap(evaluator, workers=2) as pool:
        pooled = pool.map(evaluator.evaluate, genomes)
        assert all(not r["keras"] for r in pool.worker_reports.values())
    np.testing.assert_allclose(pooled, serial, rtol=0, atol=1e-6)
    assert evaluator.n_trained == 4 and len(evaluator.cache) == 4


def test_deap_individuals_pickle_into_a_fresh_process() -> None:
    data, _ = make_planted_features()
    evaluator = _evaluator(data, objectives=("accuracy", "active_fraction"))
    toolbox = build_toolbox(evaluator, operator_specs(config_from_dict(
        {"algorithm": {"name": "nsga2"}, "objectives": {"names": ["accuracy", "active_fraction"]}}).operators))
    individual = toolbox.individual()
    individual.fitness.values = (0.75, 0.25)
    payload = pickle.dumps([individual, toolbox.clone(individual)])
    # A fresh interpreter is what a spawned worker is: classes must come from imports alone.
    code = (
        "import pickle, sys\n"
        "import evoprune_tf.search.toolbox\n"
        "inds = pickle.load(sys.stdin.buffer)\n"
        "print(type(inds[0]).__name__, inds[0].fitness.values, inds[1].fitness.valid, ''.join(map(str, inds[0].tolist())))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    name, *rest = done.stdout.decode().split()
    assert name == type(individual).__name__ == "IndividualMaxMin"
    assert " ".join(rest) == f"(0.75, 0.25) True {''.join(map(str, individual.tolist()))}"
    with pytest.raises(TypeError, match="does not pickle"):
        pickle.dumps(ProcessPoolMap.__new__(ProcessPoolMap))


def _config(workers: int, tmp_path, engine: str | None = None) -> object:
    train = {"epochs": 3} if engine is None else {"epochs": 3, "engine": engine}
    return config_from_dict({
        "seed": 11, "progress": False, "workers": workers, "head": {"hidden": [16]}, "train": train,
        "algorithm": {"name": "steady_state", "population": 8, "evaluations": 48},
        "tracking": {"enabled": False}, "checkpoint": {"dir": str(tmp_path / f"ckpt-{workers}")},
        "report": {"seeds": 1, "export_model": False},
    })


def test_a_two_worker_run_equals_the_serial_run(tmp_path) -> None:
    data, _ = make_planted_features()
    # The NumPy engine keeps the workers free of TensorFlow: what is tested is the run's
    # plumbing (logbook, population, counters, checkpoint); that Keras-engine workers give
    # the serial fitness is test_pool_map_equals_serial_evaluation_and_fills_the_parents_cache's.
    serial = run(_config(0, tmp_path, engine="numpy"), features=data, out=io.StringIO())
    parallel = run(_config(2, tmp_path, engine="numpy"), features=data, out=io.StringIO())
    assert [dict(r) for r in parallel.logbook] == [dict(r) for r in serial.logbook]
    assert [p.tolist() for p in parallel.population] == [p.tolist() for p in serial.population]
    assert [p.fitness.values for p in parallel.population] == [p.fitness.values for p in serial.population]
    assert [h.tolist() for h in parallel.halloffame] == [h.tolist() for h in serial.halloffame]
    assert parallel.report["pruned"] == serial.report["pruned"]
    # The workers' answers live in the parent: counters moved and the checkpoint holds them.
    assert parallel.evaluator.n_trained == serial.evaluator.n_trained > 0
    assert parallel.evaluator.cache == serial.evaluator.cache
    saved = load_checkpoint(parallel.checkpoint)
    assert saved.fitness_cache == serial.evaluator.cache
    assert saved.evaluator_counters["n_trained"] == serial.evaluator.n_trained


def test_an_interrupted_parallel_run_stops_its_workers_and_resumes_exactly(tmp_path) -> None:
    import multiprocessing

    from evoprune_tf.search.callbacks import Callback
    from evoprune_tf.app.run import resume

    class CtrlC(Callback):
        def on_generation(self, state) -> None:
            if state.generation == 2:
                raise KeyboardInterrupt

    data, _ = make_planted_features()
    before = set(multiprocessing.active_children())
    # The NumPy engine: two pools start here, and what is tested is the interrupt and the
    # resume; that the Keras engine's workers match serial evaluation is the first test's.
    with pytest.raises(KeyboardInterrupt):
        run(_config(2, tmp_path, engine="numpy"), features=data, out=io.StringIO(), callbacks=[CtrlC()])
    assert set(multiprocessing.active_children()) <= before  # the pool was shut down
    path = next((tmp_path / "ckpt-2").glob("*/checkpoint.npz"))
    resumed = resume(path, features=data, out=io.StringIO())  # with 2 workers again, from the checkpoint's config
    serial = run(_config(0, tmp_path, engine="numpy"), features=data, out=io.StringIO())
    assert len(resumed.logbook) > 3  # generations after the resume point (2) were run by the resumed pool
    assert [dict(r) for r in resumed.logbook] == [dict(r) for r in serial.logbook]
    assert [p.tolist() for p in resumed.population] == [p.tolist() for p in serial.population]


ORPHAN = """
import os, signal, sys
import numpy as np
from evoprune_tf.encodings import HeadSpec, make_encoding
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.runners.processes import ProcessPoolMap
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.train.numpy_engine import TrainConfig

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 8)).astype(np.float32), np.arange(20) % 2
    data = FeatureSplits(x, y, x, y, x, y, class_names=("a", "b"))
    # The NumPy engine: the workers start without TensorFlow; what is tested is their exit.
    evaluator = PopulationEvaluator(make_encoding("feature_selection", HeadSpec(8, 2, (4,))), data,
                                    TrainConfig(epochs=1, engine="numpy"), seed=0)
    pool = ProcessPoolMap(evaluator, workers=2)
    pool.map(evaluator.evaluate, [rng.integers(0, 2, 8) for _ in range(4)])
    print(" ".join(str(p.pid) for p in pool._executor._processes.values()), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed(tmp_path) -> None:
    import time

    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    # Not subprocess.run: surviving workers would hold the output pipes open.
    job = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    pids = [int(p) for p in job.stdout.readline().split()]
    assert job.wait(timeout=120) == -9
    job.stdout.close()
    assert len(pids) == 2
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "orphaned workers survived their killed parent"
