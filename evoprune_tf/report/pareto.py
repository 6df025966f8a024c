"""The final report of a multi-objective run (MO-EvoPruneDeepTL): the Pareto front on test.

`pareto_report` takes the front the search found (the run's `deap.tools.ParetoFront`)
and, after the single-model report of `evoprune_tf.report.single`, runs these steps,
each a function importable from this module (defined in ``front``, ``trade_offs``,
``front_rows``, ``front_files`` and ``front_explain``):

1. `front_members`: the valid, distinct members with their search objectives;
2. `score_members`: retrains every member with the report recipe over
   ``options.seeds`` seeds and scores it on validation and *test*: accuracy and the
   OOD-detection AUROC of its max-softmax score with temperature scaling
   (in-distribution = test split, OOD = the run's OOD features; None without them);
3. `pick_trade_offs`: DeepPruningES's three trade-off models (``heavy`` = most
   accurate, ``knee``, ``light`` = fewest active genes) with
   `evoprune_tf.search.pareto.trade_off_models` on the search objectives;
4. `member_rows`: one JSON-able record per member;
5. `ensemble_summary`: soft-vote ensembles of the members (all of them, and those within
   ``options.ensemble_band`` of the best validation accuracy) against the best single
   member (chosen on validation), on test, for every retrain seed
   (`evoprune_tf.report.ensembles.evaluate_ensembles`);
6. `write_front_table` and `front_plots`: ``pareto/pareto_front.csv`` (search objectives
   on validation, test metrics, packed genome) and ``pareto/pareto_validation.png`` /
   ``pareto/pareto_test.png`` (2-D projections and a 3-D scatter, knee marked);
7. `export_trade_offs`: each trade-off model as a compact Keras model
   ``tradeoff_models/{heavy,knee,light}.keras``;
8. `explain_knee`: with ``options.explain``, images and the feature-selection encoding,
   ranks the knee model's features by occlusion and writes CAM overlays of a few test
   images per class under ``explanations/knee/``;
9. `ArtifactLog`: every file goes to the MLflow run when a tracker is given.

The files are written to the folder the caller names (``local_dir``; the application
passes `evoprune_tf.app.config.report_folder`) and then logged, so they exist with or
without MLflow. The returned dict is JSON-able and lands in ``report.json`` under
``"pareto"``.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from evoprune_tf.encodings import Encoding
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.records import write_json
from evoprune_tf.report.front import FrontMembers, MemberScores, front_members, score_members
from evoprune_tf.report.front_explain import BackboneSpec, explain_images, explain_knee
from evoprune_tf.report.front_files import ArtifactLog, ArtifactTracker, front_plots, write_front_table
from evoprune_tf.report.front_rows import (
    FrontEvaluator,
    banded_members,
    ensemble_summary,
    hypervolume_on_test,
    member_rows,
)
from evoprune_tf.report.pareto_text import format_pareto_report
from evoprune_tf.report.trade_offs import (
    TRADE_OFFS,
    TradeOffPicks,
    distinct_trade_offs,
    export_trade_offs,
    pick_trade_offs,
    trade_off_columns,
)
from evoprune_tf.search.pareto import hypervolume
from evoprune_tf.train import TrainConfig, TrainedHead

if TYPE_CHECKING:  # pragma: no cover
    from evoprune_tf.data.images import ImageSplits

__all__ = [
    "pareto_report",
    "format_pareto_report",
    "explain_images",
    "TRADE_OFFS",
    "BackboneSpec",
    "ParetoReportOptions",
    "FrontEvaluator",
    "ArtifactTracker",
    "FrontMembers",
    "MemberScores",
    "TradeOffPicks",
    "ArtifactLog",
    "front_members",
    "score_members",
    "pick_trade_offs",
    "member_rows",
    "ensemble_summary",
    "banded_members",
    "write_front_table",
    "front_plots",
    "export_trade_offs",
    "explain_knee",
    "hypervolume_on_test",
    "trade_off_columns",
    "distinct_trade_offs",
]

# The steps live in `front`, `trade_offs`, `front_rows`, `front_files`, `front_explain` and
# `pareto_text`; their public names stay importable from here, where users import them.


@dataclasses.dataclass(frozen=True)
class ParetoReportOptions:
    """What the multi-objective report needs to know of the run (the app builds it from the config).

    Attributes:
        run_name: names the temporary report folder when the caller names none.
        objective_names: names of the fitness values, in fitness order.
        temperature: softmax temperature of the OOD score.
        seeds: retrains per member.
        seed: the run seed (the retrains derive theirs from it).
        ensemble_band: members within this validation accuracy of the best join the banded ensemble.
        explain: make CAM explanations of the knee model (feature selection, with images).
        backbone: the backbone to rebuild for explanations.
    """

    run_name: str = "experiment"
    objective_names: tuple[str, ...] = ()
    temperature: float = 1000.0
    seeds: int = 3
    seed: int = 0
    ensemble_band: float = 0.02
    explain: bool = True
    backbone: BackboneSpec | None = None


def pareto_report(
    options: ParetoReportOptions,
    evaluator: FrontEvaluator,
    features: FeatureSplits,
    front: list,
    ood: np.ndarray | None,
    train_config: TrainConfig,
    *,
    images: ImageSplits | None = None,
    tracker: ArtifactTracker | None = None,
    out: TextIO | None = None,
    local_dir: str | Path | None = None,
) -> dict:
    """Retrain and score a Pareto front on test; CSV, plots, trade-off models, ensembles, CAMs.

    Args:
        options: what the report needs to know of the run (objective names, seeds, band...).
        evaluator: the run's `PopulationEvaluator` (its encoding; its cache gives every
            validation metric measured during the search).
        features: the run's features (test split scored here).
        front: the Pareto front individuals (DEAP individuals with valid fitness values in
            the order of ``options.objective_names``); duplicates are dropped.
        ood: OOD features ``(m, n_features)`` for the test AUROC, or None.
        train_config: the retrain recipe (`evoprune_tf.train.TrainConfig`).
        images: the run's `evoprune_tf.data.ImageSplits`, needed for explanations.
        tracker: an open `evoprune_tf.tracking.MLflowTracker` to log the files to.
        out: stream for the summary (default stdout).
        local_dir: folder for the files (the application passes
            `evoprune_tf.app.config.report_folder`); None: a new temporary folder, which is
            kept (the returned paths point into it), so nothing lands in the current folder.

    Returns:
        A JSON-able dict: ``objectives``, ``weights``, ``n_members``, ``hypervolume``
        (of the front's search objectives, `evoprune_tf.search.pareto.hypervolume`),
        ``hypervolume_test`` (of test accuracy, active fraction and test AUROC),
        ``knee_all_objectives`` (`knee_point` over every objective), ``retrain``,
        ``members`` (one dict per member: search values, test accuracy mean/std/per seed,
        active %, test AUROC mean/std, trade-off role, packed genome), ``trade_offs``
        (``heavy`` / ``knee`` / ``light``: member index, test metrics, parameters, local
        file and artifact path; ``distinct``; ``rule``), ``ensembles`` (mean over the
        retrain seeds of ``best_single`` / ``all`` / ``banded``, ``per_seed``; None
        without a test split), ``explanations`` (None when not asked for or without
        images), ``artifacts`` (paths inside the run), ``local_dir`` and ``seconds``.
        The trade-off models and explanations use the first retrain seed's heads.

    Raises:
        ValueError: the front holds no individual with a valid fitness.
    """
    out, began, encoding = out or sys.stdout, time.perf_counter(), evaluator.encoding
    members = front_members(front, encoding, options.objective_names)
    folder = Path(local_dir) if local_dir is not None else _temporary_folder(options.run_name)
    folder.mkdir(parents=True, exist_ok=True)
    ood = None if ood is None else np.asarray(ood, dtype=np.float32)
    temperature = float(options.temperature)

    scores = score_members(encoding, features, members.genomes, train_config, seed=options.seed,
                           seeds=int(options.seeds), ood=ood, temperature=temperature)
    picks = pick_trade_offs(members, scores.val_accuracy)
    rows = member_rows(members, scores, picks, evaluator)
    ensembles = ensemble_summary(scores, features, ood, rows, band=float(options.ensemble_band),
                                 temperature=temperature)

    log = ArtifactLog(tracker)
    trade_offs = _front_files(members, scores, picks, rows, ensembles, features, ood is not None, folder, log)
    explanations = _explain(options, encoding, features, scores.heads[0][picks.picks["knee"]], images, folder, log,
                            out)

    result = {
        "objectives": members.names, "weights": list(members.weights), "n_members": len(rows),
        "hypervolume": hypervolume(members.points, members.weights), "hypervolume_test": hypervolume_on_test(rows),
        "knee_all_objectives": picks.knee_all_objectives,
        "retrain": {"seeds": scores.seeds, "epochs": train_config.epochs,
                    "early_stopping": train_config.early_stopping},
        "members": rows, "trade_offs": trade_offs, "ensembles": ensembles, "explanations": explanations,
        "local_dir": str(folder), "artifacts": log.paths, "seconds": round(time.perf_counter() - began, 2),
    }
    write_json(folder / "pareto_report.json", result)
    print(format_pareto_report(result), file=out)
    return result


def _front_files(members: FrontMembers, scores: MemberScores, picks: TradeOffPicks, rows: list[dict],
                 ensembles: dict | None, features: FeatureSplits, with_ood: bool, folder: Path,
                 log: ArtifactLog) -> dict:
    """Writes and logs the front table, the Pareto plots and the trade-off models.

    Returns:
        The `export_trade_offs` dict.
    """
    pareto_dir = folder / "pareto"
    log(write_front_table(pareto_dir / "pareto_front.csv", members.names, rows, banded_members(ensembles),
                          len(members.genomes[0])), "pareto")
    with_auroc = with_ood and len(features.y_test) > 0
    for path in front_plots(members.points, members.names, rows, picks.picks, with_auroc, pareto_dir):
        log(path, "pareto")
    model_dir = folder / "tradeoff_models"
    trade_offs = export_trade_offs(scores.heads[0], picks, rows, features.scaling, model_dir)
    log(model_dir, "tradeoff_models")
    return trade_offs


def _explain(options: ParetoReportOptions, encoding: Encoding, features: FeatureSplits, knee: TrainedHead,
             images: ImageSplits | None, folder: Path, log: ArtifactLog, out: TextIO) -> dict | None:
    """`explain_knee` of the knee model when asked for and possible (images, backbone); its files logged."""
    if not (options.explain and images is not None and options.backbone is not None):
        return None
    explain_dir = folder / "explanations" / "knee"
    explanations = explain_knee(options.backbone, encoding, features, knee, images, explain_dir, out)
    if explanations.get("files"):
        log(explain_dir, "explanations/knee")
    return explanations


def _temporary_folder(run_name: str) -> Path:
    """A new folder under the system's temporary folder, named after the run (kept, not deleted)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name)[:60] or "experiment"
    return Path(tempfile.mkdtemp(prefix=f"evoprune-report-{safe}-"))
