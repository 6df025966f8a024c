"""Checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the `EvolutionState` (population, hall of fame / Pareto archive,
logbook, generation and evaluation counters), the Python and NumPy RNG states, the
evaluator's fitness cache, the MLflow run id and the config it belongs to. It is
written atomically (temporary file in the same folder, then ``os.replace``) after every
``every`` generations, so a run killed at any moment leaves either the previous or the
new checkpoint, never a torn one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoprune_tf.callbacks import Callback, EvolutionState

__all__ = ["FORMAT_VERSION", "Checkpoint", "CheckpointCallback", "save_checkpoint", "load_checkpoint", "config_digest"]

FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pkl"


def config_digest(config_dict: dict) -> str:
    """A stable hash of the parts of a config that change the search's results.

    The budget, progress display, tracking and checkpoint settings are left out: a run
    may be resumed with a larger budget or another display and still be the same run.
    """
    relevant = {k: v for k, v in config_dict.items() if k not in ("progress", "tracking", "checkpoint", "report", "cache_dir")}
    algorithm = dict(relevant.get("algorithm", {}))
    for key in ("evaluations", "generations", "early_stop"):
        algorithm.pop(key, None)
    relevant["algorithm"] = algorithm
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclasses.dataclass
class Checkpoint:
    """The content of a checkpoint file."""

    format_version: int
    config: dict
    config_digest: str
    run_id: str | None
    state: EvolutionState
    python_random: Any
    numpy_random: Any
    fitness_cache: dict
    evaluator_counters: dict


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(checkpoint, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, config_dict: dict | None = None) -> Checkpoint:
    """Read a checkpoint and check that it fits.

    Args:
        path: a checkpoint file, or a folder holding ``checkpoint.pkl``.
        config_dict: when given, the checkpoint must belong to an equivalent config.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: unreadable, from a newer format, or from another config.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; expected a checkpoint.pkl written by a run")
    try:
        with open(path, "rb") as f:
            checkpoint = pickle.load(f)
    except Exception as error:  # a foreign or damaged file
        raise ValueError(f"checkpoint {path} is unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, Checkpoint):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}; expected an evoprune_tf checkpoint")
    if checkpoint.format_version > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format {checkpoint.format_version}; this evoprune_tf reads up to {FORMAT_VERSION}"
        )
    if config_dict is not None and config_digest(config_dict) != checkpoint.config_digest:
        raise ValueError(
            f"checkpoint {path} belongs to another config (digest {checkpoint.config_digest}, "
            f"this config {config_digest(config_dict)}); resume with the run's own config"
        )
    return checkpoint


class CheckpointCallback(Callback):
    """Writes a checkpoint every ``every`` generations (and at the end, also on failure).

    Args:
        path: the checkpoint file; None picks ``directory/<run id>/checkpoint.pkl`` at the
            start, named after the MLflow run (or the start time without tracking).
        directory: where runs' checkpoint folders go when ``path`` is None.
        config_dict: the run's config (``ExperimentConfig.to_dict()``).
        evaluator: its ``cache`` and counters are saved.
        run_id: a callable returning the MLflow run id (or None).
        every: generations between checkpoints.
    """

    def __init__(self, path: str | Path | None, *, config_dict: dict, evaluator: Any,
                 directory: str | Path = "mlruns/checkpoints",
                 run_id: Callable[[], str | None] = lambda: None, every: int = 1) -> None:
        self.path = Path(path) if path is not None else None
        self.directory = Path(directory)
        self.config_dict = config_dict
        self.evaluator = evaluator
        self.run_id = run_id
        self.every = every
        self.digest = config_digest(config_dict)

    def on_start(self, state: EvolutionState) -> None:
        if self.path is None:
            key = self.run_id() or time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
            self.path = self.directory / key / CHECKPOINT_FILE

    def save(self, state: EvolutionState) -> Path:
        """Write the checkpoint now."""
        return save_checkpoint(self.path, Checkpoint(
            format_version=FORMAT_VERSION,
            config=self.config_dict,
            config_digest=self.digest,
            run_id=self.run_id(),
            state=state,
            python_random=random.getstate(),
            numpy_random=np.random.get_state(),
            fitness_cache=dict(self.evaluator.cache),
            evaluator_counters={k: getattr(self.evaluator, k) for k in ("n_trained", "n_cache_hits", "train_seconds")},
        ))

    def on_generation(self, state: EvolutionState) -> None:
        if state.generation % self.every == 0 or state.stop:
            self.save(state)

    def on_end(self, state: EvolutionState, error: BaseException | None = None) -> None:
        # After a failure the state may be mid-generation: the last per-generation
        # checkpoint is the consistent one, so only a clean end writes here.
        if error is None:
            self.save(state)


def restore_rng(checkpoint: Checkpoint) -> None:
    """Put the Python and NumPy global RNGs back where the checkpoint left them."""
    random.setstate(checkpoint.python_random)
    np.random.set_state(checkpoint.numpy_random)


def restore_evaluator(checkpoint: Checkpoint, evaluator: Any) -> None:
    """Refill an evaluator's fitness cache and counters."""
    evaluator.cache.update(checkpoint.fitness_cache)
    for key, value in checkpoint.evaluator_counters.items():
        setattr(evaluator, key, value)
