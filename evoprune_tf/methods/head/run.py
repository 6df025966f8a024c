"""EvoPruneDeepTL's pipeline, shared by every head method: images to a tracked, reported, exported result.

data -> backbone features (cached) -> evaluator -> toolbox -> the method's loop with the
session's callbacks (progress, MLflow, checkpoint, early stop) -> final report on test ->
MLflow artifacts. The cheap input checks (`check_inputs`) run in the session's preflight.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from evoprune_tf.data.download import check_download
from evoprune_tf.data.images import is_named_source
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.features.extract import check_imagenet_weights
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.methods.head.build import (
    check_budget,
    head_title,
    initial_population,
    make_evaluator,
    make_toolbox,
    pareto_options,
    prepare_features,
    rescoring_evaluator,
)
from evoprune_tf.report.pareto import pareto_report
from evoprune_tf.report.single import final_report, format_report, report_recipe
from evoprune_tf.runners import make_runner, resolve_runner_name
from evoprune_tf.search import algorithms
from evoprune_tf.search.statistics import make_front_record
from evoprune_tf.session import report_files
from evoprune_tf.tracking.tracker import MLflowTracker

__all__ = ["RunResult", "check_inputs", "run_head", "summary_metrics"]


@dataclasses.dataclass
class RunResult:
    """What a run returns (and logs to MLflow)."""

    config: Any
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


def run_head(session: Any) -> RunResult:
    """EvoPruneDeepTL on the head, inside a prepared `RunSession` (the head methods' ``run``).

    Session inputs: ``features`` (a `FeatureSplits` to use instead of loading images)
    and ``ood_features``.

    Returns:
        A `RunResult`; with tracking on, everything is also in the MLflow run.
    """
    config, method, out = session.config, session.method, session.out
    features, ood_features = session.inputs.get("features"), session.inputs.get("ood_features")
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
    session.seed()  # extraction may have drawn random numbers
    state = session.restore(evaluator)
    population = initial_population(config, toolbox, evaluator) if state is None else None
    record = make_front_record() if config.multi_objective else algorithms.default_record
    cbs = session.callbacks(evaluator, dataset=_dataset_record(config, features, images),
                            log_fronts=config.multi_objective, objective_names=list(config.objectives.names),
                            title=head_title(config))
    session.restore_rng()
    halloffame = state.halloffame if state else algorithms.new_halloffame(
        config.multi_objective, config.algorithm.hall_of_fame)
    try:
        with session.guard("Run"):
            population, logbook = method.loop(config, toolbox, population, halloffame, cbs, record, state)
    finally:
        if pool is not None:
            pool.close()
    best = np.asarray(halloffame[0])
    report: dict = {}
    with session.guard("Report"):  # the search is saved: a stopped report is redone on resume
        rescore = None
        if config.report.rescore_folds and not config.multi_objective:
            best, rescore = _rescore(config, evaluator, halloffame, out)
        report, model = _report(config, evaluator, features, best, halloffame, ood_features, session.tracker, out,
                                images)
        if rescore is not None:
            report["rescore"] = rescore
        report["search"] = {
            "evaluations": int(logbook[-1]["evaluations"]), "generations": int(logbook[-1]["gen"]),
            "trained": evaluator.n_trained, "cache_hits": evaluator.n_cache_hits,
            "train_seconds": round(evaluator.train_seconds, 2), "wall_seconds": round(session.elapsed, 2),
            "best_fitness": list(map(float, halloffame[0].fitness.values)),
        }
        session.finish(report, metrics=summary_metrics(report),
                       models={"compact_model": model} if model is not None else None)
    return RunResult(config, features, evaluator, population, logbook, halloffame, report,
                     session.run_id, session.checkpoint_file, session.elapsed)


def check_inputs(config: Any) -> None:
    """Input checks that cost little, before any image is read (each a one-line ValueError)."""
    check_budget(config)  # encoding.active above the genome length, before the features are extracted
    source = config.data.source
    folder = Path(source).expanduser()
    if ":" not in source and (not folder.exists() or (folder.is_dir() and sum(p.is_dir() for p in folder.iterdir()) < 2)):
        return  # a missing or classless dataset: the loader names it cheaply, and that comes first
    ood = config.objectives.ood
    if ood and not is_named_source(ood) and not Path(ood).expanduser().exists():
        raise ValueError(f"OOD source objectives.ood={ood!r} does not exist; expected a folder, .npz or tfds:NAME")
    for named in (source, ood):
        if named and named.startswith("download:"):  # a HEAD request, not the download
            check_download(named[len("download:"):].strip())
    if config.backbone.weights == "imagenet":
        check_imagenet_weights(config.backbone.name, image_size=config.data.image_size or None,
                               options=config.backbone.options)


def _dataset_record(config: Any, features: FeatureSplits, images: Any) -> dict:
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


def _rescore(config: Any, evaluator: PopulationEvaluator, halloffame, out) -> tuple[np.ndarray, dict]:
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


def _report(config: Any, evaluator: PopulationEvaluator, features: FeatureSplits, best: np.ndarray,
            halloffame: Any, ood: np.ndarray | None, tracker: MLflowTracker | None, out: TextIO,
            images: Any = None) -> tuple[dict, Any]:
    """The single-model report, and for multi-objective runs the Pareto report in `report_folder`."""
    recipe = report_recipe(config.train, config.report.recipe)  # the reference recipe too, on the run's engine
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
