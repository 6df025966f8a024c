"""Issue 25, item 1: a checkpoint is data; loading one never runs code, and a swapped file is refused."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store
from helpers_runs import Interrupt
from test_checkpoint import assert_same

import evoprune_tf.app.run as run_module
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import config_from_dict
from evoprune_tf.search import checkpoint_format as fmt
from evoprune_tf.search.checkpoint import load_checkpoint, read_checkpoint_header, save_checkpoint
from evoprune_tf.tracking.store import check_resumable


def _config(tmp_path: Path, **extra) -> dict:
    config = {
        "seed": 7, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 2, "engine": "numpy"},
        "algorithm": {"name": "steady_state", "population": 6, "evaluations": 36},
        "tracking": {"enabled": False}, "checkpoint": {"dir": str(tmp_path / "ckpt")},
        "report": {"seeds": 1, "export_model": False},
    }
    config.update(extra)
    return config


@pytest.fixture
def no_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "_report", lambda *args, **kwargs: ({}, None))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run `killed` was cut from (no report)."""
    tmp_path = tmp_path_factory.mktemp("reference")
    data, _ = make_planted_features(seed=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "_report", lambda *args, **kwargs: ({}, None))
        return run_module.run(config_from_dict(_config(tmp_path)), features=data, out=io.StringIO())


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """The checkpoint of an untracked run stopped at generation 2 (of 5)."""
    tmp_path = tmp_path_factory.mktemp("killed")
    data, _ = make_planted_features(seed=2)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(_config(tmp_path)), features=data, out=io.StringIO(),
                       callbacks=[Interrupt(2, KeyboardInterrupt())])
    [path] = list((tmp_path / "ckpt").glob("*/checkpoint.npz"))
    return path


class Evil:
    """Unpickling this creates a marker file: what a hostile checkpoint would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _entries(path: Path) -> tuple[dict, dict, dict]:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(arrays.pop("header.json").tobytes())
    body = json.loads(arrays.pop("body.json").tobytes())
    arrays.pop("sha256")
    return header, body, arrays


def _write(path: Path, header: dict, body: dict, arrays: dict, digest: str | None = None) -> Path:
    """A hand-made format-3 file; the digest is made to match unless one is given."""
    header_bytes, body_bytes = json.dumps(header).encode(), json.dumps(body).encode()
    if digest is None:
        digest = fmt.payload_digest(header_bytes, body_bytes, {k: v for k, v in arrays.items() if v.dtype != object})
    np.savez(path, **{"header.json": np.frombuffer(header_bytes, np.uint8), "body.json": np.frombuffer(body_bytes, np.uint8),
                      "sha256": np.frombuffer(digest.encode(), np.uint8), **arrays})
    return path


def _refused(path: Path, *expected: str) -> None:
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and all(part in message for part in expected), message


def test_a_pickle_with_a_payload_is_refused_everywhere_and_never_runs(killed, tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    hostile = tmp_path / "run" / "checkpoint.pkl"
    hostile.parent.mkdir()
    hostile.write_bytes(pickle.dumps({"format_version": 2, "generation": 1, "x": Evil(marker)}))
    for target in (hostile, hostile.parent):
        _refused(target, f"checkpoint {hostile} is a pickle written by an older evoprune_tf",
                 "--allow-pickle", "start the run again")
    with pytest.raises(ValueError, match="--allow-pickle"):
        read_checkpoint_header(hostile)
    assert cli_main(["resume", str(hostile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--allow-pickle" in err, err
    with pytest.raises(ValueError, match="--allow-pickle"):
        run_module.resume(hostile, out=io.StringIO())
    assert not marker.exists()
    pickle.loads(hostile.read_bytes())  # the payload is real: unpickling it does create the marker
    assert marker.exists()


def test_a_crafted_npz_can_neither_unpickle_nor_name_code(killed, tmp_path) -> None:
    marker = tmp_path / "pwned"
    header, body, arrays = _entries(killed)
    evil = np.empty(1, dtype=object)
    evil[0] = Evil(marker)
    body["state"]["$state"]["info"]["payload"] = {"$array": "a/999"}
    _refused(_write(tmp_path / "object-array.npz", header, body, {**arrays, "a/999": evil}),
             "is unreadable", "allow_pickle=False")
    # The header itself as an object array: refused before anything else is read.
    with open(tmp_path / "object-header.npz", "wb") as f:
        np.savez(f, **{"header.json": evil, "body.json": evil, "sha256": evil})
    _refused(tmp_path / "object-header.npz", "is unreadable")
    assert not marker.exists()
    # Names of code are not followed: only allow-listed records and the run's creator classes.
    header, body, arrays = _entries(killed)
    key = next(iter(body["fitness_cache"]["values"]))
    key["$record"][0] = "system"
    _refused(_write(tmp_path / "record.npz", header, body, arrays), "record type 'system' is not one of")
    header, body, arrays = _entries(killed)
    body["individuals"][0]["class"] = "Popen"
    _refused(_write(tmp_path / "class.npz", header, body, arrays), "individual class 'Popen' is not")
    header, body, arrays = _entries(killed)
    body["state"]["$state"]["info"]["x"] = {"$import": "os.system"}
    _refused(_write(tmp_path / "tag.npz", header, body, arrays), "unknown tag '$import'")
    header, body, arrays = _entries(killed)
    body["python_random"] = {"$tuple": [3, {"$tuple": [1, 2]}, None]}  # well formed, but no RNG state
    _refused(_write(tmp_path / "rng.npz", header, body, arrays), "is unreadable")


def test_a_changed_file_does_not_match_its_digest(killed, tmp_path) -> None:
    header, body, arrays = _entries(killed)
    stored = _write(tmp_path / "same.npz", header, body, arrays)
    assert load_checkpoint(stored).digest == load_checkpoint(killed).digest
    body["state"]["$state"]["evaluations"] += 1  # an edit that keeps the file well formed
    digest = load_checkpoint(killed).digest
    _refused(_write(tmp_path / "edited.npz", header, body, arrays, digest=digest),
             "does not match its own digest", f"stored sha256 {digest[:16]}")
    genes = dict(arrays)
    genes["a/0"] = 1 - genes["a/0"]
    _refused(_write(tmp_path / "genes.npz", *_entries(killed)[:2], genes, digest=digest), "does not match its own digest")


def test_an_old_pickle_loads_with_allow_pickle_and_resumes_in_the_data_only_format(
    killed, reference, tmp_path, monkeypatch, capsys, no_report
) -> None:
    saved = load_checkpoint(killed)
    old = tmp_path / "old" / "checkpoint.pkl"
    old.parent.mkdir()
    with open(old, "wb") as f:  # exactly what evoprune_tf 0.2 wrote (format 2: header, then the body)
        pickle.dump({**saved.header(), "format_version": 2}, f)
        pickle.dump(saved, f)
    format1 = tmp_path / "format1.pkl"
    format1.write_bytes(pickle.dumps(saved))
    for path in (old, format1):
        _refused(path, "is a pickle written by an older evoprune_tf", "--allow-pickle")
        assert_same(load_checkpoint(path, allow_pickle=True).state, saved.state)
    assert read_checkpoint_header(old, allow_pickle=True)["generation"] == 2
    data, _ = make_planted_features(seed=2)
    monkeypatch.setattr(run_module, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(run_module, "_check_inputs", lambda config: None)
    assert cli_main(["resume", str(old), "--no-progress"]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert cli_main(["resume", str(old), "--no-progress", "--allow-pickle"]) == 0
    capsys.readouterr()
    fresh = old.with_suffix(".npz")  # the resumed run writes data-only checkpoints beside the old file
    assert load_checkpoint(fresh).state.evaluations == 36 and old.read_bytes()[:1] == b"\x80"
    assert_same(load_checkpoint(fresh).state.logbook, reference.logbook)


# ------------------------------------------------------------------ exact resume


def _summary(result) -> dict:
    return {"logbook": [dict(r) for r in result.logbook], "population": [p.tolist() for p in result.population],
            "fitness": [p.fitness.values for p in result.population],
            "halloffame": [(h.tolist(), h.fitness.values) for h in result.halloffame]}


def test_a_resume_with_a_cold_fitness_cache_ends_where_the_uninterrupted_run_ends(
    killed, reference, tmp_path, no_report
) -> None:
    saved = load_checkpoint(killed)
    cold = save_checkpoint(tmp_path / "cold" / "checkpoint.npz", dataclasses.replace(saved, fitness_cache={}))
    data, _ = make_planted_features(seed=2)
    (tmp_path / "warm").mkdir()
    warm = run_module.resume(shutil.copy(killed, tmp_path / "warm" / "checkpoint.npz"), features=data,
                             out=io.StringIO())
    resumed = run_module.resume(cold, features=data, out=io.StringIO())
    assert _summary(warm) == _summary(resumed) == _summary(reference)
    assert warm.evaluator.cache == reference.evaluator.cache
    assert len(resumed.evaluator.cache) < len(reference.evaluator.cache)  # it really started cold


MO = {"names": ["accuracy", "active_fraction"]}


@pytest.mark.parametrize("name", ["random_search", "nsga3", "unpruned"])
def test_the_other_methods_resume_exactly_from_a_data_only_checkpoint(tmp_path, name, no_report) -> None:
    data, _ = make_planted_features(seed=4)
    extra = {"objectives": MO} if name == "nsga3" else {}
    at = 0 if name == "unpruned" else 2

    def config(folder: str) -> dict:
        return _config(tmp_path / folder, algorithm={"name": name, "population": 6, "evaluations": 30}, **extra)

    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(config("cut")), features=data, out=io.StringIO(),
                       callbacks=[Interrupt(at, KeyboardInterrupt())])
    [path] = list((tmp_path / "cut" / "ckpt").glob("*/checkpoint.npz"))
    assert load_checkpoint(path).state.generation == at
    resumed = run_module.resume(path, features=data, out=io.StringIO())
    whole = run_module.run(config_from_dict(config("whole")), features=data, out=io.StringIO())
    assert _summary(resumed) == _summary(whole)


# ------------------------------------------------------------------ the run's tag


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[str, Path, dict]:
    """A tracked run stopped at generation 2: its store, checkpoint and config."""
    tmp_path = tmp_path_factory.mktemp("tracked")
    store = new_mlflow_store(tmp_path)
    config = _config(tmp_path, tracking={"enabled": True, "uri": store, "experiment": "trust"})
    data, _ = make_planted_features(seed=3)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config_from_dict(config), features=data, out=io.StringIO(),
                       callbacks=[Interrupt(2, KeyboardInterrupt())])
    [path] = list((tmp_path / "ckpt").glob("*/checkpoint.npz"))
    return store, path, config


def test_the_run_records_the_digest_of_each_checkpoint(tracked) -> None:
    from mlflow import MlflowClient

    store, path, _ = tracked
    saved = load_checkpoint(path)
    tags = MlflowClient(store).get_run(saved.run_id).data.tags
    assert tags["evoprune.checkpoint_sha256"] == saved.digest and tags["evoprune.checkpoint_generation"] == "2"
    assert tags["evoprune.checkpoint"] == str(path) and len(saved.digest) == 64
    assert saved.previous_digest is not None  # generation 1's, the one this file replaced


def test_a_file_that_is_not_the_one_the_run_recorded_is_refused(tracked, tmp_path, no_report) -> None:
    from mlflow import MlflowClient

    store, path, _ = tracked
    saved = load_checkpoint(path)
    swapped = load_checkpoint(path)
    swapped.state.info["planted"] = "by someone else"  # well formed, its own digest right: not the run's file
    save_checkpoint(tmp_path / "swapped.npz", swapped)
    data, _ = make_planted_features(seed=3)
    with pytest.raises(ValueError) as info:
        run_module.resume(tmp_path / "swapped.npz", features=data, out=io.StringIO())
    message = str(info.value)
    assert "\n" not in message and f"recorded sha256 {saved.digest[:16]}" in message, message
    assert "a swapped or foreign file" in message and str(path) in message
    pickled = tmp_path / "swapped.pkl"  # a pickle of the run's own state is no better
    pickled.write_bytes(pickle.dumps(saved))
    with pytest.raises(ValueError, match="has no digest .a pickle., but MLflow run"):
        run_module.resume(pickled, allow_pickle=True, features=data, out=io.StringIO())
    assert MlflowClient(store).get_run(saved.run_id).info.status == "KILLED"  # nothing was resumed


def test_the_checkpoint_written_just_before_a_kill_is_accepted_by_its_predecessor_s_tag(tracked) -> None:
    # A run killed after writing a checkpoint but before tagging it: the tag still names the
    # previous checkpoint, which the newer file records as its predecessor.
    store, path, _ = tracked
    saved = load_checkpoint(path)
    check_resumable(saved.run_id, store, generation=2, digest="f" * 64, previous_digest=saved.digest)
    check_resumable(saved.run_id, store, generation=2, digest=saved.digest, previous_digest=None)
    with pytest.raises(ValueError, match="a swapped or foreign file"):
        check_resumable(saved.run_id, store, generation=2, digest="f" * 64, previous_digest="e" * 64)


def test_a_resume_continues_the_chain_of_digests(tracked, tmp_path, no_report) -> None:
    from mlflow import MlflowClient

    store, path, _ = tracked
    copy = tmp_path / "run" / "checkpoint.npz"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    first = load_checkpoint(copy)
    data, _ = make_planted_features(seed=3)
    with pytest.raises(KeyboardInterrupt):
        run_module.resume(copy, features=data, out=io.StringIO(), callbacks=[Interrupt(3, KeyboardInterrupt())])
    after = load_checkpoint(copy)
    assert after.state.generation == 3 and after.previous_digest == first.digest
    assert MlflowClient(store).get_run(first.run_id).data.tags["evoprune.checkpoint_sha256"] == after.digest
