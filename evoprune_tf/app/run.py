"""`run(config)`: one evolution from images to a tracked, reported, exported result.

data -> backbone features (cached) -> evaluator -> toolbox -> algorithm with callbacks
(progress, MLflow, checkpoint, early stop) -> final report on test -> MLflow artifacts.
Checks that cost nothing (config, tracking store) run before anything long starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

from evoprune_tf.report.pareto import pareto_report
from evoprune_tf.report.single import final_report, format_report, report_recipe
from evoprune_tf.runners import make_runner, resolve_runner_name
from evoprune_tf.search import algorithms
from evoprune_tf.search.baselines import BASELINES
from evoprune_tf.search.callbacks import Callback, EarlyStop, ProgressBar
from evoprune_tf.search.run_lock import run_lock
from evoprune_tf.search.checkpoint import (
    CheckpointCallback,
    checkpoint_target,
    load_checkpoint,
    restore_evaluator,
    restore_rng,
)
from evoprune_tf.app.filters_run import run_filter_pruning
from evoprune_tf.app.trust import check_stored_modules
from evoprune_tf.app.tascnet_run import results_table, run_tascnet
from evoprune_tf.app.build import (
    check_budget,
    initial_population,
    make_evaluator,
    make_toolbox,
    pareto_options,
    prepare_features,
    rescoring_evaluator,
    seed_everything,
    tracker_options,
)
from evoprune_tf.app.config import (
    ExperimentConfig,
    check_output_locations,
    checkpoint_dir,
    config_from_dict,
    merge,
    report_files,
    use_backend,
    use_backend_for_dict,
)
from evoprune_tf.data.download import check_download
from evoprune_tf.data.images import is_named_source
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.features.extract import check_imagenet_weights
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.search.statistics import make_front_record
from evoprune_tf.tracking import check_tracking_uri, resolve_tracking_uri
from evoprune_tf.tracking.checkpoints import find_checkpoint, recorded_store
from evoprune_tf.tracking.redact import redact_uri
from evoprune_tf.tracking.store import absolute_tracking_uri, check_resumable
from evoprune_tf.tracking.tracker import ConfigArtifact, DatasetInput, MLflowTracker

__all__ = ["RunResult", "run", "resume", "summary_metrics"]


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
    if a.name == "random_search":
        return algorithms.random_search(population, toolbox, evaluations=a.evaluations, **common)
    if a.name in BASELINES:
        return algorithms.evaluate_genomes(population, toolbox, **common)
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
    allow_pickle: bool = False,
) -> RunResult:
    """Run one evolution described by ``config``.

    Args:
        config: a validated `ExperimentConfig` (see `evoprune_tf.app.config.load_config`).
        callbacks: extra callbacks, called after the built-in ones.
        checkpoint: resume from this checkpoint (file or folder) instead of starting.
        features: use these features instead of loading images (tests, notebooks).
        ood_features: OOD features to go with ``features``.
        out: stream for the human-readable lines (default stdout).
        allow_pickle: resume from an old pickle checkpoint (only one you trust: unpickling
            can run code); data-only checkpoints need no permission.

    Returns:
        A `RunResult`; with tracking on, everything is also in the MLflow run.

    Raises:
        ValueError: bad input, e.g. ``train.backend`` names a backend that is not installed.
    """
    # Before anything imports Keras: its backend is fixed per process at the first import.
    # The line saying so is printed once the cheap input checks passed: a bad input is one line.
    banner = use_backend(config).line
    if config.algorithm.name == "tascnet":  # structure learning + trajectory-similarity pruning: its own pipeline
        print(banner, file=out or sys.stdout)
        report = run_tascnet(config)
        print(results_table([report]), file=out or sys.stdout)  # as the other methods: the report and the run id
        if report.get("mlflow_run_id"):
            print(f"MLflow run {report['mlflow_run_id']} in {resolve_tracking_uri(config.tracking.uri)}",
                  file=out or sys.stdout)
        return report
    if config.algorithm.name == "deep_pruning_es":  # filter pruning inside the backbone: its own pipeline
        return run_filter_pruning(config, callbacks=callbacks, checkpoint=checkpoint, out=out, banner=banner,
                                  allow_pickle=allow_pickle)
    out = out or sys.stdout
    began = time.time()
    resumed = (load_checkpoint(checkpoint, config_dict=config.to_dict(), allow_pickle=allow_pickle)
               if checkpoint else None)
    tracker = None
    if config.tracking.enabled:
        check_tracking_uri(resolve_tracking_uri(config.tracking.uri))
        if resumed is not None and resumed.run_id:
            check_resumable(resumed.run_id, resolve_tracking_uri(config.tracking.uri),
                            generation=resumed.state.generation, recorded_uri=getattr(resumed, "tracking_uri", None),
                            digest=resumed.digest, previous_digest=resumed.previous_digest)
    check_output_locations(config, features_cached=features is not None)  # before the slow work, not after it
    if features is None:
        _check_inputs(config)
    print(banner, file=out)
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
    if resolve_runner_name(config.runner, config.workers) != "serial":  # serial: the evaluator's own batched map
        pool = make_runner(config.runner, evaluator, workers=config.workers, address=config.ray_address or None,
                           num_gpus=config.num_gpus)
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
        population = initial_population(config, toolbox, evaluator)
    record = algorithms.default_record
    if config.multi_objective:
        record = make_front_record()
    cbs: list[Callback] = []
    if config.algorithm.early_stop:
        cbs.append(EarlyStop(config.algorithm.early_stop))
    if config.tracking.enabled:
        tracker = MLflowTracker(
            **tracker_options(config), stats=evaluator.stats, run_id=resumed.run_id if resumed else None,
            log_fronts=config.multi_objective, objective_names=list(config.objectives.names),
        )
        cbs.append(tracker)
        cbs.append(ConfigArtifact(tracker, config.to_dict()))  # config.json: `evoprune explain` rebuilds the run from it
        cbs.append(DatasetInput(tracker, **_dataset_record(config, features, images)))
    ckpt = None
    if config.checkpoint.enabled:
        ckpt = CheckpointCallback(
            checkpoint_target(checkpoint), directory=checkpoint_dir(config), resumed=resumed,
            config_dict=config.to_dict(), evaluator=evaluator,
            run_id=lambda: tracker.run_id if tracker else None, every=config.checkpoint.every,
            # the checkpoint keeps the store without its password (`usable_uri` restores it on resume)
            tracking_uri=lambda: redact_uri(absolute_tracking_uri(tracker.uri)) if tracker and tracker.uri else None,
            on_save=tracker.checkpoint_saved if tracker else None,
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
        if tracker is not None:  # a failure before the loop's own on_end must not leave the run RUNNING
            tracker.finish(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        if ckpt is not None and ckpt.path is not None and ckpt.path.exists():
            print(f"\nRun stopped ({type(error).__name__}). Resume with: evoprune resume {ckpt.path}", file=out)
        raise
    finally:
        if pool is not None:
            pool.close()
    best = np.asarray(halloffame[0])
    report: dict = {}
    try:
        rescore = None
        if config.report.rescore_folds and not config.multi_objective:
            best, rescore = _rescore(config, evaluator, halloffame, out)
        report, model = _report(config, evaluator, features, best, halloffame, ood_features, tracker, out, images)
        if rescore is not None:
            report["rescore"] = rescore
        report["search"] = {
            "evaluations": int(logbook[-1]["evaluations"]), "generations": int(logbook[-1]["gen"]),
            "trained": evaluator.n_trained, "cache_hits": evaluator.n_cache_hits,
            "train_seconds": round(evaluator.train_seconds, 2), "wall_seconds": round(time.time() - began, 2),
            "best_fitness": list(map(float, halloffame[0].fitness.values)),
        }
        if tracker is not None:
            tracker.log_report(report)
            tracker.log_metrics(summary_metrics(report))
            if model is not None:
                tracker.log_keras_model(model, name="compact_model")
            tracker.finish()
            print(f"MLflow run {tracker.run_id} in {redact_uri(tracker.uri)}", file=out)
    except BaseException as error:
        if tracker is not None:
            tracker.finish(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        if ckpt is not None and ckpt.path is not None and ckpt.path.exists():  # the search is saved: redo the report
            print(f"\nReport stopped ({type(error).__name__}). Resume with: evoprune resume {ckpt.path}", file=out)
        raise
    return RunResult(config, features, evaluator, population, logbook, halloffame, report,
                     tracker.run_id if tracker else None, ckpt.path if ckpt else None, time.time() - began)


def _check_inputs(config: ExperimentConfig) -> None:
    """Input checks that cost little, before any image is read (each a one-line ValueError)."""
    source = config.data.source
    folder = Path(source).expanduser()
    if ":" not in source and (not folder.exists() or (folder.is_dir() and sum(p.is_dir() for p in folder.iterdir()) < 2)):
        return  # a missing or classless dataset: the loader names it cheaply, and that comes first
    check_budget(config)  # encoding.active above the genome length, before the features are extracted
    ood = config.objectives.ood
    if ood and not is_named_source(ood) and not Path(ood).expanduser().exists():
        raise ValueError(f"OOD source objectives.ood={ood!r} does not exist; expected a folder, .npz or tfds:NAME")
    for named in (source, ood):
        if named and named.startswith("download:"):  # a HEAD request, not the download
            check_download(named[len("download:"):].strip())
    if config.backbone.weights == "imagenet":
        check_imagenet_weights(config.backbone.name, image_size=config.data.image_size or None,
                               options=config.backbone.options)


def _dataset_record(config: ExperimentConfig, features: FeatureSplits, images: Any) -> dict:
    """What the MLflow dataset input of a run holds: name, content digest, source, split sizes."""
    if images is not None and hasattr(images, "content_hash"):
        digest = images.content_hash()
    else:  # features handed in: their bytes identify them
        h = hashlib.sha256()
        for x in (features.x_train, features.y_train, features.x_val, features.y_val, features.x_test, features.y_test):
            h.update(np.ascontiguousarray(x).tobytes())
        digest = h.hexdigest()
    profile = {"train": len(features.y_train), "val": len(features.y_val), "test": len(features.y_test),
               "classes": features.n_classes, "features": features.n_features}
    return dict(name=config.data.name or features.name or config.data.source, digest=digest,
                source=config.data.source, profile=profile)


def _rescore(config: ExperimentConfig, evaluator: PopulationEvaluator, halloffame, out) -> tuple[np.ndarray, dict]:
    """Re-score the hall of fame by k-fold CV on partitions the search never used; the best becomes the winner.

    Test stays untouched: the partitions cover train+validation only.
    """
    members = [np.asarray(ind) for ind in halloffame]
    rescorer = rescoring_evaluator(config, evaluator)
    fitness = rescorer.evaluate_population(members)
    weights = np.asarray(rescorer.weights)
    chosen = max(range(len(members)), key=lambda i: tuple(weights * np.asarray(fitness[i])))
    print(f"Re-scored {len(members)} hall-of-fame members by {config.report.rescore_folds}-fold CV: "
          f"member {chosen} wins ({fitness[chosen][0]:.4f} vs {fitness[0][0]:.4f} for the search's best)", file=out)
    return members[chosen], {
        "folds": config.report.rescore_folds, "chosen": chosen, "seconds": round(rescorer.train_seconds, 2),
        "members": [{"search_fitness": list(map(float, ind.fitness.values)), "rescore_fitness": list(map(float, f)),
                     "active_fraction": float(np.mean(m))} for ind, m, f in zip(halloffame, members, fitness)],
    }


def _report(config: ExperimentConfig, evaluator: PopulationEvaluator, features: FeatureSplits, best: np.ndarray,
            halloffame: Any, ood: np.ndarray | None, tracker: MLflowTracker | None, out: TextIO,
            images: Any = None) -> tuple[dict, Any]:
    """The single-model report, and for multi-objective runs the Pareto report in `report_folder`."""
    recipe = report_recipe(config.train, config.report.recipe)
    report, model = final_report(
        evaluator.encoding, features, best, recipe, seed=config.seed, seeds=config.report.seeds,
        export=config.report.export_model, chance=config.report.chance,
    )
    print(format_report(report), file=out)
    if config.multi_objective:
        with report_files(config, tracker.run_id if tracker else None) as folder:
            report["pareto"] = pareto_report(
                pareto_options(config), evaluator, features, list(halloffame), ood, recipe, images=images,
                tracker=tracker, out=out, local_dir=folder)
    return report, model


def summary_metrics(report: dict) -> dict[str, float]:
    """The final numbers of a run as flat MLflow metrics, for `mlflow.search_runs` and `evoprune compare`.

    ``test_accuracy_mean`` / ``test_accuracy_std`` (the winner retrained over the report
    seeds, scored on test), ``val_accuracy_mean``, the unpruned head's
    ``unpruned_test_accuracy_mean``, the random mask of the winner's size
    ``random_test_accuracy_mean`` / ``random_test_accuracy_std`` (``report.chance``),
    ``active_percent``, ``params`` (the compact model) and ``wall_seconds``; keys whose
    value the report lacks are left out.
    """
    pruned, unpruned, chance = report.get("pruned", {}), report.get("unpruned", {}), report.get("random", {})
    values = {
        "test_accuracy_mean": pruned.get("test_accuracy_mean"),
        "test_accuracy_std": pruned.get("test_accuracy_std"),
        "val_accuracy_mean": pruned.get("val_accuracy_mean"),
        "unpruned_test_accuracy_mean": unpruned.get("test_accuracy_mean"),
        "random_test_accuracy_mean": chance.get("test_accuracy_mean"),
        "random_test_accuracy_std": chance.get("test_accuracy_std"),
        "active_percent": report.get("active_percent"),
        "params": report.get("parameters", {}).get("compact_model", report.get("parameters", {}).get("pruned_head")),
        "wall_seconds": report.get("search", {}).get("wall_seconds"),
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def resume(target: str | Path, *, config: ExperimentConfig | None = None, plugins: Sequence[str] = (),
           trust_plugins: bool = False, allow_pickle: bool = False, **kwargs) -> RunResult:
    """Continue a run from its checkpoint (the config stored in it unless one is given).

    Args:
        target: the checkpoint file or folder, or the MLflow run id (or a unique prefix)
            of the run that wrote it, as ``evoprune resume`` takes
            (`evoprune_tf.tracking.checkpoints.find_checkpoint`).
        config: run with this config instead of the checkpoint's. Without one, a run whose
            config names no store continues in the store it was logged to (unless
            ``$MLFLOW_TRACKING_URI`` names one), as ``evoprune resume`` does.
        plugins: modules the checkpoint's stored config may import (`evoprune_tf.app.trust`).
        trust_plugins: it may import every module it names.
        allow_pickle: accept an old pickle checkpoint (formats 1 and 2, older versions).
            Unpickling can run code: only for a file you trust. Data-only checkpoints
            need no permission.
        **kwargs: passed to `run` (``callbacks``, ``features``, ``out``...).

    Returns:
        The `RunResult`.

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
