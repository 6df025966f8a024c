"""`run(config)`: one evolution from images to a tracked, reported, exported result.

data -> backbone features (cached) -> evaluator -> toolbox -> algorithm with callbacks
(progress, MLflow, checkpoint, early stop) -> final report on test -> MLflow artifacts.
Checks that cost nothing (config, tracking store) run before anything long starts.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evoprune_tf.search import algorithms
from evoprune_tf.search.callbacks import Callback, EarlyStop, ProgressBar
from evoprune_tf.search.checkpoint import (
    CheckpointCallback,
    load_checkpoint,
    restore_evaluator,
    restore_rng,
)
from evoprune_tf.app.build import make_evaluator, make_toolbox, prepare_features, seed_everything, tracker_options
from evoprune_tf.app.config import ExperimentConfig
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.features.splits import FeatureSplits

__all__ = ["RunResult", "run", "resume"]


@dataclasses.dataclass
class RunResult:
    """What a run returns (and logs to MLflow)."""

    config: ExperimentConfig
    features: FeatureSplits
    evaluator: PopulationEvaluator
    population: list
    logbook: Any
    halloffame: Any
    report: dict
    run_id: str | None
    checkpoint: Path | None
    seconds: float

    @property
    def best(self) -> np.ndarray:
        """The best genome found (first of the hall of fame / Pareto front)."""
        return np.asarray(self.halloffame[0])


def _run_algorithm(config: ExperimentConfig, toolbox, population, hof, callbacks, record, state):
    a = config.algorithm
    common = dict(halloffame=hof, callbacks=callbacks, record=record, state=state)
    if a.name == "steady_state":
        return algorithms.steady_state_ga(
            population, toolbox, evaluations=a.evaluations, children_per_step=a.children_per_step, cxpb=a.cxpb,
            mutpb=a.mutpb, report_every=a.report_every or None, **common)
    if a.name in ("nsga2", "nsga3"):
        return algorithms.nsga2(
            population, toolbox, evaluations=a.evaluations, children_per_step=a.children_per_step, cxpb=a.cxpb,
            mutpb=a.mutpb, report_every=a.report_every or None, **common)
    if a.name == "ea_simple":
        return algorithms.ea_simple(population, toolbox, a.cxpb, a.mutpb, a.generations, **common)
    mu, lambda_ = a.mu or a.population, a.lambda_ or a.population
    return algorithms.mu_plus_lambda(population, toolbox, mu, lambda_, a.cxpb, a.mutpb, a.generations, **common)


def run(
    config: ExperimentConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    features: FeatureSplits | None = None,
    ood_features: np.ndarray | None = None,
    out=None,
) -> RunResult:
    """Run one evolution described by ``config``.

    Args:
        config: a validated `ExperimentConfig` (see `evoprune_tf.app.config.load_config`).
        callbacks: extra callbacks, called after the built-in ones.
        checkpoint: resume from this checkpoint (file or folder) instead of starting.
        features: use these features instead of loading images (tests, notebooks).
        ood_features: OOD features to go with ``features``.
        out: stream for the human-readable lines (default stdout).

    Returns:
        A `RunResult`; with tracking on, everything is also in the MLflow run.
    """
    out = out or sys.stdout
    began = time.time()
    resumed = load_checkpoint(checkpoint, config_dict=config.to_dict()) if checkpoint else None
    tracker = None
    if config.tracking.enabled:
        from evoprune_tf.tracking import check_tracking_uri, resolve_tracking_uri

        check_tracking_uri(resolve_tracking_uri(config.tracking.uri))
    seed_everything(config.seed)
    images = None
    if features is None:
        features, ood_features, images = prepare_features(config)
        if getattr(images, "skipped", None):
            print(images.summary(), file=out)  # counts the unreadable images --skip-bad-images skipped
    print(features.summary(), file=out)
    evaluator = make_evaluator(config, features, ood_features)
    toolbox = make_toolbox(config, evaluator)
    pool = None
    if config.workers > 1:
        from evoprune_tf.runners.processes import ProcessPoolMap

        pool = ProcessPoolMap(evaluator, workers=config.workers)
        toolbox.register("map", pool.map)
    seed_everything(config.seed)  # extraction may have drawn random numbers
    state = None
    population = None
    if resumed is not None:
        restore_evaluator(resumed, evaluator)
        state = resumed.state
        # A run that stopped early (and was killed in its report) stays stopped, as the
        # uninterrupted run did; with early stopping turned off it may continue.
        state.stop = bool(state.stop and state.info.get("stopped_early") is not None and config.algorithm.early_stop)
    else:
        population = toolbox.population(n=config.algorithm.population)
        if config.operators.seed_unpruned:
            population[0][:] = 1
    record = algorithms.default_record
    if config.multi_objective:
        from evoprune_tf.search.statistics import make_front_record

        record = make_front_record()
    cbs: list[Callback] = []
    if config.algorithm.early_stop:
        cbs.append(EarlyStop(config.algorithm.early_stop))
    if config.tracking.enabled:
        from evoprune_tf.tracking.tracker import ConfigArtifact, MLflowTracker

        tracker = MLflowTracker(
            **tracker_options(config), stats=evaluator.stats, run_id=resumed.run_id if resumed else None,
            log_fronts=config.multi_objective, objective_names=list(config.objectives.names),
        )
        cbs.append(tracker)
        cbs.append(ConfigArtifact(tracker, config.to_dict()))  # config.json: `evoprune explain` rebuilds the run from it
    ckpt = None
    if config.checkpoint.enabled:
        ckpt_path = Path(checkpoint) if checkpoint else None
        if ckpt_path is not None and ckpt_path.is_dir():
            ckpt_path = ckpt_path / "checkpoint.pkl"
        ckpt = CheckpointCallback(
            ckpt_path, directory=config.checkpoint.dir or Path("mlruns") / "checkpoints",
            config_dict=config.to_dict(), evaluator=evaluator,
            run_id=lambda: tracker.run_id if tracker else None, every=config.checkpoint.every,
        )
        cbs.append(ckpt)
    cbs.append(ProgressBar(stats=evaluator.stats, disable=not config.progress))
    cbs.extend(callbacks)
    if resumed is not None:
        restore_rng(resumed)
    halloffame = state.halloffame if state else algorithms.new_halloffame(
        config.multi_objective, config.algorithm.hall_of_fame)
    try:
        population, logbook = _run_algorithm(config, toolbox, population, halloffame, cbs, record, state)
    except BaseException as error:
        if ckpt is not None and ckpt.path is not None and ckpt.path.exists():
            print(f"\nRun stopped ({type(error).__name__}). Resume with: evoprune resume {ckpt.path}", file=out)
        raise
    finally:
        if pool is not None:
            pool.close()
    best = np.asarray(halloffame[0])
    report: dict = {}
    try:
        report, model = _report(config, evaluator, features, best, halloffame, ood_features, tracker, out, images)
        report["search"] = {
            "evaluations": int(logbook[-1]["evaluations"]), "generations": int(logbook[-1]["gen"]),
            "trained": evaluator.n_trained, "cache_hits": evaluator.n_cache_hits,
            "train_seconds": round(evaluator.train_seconds, 2), "wall_seconds": round(time.time() - began, 2),
            "best_fitness": list(map(float, halloffame[0].fitness.values)),
        }
        if tracker is not None:
            tracker.log_report(report)
            if model is not None:
                tracker.log_keras_model(model, name="compact_model")
            tracker.finish()
            print(f"MLflow run {tracker.run_id} in {tracker.uri}", file=out)
    except BaseException as error:
        if tracker is not None:
            tracker.finish(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        if ckpt is not None and ckpt.path is not None and ckpt.path.exists():  # the search is saved: redo the report
            print(f"\nReport stopped ({type(error).__name__}). Resume with: evoprune resume {ckpt.path}", file=out)
        raise
    return RunResult(config, features, evaluator, population, logbook, halloffame, report,
                     tracker.run_id if tracker else None, ckpt.path if ckpt else None, time.time() - began)


def _report(config, evaluator, features, best, halloffame, ood, tracker, out, images=None) -> tuple[dict, Any]:
    from evoprune_tf.report.single import final_report, format_report
    from evoprune_tf.train.numpy_engine import TrainConfig

    recipe = config.train if config.report.recipe == "search" else TrainConfig.reference()
    report, model = final_report(
        evaluator.encoding, features, best, recipe, seed=config.seed, seeds=config.report.seeds,
        export=config.report.export_model,
    )
    print(format_report(report), file=out)
    if config.multi_objective:
        from evoprune_tf.report.pareto import pareto_report

        report["pareto"] = pareto_report(
            config, evaluator, features, list(halloffame), ood, recipe, images=images, tracker=tracker, out=out)
    return report, model


def resume(path: str | Path, *, config: ExperimentConfig | None = None, **kwargs) -> RunResult:
    """Continue a run from its checkpoint (the config stored in it unless one is given)."""
    from evoprune_tf.app.config import config_from_dict

    checkpoint = load_checkpoint(path)
    if config is None:
        config = config_from_dict(checkpoint.config, source=f"config of {path}")
    return run(config, checkpoint=path, **kwargs)
