"""`RunSession`: what every method's run shares, written once.

Preflight (checkpoint to resume, tracking store, output folders, the method's own
checks), seeding, the MLflow run (params, tags, dataset input, final status FINISHED,
KILLED or FAILED), SIGTERM, checkpoint and resume, the standard callbacks (early stop,
MLflow, checkpoint, progress, then the caller's), the report folder and artifact
logging. A method receives the session in ``run(session)`` and uses what it needs;
`run_method` opens the session, runs the preflight and calls the method.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from evoprune_tf.search.callbacks import Callback, EarlyStop, EvolutionState, ProgressBar
from evoprune_tf.search.checkpoint import (
    CheckpointCallback,
    checkpoint_target,
    load_checkpoint,
    restore_evaluator,
    restore_rng,
)
from evoprune_tf.session.options import seed_everything, tracker_options
from evoprune_tf.session.outputs import check_output_locations, checkpoint_dir, report_files
from evoprune_tf.session.signals import sigterm_raises
from evoprune_tf.tracking import check_tracking_uri, resolve_tracking_uri
from evoprune_tf.tracking.redact import redact_uri
from evoprune_tf.tracking.store import absolute_tracking_uri, check_resumable
from evoprune_tf.tracking.tracker import ConfigArtifact, DatasetInput, MLflowTracker

__all__ = ["RunSession", "run_method"]


class RunSession:
    """One run of one method: config, inputs, MLflow run, checkpoint, callbacks, report folder.

    Attributes:
        config: The run's validated `ExperimentConfig`.
        method: The `evoprune_tf.methods.Method` that runs.
        inputs: What the caller handed in instead of loading it (``features``,
            ``images``, ``network``, ``output_dir``...; each method documents its own).
        out: Stream for the human-readable lines.
        began: ``time.time()`` at the start.
        resumed: The `Checkpoint` being resumed, or None.
        tracker: The `MLflowTracker` once opened (None without tracking).
        checkpointer: The `CheckpointCallback` once made (None without checkpoints).
    """

    def __init__(self, config: Any, method: Any, *, callbacks: Sequence[Callback] = (),
                 checkpoint: str | Path | None = None, out: Any = None, inputs: Mapping[str, Any] | None = None,
                 banner: str = "", allow_pickle: bool = False) -> None:
        self.config = config
        self.method = method
        self.extra_callbacks = list(callbacks)
        self.checkpoint_path = checkpoint
        self.out = out or sys.stdout
        self.inputs = dict(inputs or {})
        self.banner = banner
        self.allow_pickle = allow_pickle
        self.began = time.time()
        self.resumed: Any = None
        self.tracker: MLflowTracker | None = None
        self.checkpointer: CheckpointCallback | None = None

    # ------------------------------------------------------------------ before slow work

    def preflight(self) -> None:
        """Everything that can fail cheaply, before slow work; then seed.

        The checkpoint to resume (it must fit the config), the tracking store (and that the
        resumed MLflow run can continue), every output folder, then the method's `check`;
        then the banner (the Keras backend line) is printed.
        """
        c = self.config
        if self.checkpoint_path:
            self.resumed = load_checkpoint(self.checkpoint_path, config_dict=c.to_dict(), allow_pickle=self.allow_pickle)
        if c.tracking.enabled:
            uri = resolve_tracking_uri(c.tracking.uri)
            check_tracking_uri(uri)
            if self.resumed is not None and self.resumed.run_id:
                check_resumable(self.resumed.run_id, uri, generation=self.resumed.state.generation,
                                recorded_uri=getattr(self.resumed, "tracking_uri", None),
                                digest=self.resumed.digest, previous_digest=self.resumed.previous_digest)
        check_output_locations(
            c, features_cached=not self.method.uses_feature_cache or self.inputs.get("features") is not None,
            checkpoints=self.method.checkpoints,
            writes_report_files=self.method.writes_report_files or self.method.multi_objective)
        self.method.check(self)
        if self.banner:  # after the cheap checks: a bad input is one line
            self.say(self.banner)
        self.seed()

    def seed(self) -> None:
        """Seed Python, NumPy and (when loaded) Keras with ``config.seed``."""
        seed_everything(self.config.seed)

    def say(self, message: str) -> None:
        """Print one human-readable line to the session's stream."""
        print(message, file=self.out)

    # ------------------------------------------------------------------ MLflow

    def open_tracker(self, *, stats: Any = None, name: str | None = None, tags: Mapping[str, str] | None = None,
                     title: str | None = None, **options: Any) -> MLflowTracker | None:
        """The run's `MLflowTracker` (None without tracking); a resumed run continues its MLflow run.

        Args:
            stats: ``stats()`` of the evaluator, logged each generation.
            name: the run name (default ``<name>-<algorithm>-seed<seed>``).
            tags: tags besides the session's and the method's.
            title: title of the run's plots.
            **options: more `MLflowTracker` options (``log_fronts``, ``objective_names``).
        """
        if not self.config.tracking.enabled:
            return None
        kwargs = tracker_options(self.config, tags={**self.method.tags(self.config), **(tags or {})}, name=name,
                                 title=title)
        self.tracker = MLflowTracker(**kwargs, stats=stats, run_id=self.resumed.run_id if self.resumed else None,
                                     **options)
        return self.tracker

    @property
    def run_id(self) -> str | None:
        """The MLflow run id (None without tracking, or before the run started)."""
        return self.tracker.run_id if self.tracker is not None else None

    def tracking_uri(self) -> str | None:
        """The absolute URI of the tracker's store, without password (checkpoints record it)."""
        if self.tracker is None or not self.tracker.uri:
            return None
        # the checkpoint keeps the store without its password (`usable_uri` restores it on resume)
        return redact_uri(absolute_tracking_uri(self.tracker.uri))

    # ------------------------------------------------------------------ callbacks

    def callbacks(self, evaluator: Any, *, early_stop_key: str = "best", dataset: Mapping[str, Any] | None = None,
                  **tracker_options: Any) -> list[Callback]:
        """The standard callbacks in order: early stop, MLflow (+ config, dataset), checkpoint, progress, the caller's.

        Args:
            evaluator: the run's evaluator (``stats()``, fitness cache for checkpoints).
            early_stop_key: the logbook column early stopping watches.
            dataset: the MLflow dataset input (``name``, ``digest``, ``source``, ``profile``).
            **tracker_options: passed to `open_tracker` (``log_fronts``, ``objective_names``).
        """
        c = self.config
        cbs: list[Callback] = []
        if c.algorithm.early_stop:
            cbs.append(EarlyStop(c.algorithm.early_stop, key=early_stop_key))
        tracker = self.open_tracker(stats=evaluator.stats, **tracker_options)
        if tracker is not None:
            cbs.append(tracker)
            cbs.append(ConfigArtifact(tracker, c.to_dict()))  # config.json: `evoprune explain` rebuilds the run from it
            if dataset is not None:
                cbs.append(DatasetInput(tracker, **dataset))
        if self.checkpoint_callback(evaluator) is not None:
            cbs.append(self.checkpointer)
        cbs.append(ProgressBar(stats=evaluator.stats, disable=not c.progress))
        cbs.extend(self.extra_callbacks)
        return cbs

    def checkpoint_callback(self, evaluator: Any) -> CheckpointCallback | None:
        """The run's `CheckpointCallback` (kept as ``checkpointer``); None when the run does not checkpoint.

        Made after `open_tracker`: each write tags the MLflow run with the checkpoint's path,
        step and digest. A method without an evolution loop (TASCNet) calls its ``save``.

        Args:
            evaluator: its ``cache`` and counters (``n_trained``, ``n_cache_hits``,
                ``train_seconds``) are saved.
        """
        c = self.config
        if not (c.checkpoint.enabled and self.method.checkpoints):
            return None
        tracker = self.tracker
        self.checkpointer = CheckpointCallback(
            checkpoint_target(self.checkpoint_path), directory=checkpoint_dir(c), resumed=self.resumed,
            config_dict=c.to_dict(), evaluator=evaluator,
            run_id=lambda: self.run_id, every=c.checkpoint.every, tracking_uri=self.tracking_uri,
            on_save=tracker.checkpoint_saved if tracker else None,
        )
        return self.checkpointer

    def restore(self, evaluator: Any) -> EvolutionState | None:
        """The resumed loop state (None for a fresh run), with the evaluator's cache refilled.

        A run that stopped early (and was killed in its report) stays stopped, as the
        uninterrupted run did; with early stopping turned off it may continue.
        """
        if self.resumed is None:
            return None
        restore_evaluator(self.resumed, evaluator)
        state = self.resumed.state
        state.stop = bool(state.stop and state.info.get("stopped_early") is not None
                          and self.config.algorithm.early_stop)
        return state

    def restore_rng(self) -> None:
        """Put the RNGs back where the checkpoint left them (a resumed run), right before the loop."""
        if self.resumed is not None:
            restore_rng(self.resumed)

    @property
    def checkpoint_file(self) -> Path | None:
        """The checkpoint file of the run (None without checkpoints)."""
        return self.checkpointer.path if self.checkpointer is not None else None

    # ------------------------------------------------------------------ ending

    @contextlib.contextmanager
    def guard(self, stage: str = "Run") -> Iterator[None]:
        """Within the block, an error finishes the MLflow run KILLED (Ctrl-C, SIGTERM) or FAILED.

        When a checkpoint exists, the resume command is printed: ``<stage> stopped (...).
        Resume with: evoprune resume PATH``.
        """
        try:
            yield
        except BaseException as error:
            self.fail(error)
            path = self.checkpoint_file
            if path is not None and path.exists():
                self.say(f"\n{stage} stopped ({type(error).__name__}). Resume with: evoprune resume {path}")
            raise

    def fail(self, error: BaseException) -> None:
        """Finish the MLflow run KILLED (KeyboardInterrupt, SIGTERM) or FAILED."""
        if self.tracker is not None:
            self.tracker.finish(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")

    @contextlib.contextmanager
    def report_folder(self, output_dir: str | Path | None = None) -> Iterator[Path]:
        """The folder of the run's report files (created), for the duration of a block.

        ``output_dir`` when given; else `evoprune_tf.session.outputs.report_folder`
        (``report.dir``, ``<store folder>/reports/<run id>``, or a temporary folder with a
        tracking server, removed when the block ends: log its files inside the block).
        """
        with contextlib.ExitStack() as stack:
            folder = (Path(output_dir) if output_dir is not None
                      else stack.enter_context(report_files(self.config, self.run_id)))
            folder.mkdir(parents=True, exist_ok=True)
            yield folder

    def finish(self, report: Mapping[str, Any] | None = None, *, metrics: Mapping[str, float] | None = None,
               step: int | None = None, artifacts: Sequence[tuple[Path, str | None]] = (),
               models: Mapping[str, Any] | None = None) -> None:
        """Log the report, metrics, artifacts and Keras models, and finish the MLflow run FINISHED.

        Args:
            report: logged as ``report.json``.
            metrics: final metrics (at ``step``).
            step: the step of the final metrics.
            artifacts: ``(path, artifact folder or None)`` pairs.
            models: Keras models by MLflow name.
        """
        if self.tracker is None:
            return
        for path, folder in artifacts:
            self.tracker.log_artifact(path, folder) if folder else self.tracker.log_artifact(path)
        if metrics:
            self.tracker.log_metrics(dict(metrics), step=step)
        if report is not None:
            self.tracker.log_report(report)
        for name, model in (models or {}).items():
            self.tracker.log_keras_model(model, name=name)
        self.tracker.finish()
        self.say(f"MLflow run {self.tracker.run_id} in {redact_uri(self.tracker.uri)}")

    @property
    def elapsed(self) -> float:
        """Seconds since the session began."""
        return time.time() - self.began


def run_method(config: Any, method: Any, *, callbacks: Sequence[Callback] = (), checkpoint: str | Path | None = None,
               out: Any = None, banner: str = "", allow_pickle: bool = False, **inputs: Any) -> Any:
    """Run ``method`` on ``config`` in a new `RunSession`: preflight, then ``method.run(session)``.

    SIGTERM raises `evoprune_tf.session.signals.Terminated` (a KeyboardInterrupt) while it
    runs, so a terminated run ends KILLED with its checkpoint kept, as after Ctrl-C.

    Args:
        config: a validated `ExperimentConfig`.
        method: the `evoprune_tf.methods.Method` (`evoprune_tf.methods.get_method`).
        callbacks: extra callbacks, called after the built-in ones.
        checkpoint: resume from this checkpoint (file or folder) instead of starting.
        out: stream for the human-readable lines (default stdout).
        banner: a line printed once the preflight checks passed (the Keras backend line).
        allow_pickle: resume from an old pickle checkpoint (only one you trust: unpickling
            can run code); data-only checkpoints need no permission.
        **inputs: what the method may take instead of loading it (see the method).

    Returns:
        What the method returns.
    """
    session = RunSession(config, method, callbacks=callbacks, checkpoint=checkpoint, out=out, inputs=inputs,
                         banner=banner, allow_pickle=allow_pickle)
    with sigterm_raises():
        session.preflight()
        return method.run(session)
