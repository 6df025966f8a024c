"""One seed drives everything: same config and seed, same run, in any process; fitness is per genome."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
from conftest import make_planted_features

from evoprune_tf.app.config import config_from_dict
from evoprune_tf.encodings import HeadSpec, make_encoding
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.runners.processes import ProcessPoolMap
from evoprune_tf.app.run import run
from evoprune_tf.train.numpy_engine import TrainConfig

# A run in a fresh interpreter: features from an .npz, config from JSON, result to a pickle.
JOB = textwrap.dedent('''
    import json, pickle, sys
    import numpy as np
    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.app.run import run
    from evoprune_tf.features.splits import FeatureSplits

    spec = json.load(open(sys.argv[1]))
    with np.load(spec["features"]) as z:
        data = FeatureSplits(z["x_train"], z["y_train"], z["x_val"], z["y_val"], z["x_test"], z["y_test"],
                             class_names=tuple(str(c) for c in z["class_names"]), name="planted")
    result = run(config_from_dict(spec["config"]), features=data, out=sys.stderr)
    with open(spec["out"], "wb") as f:
        pickle.dump({
            "logbook": [dict(r) for r in result.logbook],
            "population": [p.tolist() for p in result.population],
            "fitness": [p.fitness.values for p in result.population],
            "halloffame": [h.tolist() for h in result.halloffame],
            "best": result.best.tolist(),
        }, f)
''')


def _save_features(data, path) -> str:
    np.savez(path, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
             x_test=data.x_test, y_test=data.y_test, class_names=np.asarray(data.class_names))
    return str(path)


def _config_dict(tmp_path, seed: int = 7, **algorithm) -> dict:
    return {
        "seed": seed, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 3},
        "algorithm": {"name": "steady_state", "population": 8, "evaluations": 48, **algorithm},
        "tracking": {"enabled": False}, "checkpoint": {"dir": str(tmp_path / "ckpt")},
        "report": {"seeds": 1, "export_model": False},
    }


def _summary(result) -> dict:
    return {
        "logbook": [dict(r) for r in result.logbook],
        "population": [p.tolist() for p in result.population],
        "fitness": [p.fitness.values for p in result.population],
        "halloffame": [h.tolist() for h in result.halloffame],
        "best": result.best.tolist(),
    }


def test_same_config_and_seed_give_the_same_run_in_two_processes(tmp_path) -> None:
    data, _ = make_planted_features()
    features = _save_features(data, tmp_path / "features.npz")
    (tmp_path / "job.py").write_text(JOB)
    config = _config_dict(tmp_path)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"features": features, "config": config, "out": str(tmp_path / "out.pkl")}))
    # One fresh interpreter whose str hashing differs from this process's: a fixed hash seed
    # other than this process's own (a random one here, unless PYTHONHASHSEED is set).
    mine = os.environ.get("PYTHONHASHSEED", "random")
    env = {**os.environ, "PYTHONHASHSEED": "2" if mine == "1" else "1"}
    job = subprocess.run([sys.executable, str(tmp_path / "job.py"), str(spec)], cwd=tmp_path, env=env,
                         capture_output=True, timeout=180)
    assert job.returncode == 0, job.stderr.decode()[-3000:]
    there = pickle.loads((tmp_path / "out.pkl").read_bytes())
    assert len(there["logbook"]) == 6 and there["logbook"][-1]["evaluations"] == 48
    # ... and the same as in this (long-lived, already used) process.
    here = _summary(run(config_from_dict(config), features=data, out=io.StringIO()))
    assert here == there
    other = _summary(run(config_from_dict(_config_dict(tmp_path, seed=8)), features=data, out=io.StringIO()))
    assert other["logbook"] != there["logbook"]  # the seed matters


def test_fitness_of_a_genome_does_not_depend_on_batch_order_or_process() -> None:
    data, _ = make_planted_features(seed=2)
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    encoding = make_encoding("feature_selection", spec)

    def evaluator(**train) -> PopulationEvaluator:
        return PopulationEvaluator(encoding, data, TrainConfig(epochs=4, **train), seed=3)

    rng = np.random.default_rng(4)
    genomes = [rng.integers(0, 2, 64).astype(np.int8) for _ in range(6)]
    for count in (20, 20, 20):  # same active count: these share a stacked training group
        genome = np.zeros(64, np.int8)
        genome[rng.choice(64, count, replace=False)] = 1
        genomes.append(genome)
    alone = [evaluator().evaluate(g) for g in genomes]
    in_population = evaluator().evaluate_population(genomes)
    reversed_order = evaluator().evaluate_population(genomes[::-1])[::-1]
    grouped = evaluator(group_size=8).evaluate_population(genomes)
    small_chunks = PopulationEvaluator(encoding, data, TrainConfig(epochs=4), seed=3, chunk_size=2)
    chunked = small_chunks.evaluate_population(genomes)
    parent = evaluator()
    # Another process: one worker (each worker imports TensorFlow); batch composition and
    # order are what the in-process variants above vary.
    with ProcessPoolMap(parent, workers=1) as pool:
        in_workers = pool.map(parent.evaluate, genomes)
    assert alone == in_population == reversed_order == grouped == chunked == in_workers
    assert len(set(alone)) > 1
    # The run seed, not the batch, changes a genome's fitness.
    assert PopulationEvaluator(encoding, data, TrainConfig(epochs=4), seed=4).evaluate_population(genomes) != alone


def test_fitness_does_not_depend_on_the_processes_blas_threads() -> None:
    # A worker process runs BLAS on cores // workers threads; OpenBLAS splits a product
    # differently on 1 and 2 threads, which changed the last bits of the loss on AMD EPYC.
    from threadpoolctl import threadpool_limits

    data, _ = make_planted_features(seed=2)
    encoding = make_encoding("feature_selection", HeadSpec(data.n_features, data.n_classes, (16,)))
    genomes = [np.random.default_rng(4).integers(0, 2, 64).astype(np.int8) for _ in range(3)]
    fitness = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            fitness[threads] = PopulationEvaluator(encoding, data, TrainConfig(epochs=4), seed=3).evaluate_population(
                genomes)
    assert fitness[1] == fitness[2]
