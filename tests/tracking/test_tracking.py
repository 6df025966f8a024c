"""MLflow tracking: a real (tiny) evolution logged to a throw-away SQLite store."""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import tempfile
import time

import mlflow
import numpy as np
import pytest
from deap import base, creator, tools
from mlflow import MlflowClient

from evoprune_tf.search import algorithms
from evoprune_tf.search.callbacks import Callback, EvolutionState
from evoprune_tf.methods.head.build import tracker_options
from evoprune_tf.app.config import ExperimentConfig
from evoprune_tf.encodings import pack_genome, unpack_genome
from evoprune_tf.tracking import (
    DEFAULT_TRACKING_URI,
    MLflowTracker,
    check_tracking_uri,
    find_run,
    resolve_tracking_uri,
)

GENES = 24

# Created at import time (so they pickle) under names no other module uses.
if not hasattr(creator, "TrackingTestFitness"):
    creator.create("TrackingTestFitness", base.Fitness, weights=(1.0,))
    creator.create("TrackingTestIndividual", np.ndarray, fitness=creator.TrackingTestFitness)
    creator.create("TrackingTestFitnessMO", base.Fitness, weights=(1.0, -1.0))
    creator.create("TrackingTestIndividualMO", np.ndarray, fitness=creator.TrackingTestFitnessMO)


def _copying_uniform(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    swap = np.random.random(len(a)) < 0.5
    a_part = a[swap].copy()
    a[swap] = b[swap]
    b[swap] = a_part
    return a, b


def _toolbox(individual_class, evaluate) -> base.Toolbox:
    toolbox = base.Toolbox()
    toolbox.register("individual", lambda: individual_class(np.random.randint(0, 2, GENES).astype(np.int8)))
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", evaluate)
    toolbox.register("mate", _copying_uniform)
    toolbox.register("mutate", tools.mutFlipBit, indpb=0.1)
    toolbox.register("select", tools.selTournament, tournsize=2)
    return toolbox


def _sum_fitness(ind) -> tuple[float]:
    return (float(np.sum(ind)),)


def _two_objectives(ind) -> tuple[float, float]:
    return float(np.sum(ind[: GENES // 2])), float(np.mean(ind))


def _tracker(config: ExperimentConfig, *, tags: dict | None = None, **kwargs) -> MLflowTracker:
    """The tracker the app builds for ``config``, with extra tags."""
    options = tracker_options(config)
    options["tags"] = {**options["tags"], **(tags or {})}
    return MLflowTracker(**options, **kwargs)


def _config(uri: str, **algorithm) -> ExperimentConfig:
    config = ExperimentConfig(name="tracking-test", seed=7)
    config.tracking.uri = uri
    config.tracking.experiment = "tracking-tests"
    config.algorithm.name = "ea_simple"
    for key, value in algorithm.items():
        setattr(config.algorithm, key, value)
    return config


@pytest.fixture(scope="session")
def _migrated_store(tmp_path_factory) -> str:
    """An empty MLflow SQLite store, created once and copied into each test's tmp_path.

    Creating the tables runs MLflow's ~60 migrations, each synced to disk: ~8 s on a
    disk, ~2 s in RAM (/dev/shm, when there is one).
    """
    folder = tmp_path_factory.mktemp("mlflow-template")
    ram = None
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        ram = tempfile.mkdtemp(prefix="evoprune-mlflow-", dir="/dev/shm")
    build = ram or str(folder)
    MlflowClient(tracking_uri=f"sqlite:///{build}/mlflow.db").search_experiments(max_results=1)
    if ram is not None:
        shutil.copy(os.path.join(ram, "mlflow.db"), folder / "mlflow.db")
        shutil.rmtree(ram, ignore_errors=True)
    return str(folder / "mlflow.db")


@pytest.fixture
def store(tmp_path, _migrated_store, monkeypatch) -> str:
    """A private SQLite store under tmp_path (artifacts in tmp_path/artifacts), set as MLflow's URI."""
    shutil.copy(_migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


class _KeepState(Callback):
    """Remembers the loop's state (to resume from it)."""

    state: EvolutionState | None = None

    def on_end(self, state: EvolutionState, error: BaseException | None = None) -> None:
        self.state = state


class _RaiseAt(Callback):
    def __init__(self, generation: int, error: BaseException) -> None:
        self.generation, self.error = generation, error

    def on_generation(self, state: EvolutionState) -> None:
        if state.generation == self.generation:
            raise self.error


def _seed(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def _read_csv(client: MlflowClient, run_id: str, path: str) -> list[dict]:
    text = mlflow.artifacts.load_text(f"{client.get_run(run_id).info.artifact_uri}/{path}")
    return list(csv.DictReader(io.StringIO(text)))


def test_tracked_run_logs_params_tags_metrics_artifacts_and_model(store, tmp_path):
    import keras

    config = _config(store)
    toolbox = _toolbox(creator.TrackingTestIndividual, _sum_fitness)
    tracker = _tracker(config, tags={"purpose": "test"},
                            stats=lambda: {"trained": 5, "cache_hits": 2, "evals_per_second": 12.5})
    _seed()
    algorithms.ea_simple(toolbox.population(n=8), toolbox, 0.5, 0.2, 3, callbacks=[tracker])
    assert tracker.run_id and tracker.uri == store
    assert MlflowClient(store).get_run(tracker.run_id).info.status == "RUNNING"  # open for the report
    tracker.log_report({"test_accuracy": np.float32(0.75), "mask": np.arange(3), "seeds": 3})
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    info = tracker.log_keras_model(model)
    tracker.finish()

    runs = mlflow.search_runs(experiment_names=["tracking-tests"])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["run_id"] == tracker.run_id and row["status"] == "FINISHED"
    assert row["params.algorithm.name"] == "ea_simple" and row["params.seed"] == "7"
    assert row["tags.evoprune.algorithm"] == "ea_simple"
    assert row["tags.evoprune.encoding"] == "feature_selection"
    assert row["tags.evoprune.backbone"] == "mobilenet_v2"
    assert row["tags.evoprune.dataset"] == "builtin:synthetic"
    assert row["tags.evoprune.seed"] == "7"
    assert "mutate=flip_one(indpb=0.07)" in row["tags.evoprune.operators"]
    assert row["tags.purpose"] == "test"
    assert row["tags.mlflow.runName"] == "ea_simple-s7-synthetic"

    client = MlflowClient(store)
    history = client.get_metric_history(tracker.run_id, "best")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    metrics = client.get_run(tracker.run_id).data.metrics
    assert {"mean", "min", "max", "std", "best_active", "mean_active", "nevals", "evaluations"} <= set(metrics)
    assert metrics["evals_per_second"] == 12.5 and metrics["cache_hits"] == 2 and "gen" not in metrics

    artifacts = _artifacts(client, tracker.run_id)
    assert {"logbook.csv", "halloffame.csv", "masks/best_genomes.npz", "plots/convergence.png",
            "report.json"} <= artifacts
    assert client.get_run(tracker.run_id).info.artifact_uri.startswith((tmp_path / "artifacts").as_uri())

    logbook = _read_csv(client, tracker.run_id, "logbook.csv")
    assert [int(r["gen"]) for r in logbook] == [0, 1, 2, 3]
    hof = _read_csv(client, tracker.run_id, "halloffame.csv")
    assert list(hof[0]) == ["obj0", "active_fraction", "genome"]
    local = mlflow.artifacts.download_artifacts(run_id=tracker.run_id, artifact_path="masks/best_genomes.npz",
                                                dst_path=str(tmp_path / "download"))
    with np.load(local) as saved:
        genomes, fitness = saved["genomes"], saved["fitness"]
    assert genomes.dtype == np.uint8 and genomes.shape[1] == GENES and fitness.shape == (len(genomes), 1)
    np.testing.assert_array_equal(unpack_genome(hof[0]["genome"], GENES), genomes[0])
    assert float(hof[0]["obj0"]) == fitness[0, 0] == genomes[0].sum()
    report = mlflow.artifacts.load_dict(f"{client.get_run(tracker.run_id).info.artifact_uri}/report.json")
    assert report == {"test_accuracy": 0.75, "mask": [0, 1, 2], "seeds": 3}

    loaded = mlflow.keras.load_model(info.model_uri)
    x = np.ones((1, 4), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert client.get_run(tracker.run_id).data.tags["evoprune.model_uri.model"] == info.model_uri
    logged = client.get_logged_model(info.model_id)
    assert logged.source_run_id == tracker.run_id and logged.experiment_id == tracker.experiment_id
    assert logged.status == "READY"


@pytest.mark.parametrize("error, status", [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_loop_that_raises_ends_the_run_and_keeps_its_artifacts(store, error, status):
    tracker = _tracker(_config(store))
    toolbox = _toolbox(creator.TrackingTestIndividual, _sum_fitness)
    _seed()
    with pytest.raises(type(error)):
        algorithms.ea_simple(toolbox.population(n=6), toolbox, 0.5, 0.2, 5,
                             callbacks=[tracker, _RaiseAt(2, error)])
    tracker.finish()  # what a runner's clean-up does: must not overwrite the status
    client = MlflowClient(store)
    run = client.get_run(tracker.run_id)
    assert run.info.status == status
    assert run.data.tags["evoprune.error"].startswith(type(error).__name__)
    assert {"logbook.csv", "halloffame.csv", "masks/best_genomes.npz"} <= _artifacts(client, tracker.run_id)
    assert [int(r["gen"]) for r in _read_csv(client, tracker.run_id, "logbook.csv")] == [0, 1, 2]


def test_resume_continues_the_same_run(store):
    config = _config(store)
    toolbox = _toolbox(creator.TrackingTestIndividual, _sum_fitness)
    first, keep = _tracker(config), _KeepState()
    _seed()
    algorithms.ea_simple(toolbox.population(n=6), toolbox, 0.5, 0.2, 2, callbacks=[first, keep])
    first.finish("KILLED")  # the process died; the checkpoint holds the state and the run id
    assert keep.state.info["mlflow_run_id"] == first.run_id

    second = _tracker(config, run_id=first.run_id[:8])  # a prefix is enough
    algorithms.ea_simple(keep.state.population, toolbox, 0.5, 0.2, 4, callbacks=[second], state=keep.state)
    second.finish()
    assert second.run_id == first.run_id
    client = MlflowClient(store)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["evoprune.resumed_at_generation"] == "2"
    assert sorted(m.step for m in client.get_metric_history(first.run_id, "best")) == [0, 1, 2, 3, 4]
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert [int(r["gen"]) for r in _read_csv(client, first.run_id, "logbook.csv")] == [0, 1, 2, 3, 4]


def test_multi_objective_run_logs_fronts_and_pareto_plot(store):
    config = _config(store, name="nsga2", evaluations=24)
    toolbox = _toolbox(creator.TrackingTestIndividualMO, _two_objectives)
    toolbox.register("select", tools.selRandom)
    toolbox.register("survive", tools.selNSGA2)
    tracker = _tracker(config, log_fronts=True, objective_names=["score", "active"])
    _seed()
    algorithms.nsga2(toolbox.population(n=8), toolbox, evaluations=24, callbacks=[tracker])
    tracker.finish()
    client = MlflowClient(store)
    artifacts = _artifacts(client, tracker.run_id)
    fronts = sorted(a for a in artifacts if a.startswith("fronts/"))
    assert fronts[0] == "fronts/front_gen_0000.csv" and len(fronts) == 3
    assert "plots/pareto_front.png" in artifacts
    rows = _read_csv(client, tracker.run_id, fronts[-1])
    assert list(rows[0]) == ["score", "active", "active_fraction", "genome"]
    for r in rows:
        genome = unpack_genome(r["genome"], GENES)
        assert float(r["active"]) == pytest.approx(genome.mean()) == pytest.approx(float(r["active_fraction"]))


def test_check_tracking_uri_fails_fast_on_a_refused_server():
    began = time.monotonic()
    with pytest.raises(ValueError, match=r"http://127\.0\.0\.1:9") as caught:
        check_tracking_uri("http://127.0.0.1:9")
    assert time.monotonic() - began < 15
    assert "\n" not in str(caught.value)
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") != "0"  # restored afterwards


def test_check_tracking_uri_sqlite(tmp_path, _migrated_store):
    with pytest.raises(ValueError, match="does not exist") as caught:
        check_tracking_uri(f"sqlite:///{tmp_path}/missing/mlflow.db")
    assert "\n" not in str(caught.value)
    (tmp_path / "junk.db").write_bytes(b"this is not a database, only text" * 10)
    with pytest.raises(ValueError, match="junk.db"):
        check_tracking_uri(f"sqlite:///{tmp_path}/junk.db")
    shutil.copy(_migrated_store, tmp_path / "ok.db")
    check_tracking_uri(f"sqlite:///{tmp_path}/ok.db")


def test_resolve_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert resolve_tracking_uri() == "http://example.invalid:5000"
    assert resolve_tracking_uri("sqlite:///other.db") == "sqlite:///other.db"


def test_find_run_by_prefix(store):
    tracker = _tracker(_config(store))
    tracker.on_start()
    tracker.finish()
    assert find_run(tracker.run_id, store).info.run_id == tracker.run_id
    assert find_run(tracker.run_id[:5].upper(), store).info.run_id == tracker.run_id
    with pytest.raises(ValueError, match="no run id starts with"):
        find_run("zzzz", store)
    with pytest.raises(ValueError, match="not found"):
        find_run("0" * 32, store)


def test_finish_rejects_an_unknown_status(store):
    tracker = _tracker(_config(store))
    tracker.on_start()
    with pytest.raises(ValueError, match="'DONE'"):
        tracker.finish("DONE")
    tracker.finish()


def test_pack_genome_round_trip():
    genome = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0], dtype=np.int8)
    packed = pack_genome(genome)
    assert packed == "9ac0"
    np.testing.assert_array_equal(unpack_genome(packed, len(genome)), genome)
    with pytest.raises(ValueError, match="length=17"):
        unpack_genome(packed, 17)
