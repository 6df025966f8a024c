"""The Ray runner and grids on Ray, on one local Ray cluster (num_cpus=2) shared by the module.

Ray's start-up costs ~10-15 s on 2 cores, so the cluster is module-scoped and the whole
module is marked slow. An actor on the Keras engine imports TensorFlow (~8 CPU-s): every
test here trains with the NumPy engine (the runner's bookkeeping, killed actors,
resampling, a run with ``runner = "ray"``, grids); Keras-engine workers are tested with
process pools (tests/runners/test_parallel.py, tests/test_reproducibility.py).
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from conftest import make_planted_features, new_mlflow_store
from helpers_runs import grid_toml
from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.train import TrainConfig

ray = pytest.importorskip("ray", reason='the Ray runner needs the [ray] extra: pip install "evoprune-tf[ray]"')

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster whose session files stay in a temporary folder.

    A short folder of its own, not under ``tmp_path``: Ray's sockets live in it, and an
    AF_UNIX path holds at most 107 bytes (``<folder>/session_<date>_<pid>/sockets/plasma_store``).
    """
    import shutil
    import tempfile

    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # else Ray writes a token into ~/.ray
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    folder = tempfile.mkdtemp(prefix="evoray-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning", _temp_dir=folder)
    yield ray
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:  # pragma: no cover
        os.environ["RAY_AUTH_MODE"] = saved


def _evaluator() -> PopulationEvaluator:
    """A NumPy-engine evaluator: its actors start without TensorFlow."""
    features, _ = make_planted_features()
    encoding = FeatureSelection(HeadSpec(features.n_features, features.n_classes, (8,)))
    return PopulationEvaluator(encoding, features, TrainConfig(epochs=2, engine="numpy"), seed=0)


def _genomes(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 2, 64) for _ in range(n)]


def test_ray_runner_equals_serial_and_keeps_one_cache(ray_cluster) -> None:
    from evoprune_tf.runners import make_runner

    first, second = _genomes(0, 10), _genomes(1, 6)
    serial = _evaluator()
    want_first, want_second = serial.evaluate_population(first), serial.evaluate_population(second)
    evaluator = _evaluator()
    with make_runner("ray", evaluator, workers=2) as runner:
        assert runner.map(evaluator.evaluate, first + first[:3]) == want_first + want_first[:3]
        # The second generation: cached genomes never leave the parent.
        assert runner.map(evaluator.evaluate, second + first[:2]) == want_second + want_first[:2]
        assert runner.map(len, [[0], [0, 1]]) == [1, 2]
        assert runner.stats() == {"runner": "ray", "workers": 2, "restarts": 0, "retried_batches": 0, "num_gpus": 0.0}
        reports = runner.worker_reports
    assert evaluator.n_trained == 16 and evaluator.n_cache_hits == 5
    assert len(reports) == 2  # both actors worked, and each kept its evaluator (one per pid)
    assert sum(r["genomes"] for r in reports.values()) == 16
    assert all(r["batches"] == 2 for r in reports.values())


def test_a_killed_ray_worker_is_survived_without_losing_or_double_counting(ray_cluster) -> None:
    from evoprune_tf.runners.ray_runner import RayMap

    first, second = _genomes(2, 8), _genomes(3, 8)
    serial = _evaluator()
    want_first, want_second = serial.evaluate_population(first), serial.evaluate_population(second)
    evaluator = _evaluator()
    with RayMap(evaluator, workers=2) as runner:
        assert runner.map(evaluator.evaluate, first) == want_first
        victim = runner.actor_pids()[0]
        os.kill(victim, signal.SIGKILL)
        assert runner.map(evaluator.evaluate, second) == want_second
        stats = runner.stats()
        assert stats["restarts"] == 1 and stats["retried_batches"] == 1
        assert victim not in runner.actor_pids() and len(runner.actor_pids()) == 2
    assert evaluator.n_trained == 16  # the lost batch was trained again, but counted once
    assert len(evaluator.cache) == 16


def test_ray_actors_compute_the_resampled_fitness_of_the_parent(ray_cluster) -> None:
    from evoprune_tf.resampling import ResampledEvaluator
    from evoprune_tf.runners.ray_runner import RayMap

    features, _ = make_planted_features(n_train=120, n_val=60, n_test=30)

    def resampled() -> ResampledEvaluator:
        encoding = FeatureSelection(HeadSpec(features.n_features, features.n_classes, (8,)))
        return ResampledEvaluator(encoding, features, TrainConfig(epochs=2, engine="numpy"), seed=0,
                                  method="repeated", repeats=2, val_fraction=0.3, partition_seed=4)

    genomes = _genomes(5, 4)
    want = resampled().evaluate_population(genomes)
    evaluator = resampled()
    with RayMap(evaluator, workers=2) as runner:
        got = runner.map(evaluator.evaluate, genomes)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert evaluator.n_trained == 4


def test_gpus_or_workers_beyond_the_cluster_fail_before_any_actor_starts(ray_cluster) -> None:
    from evoprune_tf.runners.ray_runner import RayMap

    with pytest.raises(ValueError, match=r"num_gpus=1 per worker but the Ray cluster has 0 GPU\(s\)"):
        RayMap(_evaluator(), workers=1, num_gpus=1)
    with pytest.raises(ValueError, match=r"workers=3 x num_cpus=1 needs 3 CPUs but the Ray cluster has 2"):
        RayMap(_evaluator(), workers=3)
    assert ray_cluster.is_initialized()  # a cluster the runner did not start stays up


def test_a_run_with_runner_ray_ends_exactly_like_the_serial_run(ray_cluster) -> None:
    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.app.run import run

    features, _ = make_planted_features()
    base = {"progress": False, "head": {"hidden": [8]}, "train": {"epochs": 2, "engine": "numpy"},
            "tracking": {"enabled": False},
            "checkpoint": {"enabled": False}, "report": {"seeds": 1, "export_model": False},
            "algorithm": {"name": "ea_simple", "population": 6, "generations": 2}}
    serial = run(config_from_dict(base), features=features)
    # The NumPy engine: its actors start without TensorFlow (~10 CPU-s each); what is tested is
    # run()'s plumbing of the Ray runner. That Keras-engine workers give the serial fitness
    # is tests/runners/test_parallel.py's (a process pool) and tests/test_reproducibility.py's.
    on_ray = run(config_from_dict({**base, "runner": "ray", "workers": 2}), features=features)
    assert [list(map(int, g)) for g in on_ray.population] == [list(map(int, g)) for g in serial.population]
    assert [r["best"] for r in on_ray.logbook] == [r["best"] for r in serial.logbook]
    assert on_ray.evaluator.n_trained == serial.evaluator.n_trained


# grid_toml's cells train on the NumPy engine: their Ray workers start without TensorFlow
# (what is tested is the logging).
GRID = grid_toml("ray-grid", generations=2, experiment="ray-grid", grid='runner = "ray"\nworkers = 2')


def test_a_2x2_grid_on_ray_logs_four_complete_runs_to_one_server(ray_cluster, tmp_path) -> None:
    from mlflow import MlflowClient

    from evoprune_tf.app.server import MLflowServer, free_port
    from evoprune_tf.studies.grid import CELL_TAG, load_grid, run_grid

    features, _ = make_planted_features()
    (tmp_path / "grid.toml").write_text(GRID)
    store = new_mlflow_store(tmp_path)
    with MLflowServer(backend_store_uri=store, port=free_port(), log_file=tmp_path / "server.log") as server:
        grid = load_grid(tmp_path / "grid.toml", overrides={"tracking": {"uri": server.url}})
        result = run_grid(grid, features=features)
        assert result.count("finished") == 4, [o.error for o in result.outcomes]
        client = MlflowClient(tracking_uri=server.url)
        experiment = client.get_experiment_by_name("ray-grid")
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
        assert len({r.data.tags[CELL_TAG] for r in runs}) == 4
        # Every metric step of every run is there: generations 0..2, once each.
        per_generation = 0
        for run in runs:
            for key in run.data.metrics:
                steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
                assert len(steps) == len(set(steps)), (key, steps)
                if max(steps) > 0:
                    assert sorted(steps) == [0, 1, 2], (run.info.run_id, key, steps)
                    per_generation += 1
        assert per_generation >= 4 * 5  # at least best/mean/evaluations/... per run
        assert load_grid(tmp_path / "grid.toml", overrides={"tracking": {"uri": server.url}}).cells
        again = run_grid(grid, features=features)
        assert again.count("skipped") == 4 and again.count("finished") == 0
    assert server.process is None
