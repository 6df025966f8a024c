"""`run(config)` and `resume(target)`: the method that ``algorithm.name`` selects, in a run session.

Every method runs the same way: the Keras backend is chosen first (before Keras is
imported), the method is looked up in the registry (`evoprune_tf.methods.get_method`),
and `evoprune_tf.session.run_method` opens the session (preflight, seeding, MLflow run,
SIGTERM, checkpoint/resume, callbacks) and calls the method's ``run``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from evoprune_tf.experiment.config import ExperimentConfig, config_from_dict, merge, use_backend, use_backend_for_dict
from evoprune_tf.experiment.trust import check_stored_modules
from evoprune_tf.methods import get_method
from evoprune_tf.methods.head.run import RunResult, summary_metrics
from evoprune_tf.search.callbacks import Callback
from evoprune_tf.search.checkpoint import load_checkpoint
from evoprune_tf.search.run_lock import run_lock
from evoprune_tf.session import run_method
from evoprune_tf.tracking.checkpoints import find_checkpoint, recorded_store

__all__ = ["RunResult", "run", "resume", "summary_metrics"]


def run(
    config: ExperimentConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    out: Any = None,
    allow_pickle: bool = False,
    **inputs: Any,
) -> Any:
    """Run the method ``config.algorithm.name`` selects.

    Args:
        config: a validated `ExperimentConfig` (see `evoprune_tf.experiment.config.load_config`).
        callbacks: extra callbacks, called after the built-in ones.
        checkpoint: resume from this checkpoint (file or folder) instead of starting.
        out: stream for the human-readable lines (default stdout).
        allow_pickle: resume from an old pickle checkpoint (only one you trust: unpickling
            can run code); data-only checkpoints need no permission.
        **inputs: what the method takes instead of loading it: ``features`` and
            ``ood_features`` for the head methods (tests, notebooks); ``images``,
            ``network``, ``output_dir``, ``head_epochs`` for DeepPruningES; ``out_dir``,
            ``progress`` for TASCNet.

    Returns:
        The method's result: a `RunResult` for the head methods, a `FilterRunResult` for
        DeepPruningES, the report dict for TASCNet; with tracking on, everything is also in
        the MLflow run.

    Raises:
        ValueError: bad input, e.g. ``train.backend`` names a backend that is not installed.
    """
    # Before anything imports Keras: its backend is fixed per process at the first import. The
    # line saying so is printed once the cheap input checks passed: a bad input is one line.
    banner = use_backend(config).line
    return run_method(config, get_method(config.algorithm.name), callbacks=callbacks, checkpoint=checkpoint,
                      out=out or sys.stdout, banner=banner, allow_pickle=allow_pickle, **inputs)


def resume(target: str | Path, *, config: ExperimentConfig | None = None, plugins: Sequence[str] = (),
           trust_plugins: bool = False, allow_pickle: bool = False, **kwargs: Any) -> Any:
    """Continue a run from its checkpoint (the config stored in it unless one is given).

    Args:
        target: the checkpoint file or folder, or the MLflow run id (or a unique prefix)
            of the run that wrote it, as ``evoprune resume`` takes
            (`evoprune_tf.tracking.checkpoints.find_checkpoint`).
        config: run with this config instead of the checkpoint's. Without one, a run whose
            config names no store continues in the store it was logged to (unless
            ``$MLFLOW_TRACKING_URI`` names one), as ``evoprune resume`` does.
        plugins: modules the checkpoint's stored config may import (`evoprune_tf.experiment.trust`).
        trust_plugins: it may import every module it names.
        allow_pickle: accept an old pickle checkpoint (formats 1 and 2, older versions).
            Unpickling can run code: only for a file you trust. Data-only checkpoints
            need no permission.
        **kwargs: passed to `run` (``callbacks``, ``features``, ``out``...).

    Returns:
        What `run` returns.

    Raises:
        FileNotFoundError: no checkpoint at ``target`` and no run with that id that has one.
        ValueError: one line: the stored config names a module not allowed, or does not
            validate; a pickle checkpoint without ``allow_pickle``; a file that does not
            match its digest or the run's tag; another process is resuming the same run
            (`evoprune_tf.search.run_lock`).
    """
    path = find_checkpoint(target)
    checkpoint = load_checkpoint(path, allow_pickle=allow_pickle)
    if config is None:
        source = f"config of checkpoint {path}"
        stored = merge(checkpoint.config, recorded_store(checkpoint))
        check_stored_modules(stored, source, allowed=plugins, trust=trust_plugins)
        use_backend_for_dict(stored)  # before validation may import Keras, as `evoprune resume`
        config = config_from_dict(stored, source=source)
    with run_lock(path):  # a second resume of this run is refused in one line
        return run(config, checkpoint=path, allow_pickle=allow_pickle, **kwargs)
