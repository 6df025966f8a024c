"""Checkpoint files: atomic writes, the header, format and config checks, RNG states."""

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
        "seed": 2, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 2},
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
    assert header["format_version"] == FORMAT_VERSION == 2
    assert header["generation"] == len(result.logbook) - 1 and header["evaluations"] == 24
    assert header["run_id"] is None and header["config_digest"] == ckpt.config_digest(config_dict)
    saved = load_checkpoint(path, config_dict=config_dict)
    assert [dict(r) for r in saved.state.logbook] == [dict(r) for r in result.logbook]
    assert [p.tolist() for p in saved.state.population] == [p.tolist() for p in result.population]
    assert [h.fitness.values for h in saved.state.halloffame] == [h.fitness.values for h in result.halloffame]
    assert saved.fitness_cache == result.evaluator.cache
    assert saved.evaluator_counters["n_trained"] == result.evaluator.n_trained
    assert saved.keras_random is None or "seed" in saved.keras_random
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pkl"]  # no temporary files left


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
    newer = tmp_path / "newer.pkl"
    save_checkpoint(newer, dataclasses.replace(saved, format_version=FORMAT_VERSION + 1))
    bodiless = tmp_path / "bodiless.pkl"  # a future file whose body this version could not even unpickle
    bodiless.write_bytes(pickle.dumps({"format_version": 99, "generation": 1}) + b"\x80\x05future-body")
    damaged = tmp_path / "damaged.pkl"
    damaged.write_bytes(path.read_bytes()[:-200])
    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps([1, 2, 3]))
    text = tmp_path / "text.pkl"
    text.write_text("not a pickle")
    cases = {
        newer: f"has format {FORMAT_VERSION + 1}, written by a newer evoprune_tf",
        bodiless: "has format 99, written by a newer evoprune_tf",
        damaged: "is unreadable",
        foreign: "holds a list; expected an evoprune_tf checkpoint",
        text: "is unreadable",
        tmp_path / "missing.pkl": "no checkpoint at",
        tmp_path: "no checkpoint at",  # a folder without checkpoint.pkl
    }
    for bad, expected in cases.items():
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            load_checkpoint(bad)
        assert expected in str(info.value) and "\n" not in str(info.value), (bad, str(info.value))
    with pytest.raises(ValueError, match="written by a newer"):
        read_checkpoint_header(bodiless)


def test_format_1_files_without_a_header_still_load(finished, tmp_path) -> None:
    _, path, result = finished
    old = tmp_path / "old.pkl"
    saved = dataclasses.replace(load_checkpoint(path), format_version=1)
    del saved.keras_random, saved.saved_at  # format 1 had neither
    old.write_bytes(pickle.dumps(saved))
    again = load_checkpoint(old)
    assert again.format_version == 1 and again.keras_random is None
    assert read_checkpoint_header(old)["evaluations"] == 24
    assert [dict(r) for r in again.state.logbook] == [dict(r) for r in result.logbook]


def test_a_failed_write_keeps_the_previous_checkpoint(finished, tmp_path) -> None:
    _, path, _ = finished
    target = tmp_path / "run" / "checkpoint.pkl"
    good = load_checkpoint(path)
    save_checkpoint(target, good)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    broken = dataclasses.replace(good, fitness_cache={b"key": Unpicklable()})
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(target, broken)
    assert [p.name for p in target.parent.iterdir()] == ["checkpoint.pkl"]
    assert load_checkpoint(target).fitness_cache == good.fitness_cache


KILLED_SAVE = textwrap.dedent('''
    import os, pickle, signal, sys
    from evoprune_tf.search import checkpoint

    saved = checkpoint.load_checkpoint(sys.argv[1])
    real_dump = pickle.dump
    calls = []

    def dying_dump(obj, f, protocol=None):
        calls.append(1)
        if len(calls) == 2:  # the header is out, the body half written: die
            f.write(pickle.dumps(obj)[:100])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        real_dump(obj, f, protocol=protocol)

    checkpoint.pickle.dump = dying_dump
    checkpoint.save_checkpoint(sys.argv[1], saved)
''')


def test_sigkill_during_a_write_leaves_the_previous_checkpoint_loadable(finished, tmp_path) -> None:
    _, path, _ = finished
    target = tmp_path / "run" / "checkpoint.pkl"
    save_checkpoint(target, load_checkpoint(path))
    before = target.read_bytes()
    script = tmp_path / "die.py"
    script.write_text(KILLED_SAVE)
    # A fresh interpreter also shows that loading needs no import beyond evoprune_tf.search.checkpoint.
    done = subprocess.run([sys.executable, str(script), str(target)], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert target.read_bytes() == before
    load_checkpoint(target)
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "checkpoint.pkl"]
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
