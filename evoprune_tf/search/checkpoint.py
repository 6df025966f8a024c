"""Checkpoints: everything needed to continue a run exactly where it stopped, as data only.

A checkpoint holds the `EvolutionState` (population, hall of fame / Pareto archive,
logbook, generation and evaluation counters, the loop's ``info``), the Python, NumPy and
Keras RNG states, the evaluator's fitness cache and counters, the MLflow run id and the
config it belongs to. It is written atomically (temporary file in the same folder,
``fsync``, then ``os.replace``) after every ``every`` generations, so a run killed at any
moment, even by SIGKILL, leaves either the previous or the new checkpoint, never a torn
one. The RNG states are taken *at* the generation report, where the loop continues
from, so a resumed run draws exactly the numbers the uninterrupted run would have drawn.

File layout (format 3, `evoprune_tf.search.checkpoint_format`): one ``.npz`` holding a
JSON header, a tagged-JSON body, the arrays (genomes, RNG keys, cache keys) and the
SHA-256 of all of them. Loading never runs code (``allow_pickle=False``, `json.loads`,
individuals rebuilt with the run's own `deap.creator` classes), a file whose content does
not match its digest is refused, and the run records each checkpoint's digest in its
MLflow tag ``evoprune.checkpoint_sha256`` so a resume can refuse a swapped file
(`evoprune_tf.tracking.store.check_resumable`). Pickle checkpoints of formats 1 and 2
(older evoprune_tf versions) load only with ``allow_pickle=True`` (``evoprune resume
--allow-pickle``), for a file you trust. docs/checkpoints.md describes the format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoprune_tf.errors import one_line
from evoprune_tf.search import checkpoint_format as fmt
from evoprune_tf.search.callbacks import Callback, EvolutionState
from evoprune_tf.search.keras_rng import keras_random_state as _keras_random_state
from evoprune_tf.search.keras_rng import restore_keras_random as _restore_keras_random

__all__ = [
    "FORMAT_VERSION",
    "CHECKPOINT_FILE",
    "LEGACY_CHECKPOINT_FILE",
    "checkpoint_target",
    "Checkpoint",
    "CheckpointCallback",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_header",
    "config_digest",
    "config_differences",
    "restore_rng",
    "restore_evaluator",
]

FORMAT_VERSION = 3
CHECKPOINT_FILE = "checkpoint.npz"
#: The file name of the pickle checkpoints (formats 1 and 2) older versions wrote.
LEGACY_CHECKPOINT_FILE = "checkpoint.pkl"
_PICKLE_HINT = ("unpickling can run code: if you trust the file, resume with --allow-pickle "
                "(Python: allow_pickle=True), or start the run again")

#: Config parts that do not change a search's results: a run may be resumed with a larger
#: budget, another display, tracking store, checkpoint folder or number of workers.
_IGNORED_KEYS = ("progress", "tracking", "checkpoint", "report", "cache_dir", "workers", "plugins", "runner",
                 "ray_address", "num_gpus")
_IGNORED_ALGORITHM_KEYS = ("evaluations", "generations", "early_stop")
#: Where the heads train, not what they compute (the same fitness to 1e-5 on either Keras
#: backend, tests/test_keras_engine.py); also keeps checkpoints written before the key existed resumable.
_IGNORED_TRAIN_KEYS = ("backend",)


def _relevant(config_dict: dict) -> dict:
    relevant = {k: v for k, v in config_dict.items() if k not in _IGNORED_KEYS}
    algorithm = dict(relevant.get("algorithm", {}))
    for key in _IGNORED_ALGORITHM_KEYS:
        algorithm.pop(key, None)
    relevant["algorithm"] = algorithm
    if isinstance(relevant.get("train"), dict):
        relevant["train"] = {k: v for k, v in relevant["train"].items() if k not in _IGNORED_TRAIN_KEYS}
    return relevant


def config_digest(config_dict: dict) -> str:
    """A stable hash of the parts of a config that change the search's results.

    The budget, progress display, tracking, checkpoint, report and worker settings are
    left out: a run may be resumed with a larger budget or another display and still be
    the same run.
    """
    return hashlib.sha256(json.dumps(_relevant(config_dict), sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_differences(stored: dict, given: dict) -> list[str]:
    """``"key: stored -> given"`` for every result-changing key where two configs differ."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else str(k)
            out.update(flat(v, name) if isinstance(v, dict) and not name.startswith("operators.") else {name: v})
        return out

    a, b = flat(_relevant(stored)), flat(_relevant(given))
    missing = object()
    return [
        f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]


@dataclasses.dataclass
class Checkpoint:
    """The content of a checkpoint file.

    Attributes:
        format_version: the file format it was written with.
        config: the run's config (``ExperimentConfig.to_dict()``).
        config_digest: `config_digest` of ``config``.
        run_id: the MLflow run id (None without tracking).
        state: the loop's `EvolutionState` at a generation report.
        python_random: ``random.getstate()``.
        numpy_random: ``numpy.random.get_state()``.
        fitness_cache: the evaluator's cache (genome key -> `Evaluation`).
        evaluator_counters: ``n_trained``, ``n_cache_hits``, ``train_seconds``.
        keras_random: the global Keras seed and seed-generator state when Keras was
            loaded (None otherwise).
        saved_at: ``time.time()`` of the write.
        keras_loaded: whether Keras was imported when the checkpoint was written;
            `restore_rng` then imports it *before* restoring the Python and NumPy
            states, because importing Keras draws from (reseeds) both.
        tracking_uri: the MLflow store the run lives in (None without tracking), so a
            resume into another store is refused naming the right one.
        previous_digest: the digest of the checkpoint this one replaced (None for the
            first): a run killed between writing a checkpoint and tagging its digest
            still resumes, because the tag then holds this one.
        digest: the SHA-256 of the file's payload (set when written or read; None for a
            pickle checkpoint). Not stored inside the payload it digests.
        path: the file it was read from or written to (not stored).
    """

    format_version: int
    config: dict
    config_digest: str
    run_id: str | None
    state: EvolutionState
    python_random: Any
    numpy_random: Any
    fitness_cache: dict
    evaluator_counters: dict
    keras_random: Any = None
    saved_at: float = 0.0
    keras_loaded: bool = False
    tracking_uri: str | None = None
    previous_digest: str | None = None
    digest: str | None = None
    path: Path | None = None

    def header(self) -> dict:
        """The plain-dict header, readable without the body (`read_checkpoint_header`)."""
        return {
            "format_version": self.format_version,
            "config_digest": self.config_digest,
            "run_id": self.run_id,
            "generation": int(self.state.generation),
            "evaluations": int(self.state.evaluations),
            "saved_at": self.saved_at,
            "tracking_uri": self.tracking_uri,
            "keras_loaded": bool(getattr(self, "keras_loaded", False)),
            "previous_digest": getattr(self, "previous_digest", None),
        }


_COUNTERS = ("n_trained", "n_cache_hits", "train_seconds")
_BODY_FIELDS = ("config", "state", "python_random", "numpy_random", "evaluator_counters", "keras_random")
_HEADER_FIELDS = ("format_version", "config_digest", "run_id", "saved_at", "tracking_uri", "keras_loaded",
                  "previous_digest")


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename) in the data-only format.

    Sets ``checkpoint.digest`` and ``checkpoint.path``.

    Returns:
        The path.

    Raises:
        TypeError: the checkpoint holds a value the format cannot store (nothing is written).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**checkpoint.header(), **{k: getattr(checkpoint, k, None) for k in _HEADER_FIELDS}}
    body = {k: getattr(checkpoint, k, None) for k in _BODY_FIELDS}
    body["fitness_cache"] = fmt.pack_cache(checkpoint.fitness_cache)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            digest = fmt.write_payload(f, header, body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    checkpoint.digest, checkpoint.path = digest, path
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in (CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE) if (path / name).is_file()]
        path = found[0] if found else path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; expected a {CHECKPOINT_FILE} written by a run")
    return path


def checkpoint_target(checkpoint: str | Path | None) -> Path | None:
    """Where a run resumed from ``checkpoint`` writes its checkpoints.

    A folder gets ``checkpoint.npz`` in it, an old ``*.pkl`` file its ``.npz`` sibling (a
    pickle is never overwritten with another format under its old name), any other file
    itself; None stays None (the run picks its folder).
    """
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    if path.is_dir():
        return path / CHECKPOINT_FILE
    return path.with_suffix(".npz") if path.suffix == ".pkl" else path


def _check_version(path: Path, version: Any) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"checkpoint {path} has format {version!r}; expected a format number in [1, {FORMAT_VERSION}]")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format {version}, written by a newer evoprune_tf; "
            f"this one reads formats up to {FORMAT_VERSION}: upgrade evoprune_tf to resume it"
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"checkpoint {path} is unreadable ({type(error).__name__}: {one_line(error, 200)})") from None


def _refuse_pickle(path: Path, data: bytes) -> None:
    if data[:1] == b"\x80":  # what pickle.dump wrote for formats 1 and 2
        raise ValueError(f"checkpoint {path} is a pickle written by an older evoprune_tf; {_PICKLE_HINT}")
    raise ValueError(f"checkpoint {path} is unreadable (neither a .npz nor a pickle); "
                     "expected a checkpoint written by evoprune_tf")


def _malformed(path: Path, error: BaseException) -> ValueError:
    return ValueError(f"checkpoint {path} is unreadable ({type(error).__name__}: {one_line(error, 200)}); "
                      "expected a checkpoint written by evoprune_tf")


def read_checkpoint_header(path: str | Path, *, allow_pickle: bool = False) -> dict:
    """The header of a checkpoint (format, digest, run id, generation, evaluations), cheaply.

    Args:
        path: a checkpoint file, or a folder holding one.
        allow_pickle: read an old pickle checkpoint (only for a file you trust).

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: unreadable, from a newer format, or a pickle without ``allow_pickle``.
    """
    path = _resolve(path)
    data = _read(path)
    if not data.startswith(fmt.ZIP_MAGIC):
        if not allow_pickle:
            _refuse_pickle(path, data)
        from evoprune_tf.search.checkpoint_legacy import read_pickle_header

        return read_pickle_header(path)
    try:
        header = fmt.read_header_only(data)
    except Exception as error:  # noqa: BLE001 - a foreign or damaged file
        raise _malformed(path, error) from None
    _check_version(path, header.get("format_version"))
    return header


def load_checkpoint(path: str | Path, *, config_dict: dict | None = None, allow_pickle: bool = False) -> Checkpoint:
    """Read a checkpoint and check that it fits; never runs code from the file.

    Args:
        path: a checkpoint file, or a folder holding ``checkpoint.npz``.
        config_dict: when given, the checkpoint must belong to an equivalent config
            (only the budget, display, tracking, checkpoint, report and workers may differ).
        allow_pickle: load an old pickle checkpoint (formats 1 and 2) as older versions
            did. Unpickling runs whatever code the file names: only for a file you trust.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: unreadable, from a newer format, changed since it was written (its
            content does not match its digest), a pickle without ``allow_pickle``, or from
            another config (one line, naming the keys that differ).
    """
    # The individuals are instances of `deap.creator` classes, which exist once the
    # toolbox module has been imported.
    import evoprune_tf.search.toolbox  # noqa: F401

    path = _resolve(path)
    data = _read(path)
    if data.startswith(fmt.ZIP_MAGIC):
        checkpoint = _load_npz(path, data)
    elif allow_pickle:
        from evoprune_tf.search.checkpoint_legacy import load_pickle

        checkpoint = load_pickle(path)
        _check_version(path, checkpoint.format_version)
        checkpoint.digest, checkpoint.path = None, path
    else:
        _refuse_pickle(path, data)
    if config_dict is not None:
        differences = config_differences(checkpoint.config, config_dict)
        if differences:
            shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
            raise ValueError(
                f"checkpoint {path} belongs to another config ({shown}); "
                "expected the run's own config (only the budget, display, tracking and workers may change)"
            )
    return checkpoint


def _load_npz(path: Path, data: bytes) -> Checkpoint:
    try:
        header = fmt.read_header_only(data)
    except Exception as error:  # noqa: BLE001 - a foreign or damaged file
        raise _malformed(path, error) from None
    _check_version(path, header.get("format_version"))
    if header["format_version"] < FORMAT_VERSION:
        raise ValueError(f"checkpoint {path} is a .npz of format {header['format_version']}; "
                         f"expected format {FORMAT_VERSION}")
    try:
        header, body, stored, computed = fmt.read_payload(data)
    except Exception as error:  # noqa: BLE001 - a foreign, damaged or hand-made file
        raise _malformed(path, error) from None
    if stored != computed:
        raise ValueError(f"checkpoint {path} does not match its own digest (stored sha256 {stored[:16]}..., "
                         f"content {computed[:16]}...): the file was changed or damaged; expected a checkpoint "
                         "as its run wrote it")
    try:
        fields = {k: header.get(k) for k in _HEADER_FIELDS}
        checkpoint = Checkpoint(**fields, **{k: body.get(k) for k in _BODY_FIELDS},
                                fitness_cache=fmt.unpack_cache(body.get("fitness_cache")), digest=computed, path=path)
        if not isinstance(checkpoint.state, EvolutionState) or not isinstance(checkpoint.config, dict):
            raise fmt.MalformedCheckpoint("it holds no evolution state or config")
        if not isinstance(checkpoint.evaluator_counters, dict):
            raise fmt.MalformedCheckpoint("its evaluator counters are not an object")
        random.Random().setstate(checkpoint.python_random)  # RNG states that fit, checked on scratch generators
        np.random.RandomState().set_state(checkpoint.numpy_random)
        checkpoint.saved_at = float(checkpoint.saved_at or 0.0)
        checkpoint.keras_loaded = bool(checkpoint.keras_loaded)
    except (TypeError, ValueError) as error:
        raise _malformed(path, error) from None
    return checkpoint

class CheckpointCallback(Callback):
    """Writes a checkpoint every ``every`` generations and at the clean end of the loop.

    Args:
        path: the checkpoint file; None picks ``directory/<run id>/checkpoint.npz`` at the
            start, named after the MLflow run (or the start time without tracking).
        directory: where runs' checkpoint folders go when ``path`` is None.
        config_dict: the run's config (``ExperimentConfig.to_dict()``).
        evaluator: its ``cache`` and counters are saved.
        run_id: a callable returning the MLflow run id (or None).
        every: generations between checkpoints.
        tracking_uri: a callable returning the run's MLflow store URI (or None).
        on_save: called with ``(path, generation, digest)`` after each write (the runner
            tags the MLflow run with them, so ``evoprune resume RUN_ID`` finds the
            checkpoint from any folder, and a stale or swapped copy is refused).
        resumed: the checkpoint this run continues from: at the start its digest is
            reported to ``on_save`` again (the run's tag then names the checkpoint it
            really continues from) and the next checkpoint records it as its predecessor.
    """

    def __init__(self, path: str | Path | None, *, config_dict: dict, evaluator: Any,
                 directory: str | Path = "mlruns/checkpoints",
                 run_id: Callable[[], str | None] = lambda: None, every: int = 1,
                 tracking_uri: Callable[[], str | None] = lambda: None,
                 on_save: Callable[[Path, int, str | None], None] | None = None,
                 resumed: Checkpoint | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.directory = Path(directory)
        self.config_dict = config_dict
        self.evaluator = evaluator
        self.run_id = run_id
        self.every = every
        self.tracking_uri = tracking_uri
        self.on_save = on_save
        self.digest = config_digest(config_dict)
        self.resumed = resumed
        self.last_digest = resumed.digest if resumed is not None else None

    def on_start(self, state: EvolutionState) -> None:
        if self.path is None:
            key = self.run_id() or time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
            self.path = self.directory / key / CHECKPOINT_FILE
        # Absolute: the resume hint and the run's tag must work from any folder.
        self.path = self.path.expanduser().absolute()
        resumed, self.resumed = self.resumed, None
        if resumed is not None and resumed.digest and resumed.path is not None and self.on_save is not None:
            self.on_save(Path(resumed.path).absolute(), int(resumed.state.generation), resumed.digest)

    def save(self, state: EvolutionState) -> Path:
        """Write the checkpoint now."""
        if self.path is None:
            self.on_start(state)
        checkpoint = Checkpoint(
            format_version=FORMAT_VERSION,
            config=self.config_dict,
            config_digest=self.digest,
            run_id=self.run_id(),
            state=state,
            python_random=random.getstate(),
            numpy_random=np.random.get_state(),
            fitness_cache=dict(self.evaluator.cache),
            evaluator_counters={k: getattr(self.evaluator, k) for k in _COUNTERS},
            keras_random=_keras_random_state(),
            saved_at=time.time(),
            keras_loaded="keras" in sys.modules,
            tracking_uri=self.tracking_uri(),
            previous_digest=self.last_digest,
        )
        path = save_checkpoint(self.path, checkpoint)
        self.last_digest = checkpoint.digest
        if self.on_save is not None:
            self.on_save(path, int(state.generation), checkpoint.digest)
        return path

    def on_generation(self, state: EvolutionState) -> None:
        if state.generation % self.every == 0 or state.stop:
            self.save(state)

    def on_end(self, state: EvolutionState, error: BaseException | None = None) -> None:
        # After a failure the state may be mid-generation: the last per-generation
        # checkpoint is the consistent one, so only a clean end writes here.
        if error is None:
            self.save(state)


def restore_rng(checkpoint: Checkpoint) -> None:
    """Put the Python, NumPy (and Keras) global RNGs back where the checkpoint left them.

    When Keras was loaded at checkpoint time it is imported first: ``import keras``
    draws from Python's and NumPy's global RNGs, so importing it after restoring them
    (or later, inside the resumed loop) would move the run onto another trajectory.
    """
    if getattr(checkpoint, "keras_loaded", False) or getattr(checkpoint, "keras_random", None):
        import keras  # noqa: F401
    random.setstate(checkpoint.python_random)
    np.random.set_state(checkpoint.numpy_random)
    _restore_keras_random(getattr(checkpoint, "keras_random", None))


def restore_evaluator(checkpoint: Checkpoint, evaluator: Any) -> None:
    """Refill an evaluator's fitness cache and counters."""
    evaluator.cache.update(checkpoint.fitness_cache)
    for key, value in checkpoint.evaluator_counters.items():
        if key in _COUNTERS:
            setattr(evaluator, key, value)
