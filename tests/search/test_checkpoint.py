"""Checkpoint files: atomic writes, the header, format and config checks, RNG states, exact round trips."""

from __future__ import annotations

import dataclasses
import io
import pickle
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import make_planted_features

from evoprune_tf.search import checkpoint as ckpt
from evoprune_tf.search.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    config_differences,
    load_checkpoint,
    read_checkpoint_header,
    restore_rng,
    save_checkpoint,
)
from evoprune_tf.app.config import config_from_dict
from evoprune_tf.app.run import run


def _config(tmp_path, **algorithm) -> dict:
    return {
        "seed": 2, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 2, "engine": "numpy"},
        "algorithm": {"name": "steady_state", "population": 6, "evaluations": 24, **algorithm},
        "tracking": {"enabled": False}, "checkpoint": {"dir": str(tmp_path / "ckpt")},
        "report": {"seeds": 1, "export_model": False},
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run: its config dict, checkpoint path and result."""
    tmp_path = tmp_path_factory.mktemp("finished")
    data, _ = make_planted_features()
    config = _config(tmp_path)
    result = run(config_from_dict(config), features=data, out=io.StringIO())
    return config_from_dict(config).to_dict(), result.checkpoint, result


def test_a_run_writes_a_complete_checkpoint_with_a_header(finished) -> None:
    config_dict, path, result = finished
    header = read_checkpoint_header(path)
    assert header["format_version"] == FORMAT_VERSION == 3
    assert header["generation"] == len(result.logbook) - 1 and header["evaluations"] == 24
    assert header["run_id"] is None and header["config_digest"] == ckpt.config_digest(config_dict)
    saved = load_checkpoint(path, config_dict=config_dict)
    assert [dict(r) for r in saved.state.logbook] == [dict(r) for r in result.logbook]
    assert [p.tolist() for p in saved.state.population] == [p.tolist() for p in result.population]
    assert [h.fitness.values for h in saved.state.halloffame] == [h.fitness.values for h in result.halloffame]
    assert saved.fitness_cache == result.evaluator.cache
    assert saved.evaluator_counters["n_trained"] == result.evaluator.n_trained
    assert saved.keras_random is None or "seed" in saved.keras_random
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.npz"]  # no temporary files left


def test_the_budget_display_tracking_and_workers_may_change_but_nothing_else(finished) -> None:
    config_dict, path, _ = finished
    same_run = config_from_dict({**config_dict, "progress": True, "workers": 2,
                                 "algorithm": {**config_dict["algorithm"], "evaluations": 500, "early_stop": 3},
                                 "tracking": {"enabled": True}, "checkpoint": {"dir": "elsewhere"},
                                 "report": {"seeds": 5}})
    load_checkpoint(path, config_dict=same_run.to_dict())
    other = {**config_dict, "seed": 3, "train": {**config_dict["train"], "epochs": 9}}
    with pytest.raises(ValueError) as info:
        load_checkpoint(path, config_dict=config_from_dict(other).to_dict())
    message = str(info.value)
    assert "\n" not in message and "belongs to another config" in message and str(path) in message
    assert "seed: 2 -> 3" in message and "train.epochs: 2 -> 9" in message
    assert config_differences(config_dict, same_run.to_dict()) == []
    ops = {**config_dict, "operators": {**config_dict["operators"], "mutate": "flip_bit"}}
    assert config_differences(config_dict, ops) == [f"operators.mutate: {config_dict['operators']['mutate']!r} -> 'flip_bit'"]
    # where the heads train is not what they compute; a checkpoint from before the key existed still resumes
    older = {**config_dict, "train": {k: v for k, v in config_dict["train"].items() if k != "backend"}}
    elsewhere = {**config_dict, "train": {**config_dict["train"], "backend": "jax"}}
    assert config_differences(older, elsewhere) == [] and ckpt.config_digest(older) == ckpt.config_digest(elsewhere)


def test_newer_formats_and_foreign_or_damaged_files_are_refused_in_one_line(finished, tmp_path) -> None:
    _, path, _ = finished
    saved = load_checkpoint(path)
    newer = tmp_path / "newer.npz"
    save_checkpoint(newer, dataclasses.replace(saved, format_version=FORMAT_VERSION + 1))
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(path.read_bytes()[:-200])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    text = tmp_path / "text.npz"
    text.write_text("not a checkpoint")
    cases = {
        newer: f"has format {FORMAT_VERSION + 1}, written by a newer evoprune_tf",
        damaged: "is unreadable",
        foreign: "is unreadable (MalformedCheckpoint: it has no header.json entry)",
        text: "is unreadable (neither a .npz nor a pickle)",
        tmp_path / "missing.npz": "no checkpoint at",
        tmp_path: "no checkpoint at",  # a folder without checkpoint.npz
    }
    for bad, expected in cases.items():
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            load_checkpoint(bad)
        assert expected in str(info.value) and "\n" not in str(info.value), (bad, str(info.value))
    with pytest.raises(ValueError, match="written by a newer"):
        read_checkpoint_header(newer)


def test_a_failed_write_keeps_the_previous_checkpoint(finished, tmp_path) -> None:
    _, path, _ = finished
    target = tmp_path / "run" / "checkpoint.npz"
    good = load_checkpoint(path)
    save_checkpoint(target, good)

    class Opaque:
        """Not data: a data-only checkpoint cannot hold it."""

    broken = dataclasses.replace(good, fitness_cache={b"key": Opaque()})
    with pytest.raises(TypeError, match="Opaque cannot be stored in a data-only checkpoint"):
        save_checkpoint(target, broken)
    assert [p.name for p in target.parent.iterdir()] == ["checkpoint.npz"]
    assert load_checkpoint(target).fitness_cache == good.fitness_cache


KILLED_SAVE = textwrap.dedent('''
    import io, os, signal, sys
    from evoprune_tf.search import checkpoint, checkpoint_format

    saved = checkpoint.load_checkpoint(sys.argv[1])
    real_savez = checkpoint_format.np.savez

    def dying_savez(f, **arrays):
        whole = io.BytesIO()
        real_savez(whole, **arrays)
        f.write(whole.getvalue()[: len(whole.getvalue()) // 2])  # half the file is out: die
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint_format.np.savez = dying_savez
    checkpoint.save_checkpoint(sys.argv[1], saved)
''')


def test_sigkill_during_a_write_leaves_the_previous_checkpoint_loadable(finished, tmp_path) -> None:
    _, path, _ = finished
    target = tmp_path / "run" / "checkpoint.npz"
    save_checkpoint(target, load_checkpoint(path))
    before = target.read_bytes()
    script = tmp_path / "die.py"
    script.write_text(KILLED_SAVE)
    # A fresh interpreter also shows that loading needs no import beyond evoprune_tf.search.checkpoint.
    done = subprocess.run([sys.executable, str(script), str(target)], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert target.read_bytes() == before
    load_checkpoint(target)
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "checkpoint.npz"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".checkpoint-")  # ignored by every reader


def test_restore_rng_puts_python_and_numpy_back(finished) -> None:
    _, path, _ = finished
    saved = load_checkpoint(path)
    random.random()
    np.random.random()
    restore_rng(saved)
    first = (random.random(), float(np.random.random()))
    restore_rng(saved)
    assert (random.random(), float(np.random.random())) == first


def test_the_keras_seed_generator_is_saved_and_restored() -> None:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(5)
    keras.random.uniform((2,))  # creates and advances the global seed generator
    state = ckpt._keras_random_state()
    assert state is not None and state["seed"] == 5 and state["generator_state"] is not None
    expected = np.asarray(keras.random.uniform((3,)))
    keras.utils.set_random_seed(9)
    keras.random.uniform((3,))
    ckpt._restore_keras_random(state)
    assert np.array_equal(np.asarray(keras.random.uniform((3,))), expected)
    from keras.src.utils.rng_utils import get_random_seed

    assert get_random_seed() == 5


def test_checkpoint_objects_round_trip_through_pickle(finished) -> None:
    _, path, _ = finished
    saved = load_checkpoint(path)
    again = pickle.loads(pickle.dumps(saved))
    assert isinstance(again, Checkpoint) and again.header() == saved.header()


# ------------------------------------------------------------------ exact round trips


def assert_same(a, b, where: str = "checkpoint") -> None:
    """``a`` and ``b`` hold the same values of the same types (arrays: dtype, shape, values)."""
    from deap import base, tools

    # A pickle re-creates deap.creator classes (same name and weights, another object): compare those by name.
    same_creator_class = type(a).__module__ == type(b).__module__ == "deap.creator" and (
        type(a).__name__ == type(b).__name__)
    assert type(a) is type(b) or same_creator_class, f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), where
        if hasattr(a, "fitness"):
            assert_same(vars(a), vars(b), f"{where}.__dict__")
    elif isinstance(a, base.Fitness):
        assert_same(vars(a), vars(b), f"{where}.fitness")
    elif isinstance(a, tools.HallOfFame):
        assert a.maxsize == b.maxsize and a.similar is b.similar, where
        assert_same(a.items, b.items, f"{where}.items")
        assert_same(a.keys, b.keys, f"{where}.keys")
    elif isinstance(a, tools.Logbook):
        assert_same(list(a), list(b), f"{where}.records")
        for name in ("header", "log_header", "buffindex", "columns_len"):
            assert_same(getattr(a, name), getattr(b, name), f"{where}.{name}")
        assert_same(dict(a.chapters), dict(b.chapters), f"{where}.chapters")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)[:5]} != {list(b)[:5]}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            if (type(a).__name__, field.name) not in (("Checkpoint", "path"), ("Checkpoint", "digest")):
                assert_same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_every_stored_field_of_a_run_round_trips_exactly(finished, tmp_path) -> None:
    _, path, result = finished
    saved = load_checkpoint(path)
    assert_same(saved.state.population, list(result.population), "population")
    assert_same(saved.state.logbook, result.logbook, "logbook")
    assert_same(saved.state.halloffame, result.halloffame, "halloffame")
    assert_same(saved.fitness_cache, result.evaluator.cache, "fitness_cache")
    again = tmp_path / "again.npz"
    save_checkpoint(again, saved)
    reread = load_checkpoint(again)
    assert_same(saved, reread)
    assert reread.digest == saved.digest  # the same content has the same digest, wherever it is written
    assert_same(saved, pickle.loads(pickle.dumps(saved)))  # what a pickle checkpoint would have given back


def _rich_checkpoint() -> Checkpoint:
    """A checkpoint holding every kind of value a method stores (MO individuals, aliases, records...)."""
    from deap import tools

    from evoprune_tf.methods.deep_pruning_es.evaluation import FilterEvaluation
    from evoprune_tf.objectives import Evaluation
    from evoprune_tf.search.callbacks import EvolutionState
    from evoprune_tf.search.toolbox import individual_class

    Ind = individual_class((1.0, -1.0))
    rng = np.random.default_rng(0)
    pop = [Ind(rng.integers(0, 2, 12).astype(np.int8)) for _ in range(5)]
    for i, ind in enumerate(pop[:4]):
        ind.fitness.values = (0.5 + i / 10, np.float64(i / 7))
        ind.fitness.crowding_dist = float("inf") if i == 0 else i / 3  # what selNSGA2 leaves behind
    population = [*pop, pop[1]]  # pop[4] invalid, pop[1] twice (the same object)
    front = tools.ParetoFront(similar=np.array_equal)
    front.update(pop[:4])
    book = tools.Logbook()
    book.header = ["gen", "nevals", "best", "hypervolume"]
    book.record(gen=0, nevals=5, best=0.8, hypervolume=np.float64(0.25), front_size=3)
    book.record(gen=1, nevals=2, best=float("nan"), hypervolume=np.float64(0.5), front_size=np.int64(4))
    state = EvolutionState(population=population, halloffame=front, logbook=book, generation=1, evaluations=7,
                           budget=40, budget_unit="evaluations", stop=False, started=123.5,
                           info={"next_report": 10, "steady_nevals": 2, "stopped_early": None,
                                 "mlflow_run_id": "abc", "nested": {(1, 2): b"\x00\xff", "$odd": [1, (2, 3)]},
                                 "weights": np.linspace(0, 1, 4, dtype=np.float32), "flag": np.bool_(True)})
    cache = {
        b"\x0c" + bytes(8): Evaluation(accuracy=np.float32(0.75), loss=0.5, active_fraction=0.25,
                                       active_parameters=np.int64(40), auroc=None, epochs_run=3),
        b"\x0c" + bytes(7) + b"\x01": FilterEvaluation(0.1, 0.9, 0.3, 1000, 0.5, 20, 0.4, 5000, 80, 12, 0, 2),
    }
    random.seed(3)
    np.random.seed(4)
    return Checkpoint(format_version=FORMAT_VERSION, config={"seed": 3, "objectives": {"names": ("a", "b")}},
                      config_digest="0" * 16, run_id="abc", state=state, python_random=random.getstate(),
                      numpy_random=np.random.get_state(), fitness_cache=cache,
                      evaluator_counters={"n_trained": 2, "n_cache_hits": 5, "train_seconds": 1.25},
                      keras_random={"seed": 5, "generator_state": np.array([5, 9], dtype=np.uint32)},
                      saved_at=99.5, keras_loaded=True, tracking_uri="sqlite:////tmp/x.db", previous_digest="ab" * 32)


def test_a_multi_objective_state_with_every_kind_of_value_round_trips_as_a_pickle_would(tmp_path) -> None:
    rich = _rich_checkpoint()
    save_checkpoint(tmp_path / "rich.npz", rich)
    back = load_checkpoint(tmp_path / "rich.npz")
    assert_same(back, pickle.loads(pickle.dumps(rich)))
    assert back.state.population[1] is back.state.population[5]  # one object, as before
    assert not back.state.population[4].fitness.valid
    assert back.state.population[0].fitness.crowding_dist == float("inf")
    assert back.header() == rich.header() and back.digest == rich.digest
    restore_rng(back)  # and the RNG states are the ones a resume needs
    first = (random.random(), float(np.random.random()))
    random.setstate(rich.python_random)
    np.random.set_state(rich.numpy_random)
    assert (random.random(), float(np.random.random())) == first


def test_a_plugin_record_type_is_stored_once_registered(tmp_path) -> None:
    from evoprune_tf.search.checkpoint_format import register_record_type

    @dataclasses.dataclass(frozen=True)
    class LatencyRecord:  # what a plugin evaluator might cache
        accuracy: float
        latency_ms: np.float32

    rich = _rich_checkpoint()
    rich.fitness_cache = {b"\x01\x02": LatencyRecord(0.5, np.float32(3.25))}
    with pytest.raises(TypeError, match="LatencyRecord cannot be stored .*register_record_type"):
        save_checkpoint(tmp_path / "plugin.npz", rich)
    assert not (tmp_path / "plugin.npz").exists()
    register_record_type(LatencyRecord)
    save_checkpoint(tmp_path / "plugin.npz", rich)
    assert_same(load_checkpoint(tmp_path / "plugin.npz").fitness_cache, rich.fitness_cache)
