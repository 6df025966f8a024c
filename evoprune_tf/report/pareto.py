"""The final report of a multi-objective run (MO-EvoPruneDeepTL): the Pareto front on test.

`pareto_report` takes the front the search found (the run's `deap.tools.ParetoFront`)
and, after the single-model report of `evoprune_tf.report.single`, runs these steps,
each a function of this module:

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
passes `evoprune_tf.session.report_folder`) and then logged, so they exist with or
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
from typing import TYPE_CHECKING, Any, Protocol, Sequence, TextIO

import numpy as np

from evoprune_tf.backbones import build_backbone
from evoprune_tf.encodings import Encoding, genome_key, pack_genome
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.metrics import accuracy_and_loss, auroc, max_softmax_score
from evoprune_tf.objectives import Evaluation
from evoprune_tf.records import write_csv, write_json
from evoprune_tf.report.cam import save_explanations
from evoprune_tf.report.ensembles import evaluate_ensembles
from evoprune_tf.report.influence import feature_influence
from evoprune_tf.report.plots import pareto_plots
from evoprune_tf.report.single import compact_model, retrain
from evoprune_tf.report.text import count, mean_std, plural
from evoprune_tf.search.pareto import hypervolume, knee_point, trade_off_models
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

#: The three models handed to the decision maker, in this order.
TRADE_OFFS = ("heavy", "knee", "light")

#: Rows of the member table printed by `format_pareto_report` (the CSV has them all).
_TABLE_ROWS = 25


# ----------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to rebuild the run's backbone for explanations (name, weights, options, batch size)."""

    name: str
    weights: str | None = None
    options: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 64


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


class FrontEvaluator(Protocol):
    """What the report uses of the run's evaluator (`PopulationEvaluator`, `ResampledEvaluator`)."""

    encoding: Encoding

    def lookup(self, genome: Sequence[int] | np.ndarray) -> Evaluation | None:
        """The cached evaluation of a genome, or None."""


class ArtifactTracker(Protocol):
    """What the report uses of a tracker (`evoprune_tf.tracking.MLflowTracker`)."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or a folder under ``artifact_path``."""


# ----------------------------------------------------------------------- steps


@dataclasses.dataclass(frozen=True)
class FrontMembers:
    """The distinct valid members of a front, as the report's steps use them.

    Attributes:
        individuals: the DEAP individuals, in the front's order.
        names: objective names (``obj0``, ``obj1``... when the given names do not fit).
        weights: the fitness weights.
        points: ``(n, k)`` fitness values.
        genomes: validated int8 genomes.
        active: active fraction of each genome.
    """

    individuals: list
    names: list[str]
    weights: tuple[float, ...]
    points: np.ndarray
    genomes: list[np.ndarray]
    active: np.ndarray


def front_members(front: Sequence, encoding: Encoding, objective_names: Sequence[str]) -> FrontMembers:
    """The front's valid individuals with distinct genomes, in the front's order.

    Args:
        front: DEAP individuals (those without a valid fitness are skipped).
        encoding: the run's encoding (validates the genomes).
        objective_names: names of the fitness values, in fitness order.

    Returns:
        The `FrontMembers`.

    Raises:
        ValueError: no individual has a valid fitness.
    """
    seen: set[bytes] = set()
    individuals = []
    for ind in front:
        if not ind.fitness.valid:
            continue
        key = genome_key(ind)
        if key not in seen:
            seen.add(key)
            individuals.append(ind)
    if not individuals:
        raise ValueError("the Pareto front holds no individual with a valid fitness; expected a finished search")
    weights = tuple(float(w) for w in individuals[0].fitness.weights)
    names = list(objective_names)
    if len(names) != len(weights):
        names = [f"obj{i}" for i in range(len(weights))]
    genomes = [encoding.validate(ind).astype(np.int8) for ind in individuals]
    return FrontMembers(
        individuals=individuals, names=names, weights=weights,
        points=np.array([ind.fitness.values for ind in individuals], dtype=np.float64),
        genomes=genomes, active=np.array([float(g.mean()) for g in genomes]),
    )


@dataclasses.dataclass(frozen=True)
class MemberScores:
    """The retrained heads of every member and their scores, indexed ``[seed][member]``.

    Attributes:
        heads: the trained heads.
        val: ``(accuracy, loss)`` on validation.
        test_accuracy: accuracy on test (None without a test split).
        test_auroc: OOD AUROC on test (None without OOD features or test split).
    """

    heads: list[list[TrainedHead]]
    val: list[list[tuple[float, float]]]
    test_accuracy: list[list[float | None]]
    test_auroc: list[list[float | None]]

    @property
    def seeds(self) -> int:
        """Number of retrain seeds."""
        return len(self.heads)

    @property
    def val_accuracy(self) -> np.ndarray:
        """Each member's validation accuracy, mean over the seeds."""
        return np.array([np.mean([self.val[s][i][0] for s in range(self.seeds)])
                         for i in range(len(self.heads[0]))])

    def over_seeds(self, member: int) -> dict[str, Any]:
        """One member's test numbers over the seeds: mean/std of accuracy and AUROC, accuracy per seed."""
        acc = [self.test_accuracy[s][member] for s in range(self.seeds)]
        auc = [self.test_auroc[s][member] for s in range(self.seeds)]
        return {
            "test_accuracy": _mean(acc), "test_accuracy_std": _std(acc),
            "test_accuracy_per_seed": acc if acc[0] is not None else [],
            "test_auroc": _mean(auc), "test_auroc_std": _std(auc),
        }


def score_members(
    encoding: Encoding,
    features: FeatureSplits,
    genomes: Sequence[np.ndarray],
    train_config: TrainConfig,
    *,
    seed: int,
    seeds: int,
    ood: np.ndarray | None,
    temperature: float,
) -> MemberScores:
    """Retrain every genome once per seed and score it on validation and test.

    Args:
        encoding: the run's encoding.
        features: the run's features.
        genomes: the members' genomes.
        train_config: the retrain recipe.
        seed: the run seed (each retrain seed derives from it).
        seeds: retrains per genome.
        ood: float32 OOD features for the test AUROC, or None.
        temperature: softmax temperature of the OOD score.

    Returns:
        The `MemberScores`.
    """
    heads = retrain(encoding, features, genomes, train_config, seed=seed, seeds=seeds)
    has_test = len(features.y_test) > 0
    return MemberScores(
        heads=heads,
        val=[[accuracy_and_loss(h.logits(features.x_val), features.y_val) for h in row] for row in heads],
        test_accuracy=[[accuracy_and_loss(h.logits(features.x_test), features.y_test)[0] if has_test else None
                        for h in row] for row in heads],
        test_auroc=[[_test_auroc(h, features, ood, temperature) for h in row] for row in heads],
    )


@dataclasses.dataclass(frozen=True)
class TradeOffPicks:
    """The heavy / knee / light members and how they were chosen.

    Attributes:
        picks: trade-off name -> member index.
        rule: ``"trade_off_models"`` or ``"distinct_fallback"`` (`distinct_trade_offs`).
        knee_all_objectives: `knee_point` over every search objective.
    """

    picks: dict[str, int]
    rule: str
    knee_all_objectives: int

    @property
    def distinct(self) -> bool:
        """True when the three picks are three different members."""
        return len(set(self.picks.values())) == len(TRADE_OFFS)

    def role(self, member: int) -> str:
        """The member's trade-off label; coinciding picks share one, e.g. ``"heavy+knee"``."""
        return "+".join(name for name in TRADE_OFFS if self.picks[name] == member)


def pick_trade_offs(members: FrontMembers, val_accuracy: np.ndarray) -> TradeOffPicks:
    """Heavy, knee and light on the search objectives (three distinct members when there are three).

    Args:
        members: the front.
        val_accuracy: each member's retrained validation accuracy (used when the search
            objectives hold neither accuracy nor loss).

    Returns:
        The `TradeOffPicks`.
    """
    points, weights, acc, cpx = trade_off_columns(members.names, members.points, members.weights,
                                                   members.active, val_accuracy)
    picks = trade_off_models(points, weights, accuracy_index=acc, complexity_index=cpx)
    picks, rule = distinct_trade_offs(points, weights, acc, cpx, picks)
    return TradeOffPicks(picks, rule, int(knee_point(members.points, members.weights)))


def member_rows(members: FrontMembers, scores: MemberScores, picks: TradeOffPicks,
                evaluator: FrontEvaluator) -> list[dict]:
    """One JSON-able record per member: search values, retrained scores, size, role, genome.

    Args:
        members: the front.
        scores: the retrained scores.
        picks: the trade-off picks.
        evaluator: the run's evaluator (its cache holds the search's validation metrics).

    Returns:
        The rows, in the members' order.
    """
    encoding = evaluator.encoding
    val_accuracy = scores.val_accuracy
    rows = []
    for i, ind in enumerate(members.individuals):
        genome = members.genomes[i]
        cached = evaluator.lookup(genome)
        rows.append({
            "index": i,
            "search": {n: float(v) for n, v in zip(members.names, ind.fitness.values)},
            "search_val_accuracy": _float(cached.accuracy) if cached else None,
            "search_val_auroc": _float(cached.auroc) if cached else None,
            "active_fraction": float(members.active[i]),
            "active_percent": round(100.0 * float(members.active[i]), 2),
            "active_features": int(encoding.decode(genome).units[0].sum()),
            "active_parameters": int(encoding.active_parameters(genome)),
            "val_accuracy": float(val_accuracy[i]),
            **scores.over_seeds(i),
            "trade_off": picks.role(i),
            "genome": pack_genome(genome),
        })
    return rows


def ensemble_summary(scores: MemberScores, features: FeatureSplits, ood: np.ndarray | None, rows: list[dict], *,
                     band: float, temperature: float) -> dict | None:
    """Best single member vs soft-vote ensembles on test, per seed and as the mean over seeds.

    Members are chosen on validation and reported on test.

    Args:
        scores: the retrained heads and their validation scores.
        features: the run's features.
        ood: OOD features for the AUROC, or None.
        rows: the `member_rows` (for the oracle best test accuracy, context only).
        band: members within this validation accuracy of the best join the banded ensemble.
        temperature: softmax temperature of the OOD score.

    Returns:
        ``split``, ``band``, ``temperature``, ``seeds``, ``n_members``, ``best_single`` /
        ``all`` / ``banded`` (means over seeds: ``accuracy``, ``accuracy_std``, ``auroc``,
        ``n_members``; ``best_single`` also ``members``, one per seed),
        ``best_test_member_accuracy`` and ``per_seed``; None without a test split.
    """
    if len(features.y_test) == 0:
        return None
    per_seed = []
    for s in range(scores.seeds):
        member_scores = [{"accuracy": a, "loss": l} for a, l in scores.val[s]]
        result = evaluate_ensembles(scores.heads[s], member_scores, features, ood, band=band, temperature=temperature)
        result.pop("members", None)
        per_seed.append(result)
    summary = {
        kind: {
            "accuracy": _mean([r[kind]["accuracy"] for r in per_seed]),
            "accuracy_std": _std([r[kind]["accuracy"] for r in per_seed]),
            "auroc": _mean([r[kind]["auroc"] for r in per_seed]),
            "n_members": _mean([r[kind]["n_members"] for r in per_seed]),
        }
        for kind in ("best_single", "all", "banded")
    }
    summary["best_single"]["members"] = [r["best_single"]["members"][0] for r in per_seed]
    best_test = max((r["test_accuracy"] for r in rows if r["test_accuracy"] is not None), default=None)
    return {
        "split": "test", "band": float(band), "temperature": float(temperature), "seeds": scores.seeds,
        "n_members": len(rows), **summary,
        "best_test_member_accuracy": best_test,  # oracle (chosen on test): context only
        "per_seed": per_seed,
    }


def banded_members(ensembles: dict | None) -> set[int]:
    """Members that joined the banded ensemble for at least one seed (none without ensembles).

    Args:
        ensembles: `ensemble_summary`'s dict, or None.

    Returns:
        The member indices.
    """
    if not ensembles:
        return set()
    return set().union(*[set(r["banded"]["members"]) for r in ensembles["per_seed"]])


def write_front_table(path: Path, names: Sequence[str], rows: list[dict], banded: set[int],
                      genome_length: int) -> Path:
    """``pareto_front.csv``: one line per member, search values on validation, test metrics, genome.

    Args:
        path: the CSV file.
        names: the objective names (``val_<name>`` columns).
        rows: the `member_rows`.
        banded: the `banded_members`.
        genome_length: genes per genome (to unpack the packed genomes).

    Returns:
        The path.
    """
    header = ["member", *[f"val_{n}" for n in names], "search_val_accuracy", "search_val_auroc",
              "active_fraction", "active_features", "active_parameters", "retrain_val_accuracy",
              "test_accuracy", "test_accuracy_std", "test_auroc", "test_auroc_std", "trade_off",
              "banded_ensemble", "genome_length", "genome"]
    lines = [
        [r["index"], *[r["search"][n] for n in names], r["search_val_accuracy"], r["search_val_auroc"],
         r["active_fraction"], r["active_features"], r["active_parameters"], r["val_accuracy"],
         r["test_accuracy"], r["test_accuracy_std"], r["test_auroc"], r["test_auroc_std"], r["trade_off"],
         int(r["index"] in banded), genome_length, r["genome"]]
        for r in rows
    ]
    return write_csv(path, header, lines)


def front_plots(points: np.ndarray, names: list[str], rows: list[dict], picks: dict[str, int], with_auroc: bool,
                folder: Path) -> list[Path]:
    """Pareto plots of the search objectives and of the test metrics; knee star, heavy/light rings.

    Args:
        points: the members' search objectives.
        names: their names.
        rows: the `member_rows` (test metrics).
        picks: trade-off name -> member index.
        with_auroc: add the test AUROC axis.
        folder: where the PNGs go.

    Returns:
        The PNG paths (validation first; the test plot only when every member has a test accuracy).
    """
    ends = sorted({picks["heavy"], picks["light"]})
    paths = []
    if points.shape[1] >= 2:
        paths.append(pareto_plots(points, [f"{n} (val)" for n in names], folder / "pareto_validation.png",
                                  knee_index=picks["knee"], highlight=ends))
    if all(r["test_accuracy"] is not None for r in rows):
        test_names = ["test accuracy", "active fraction"] + (["test AUROC"] if with_auroc else [])
        paths.append(pareto_plots(_test_columns(rows, with_auroc), test_names, folder / "pareto_test.png",
                                  knee_index=picks["knee"], highlight=ends))
    return paths


def export_trade_offs(heads: Sequence[TrainedHead], picks: TradeOffPicks, rows: list[dict],
                      scaling: tuple[np.ndarray, np.ndarray] | None, folder: Path) -> dict[str, Any]:
    """Save the heavy / knee / light heads as compact Keras models ``<folder>/<name>.keras``.

    Args:
        heads: one retrain seed's heads, one per member.
        picks: the trade-off picks.
        rows: the `member_rows`.
        scaling: the features' standardisation (`FeatureSplits.scaling`), or None.
        folder: where the models go (artifact path ``tradeoff_models``).

    Returns:
        ``distinct``, ``rule`` and per trade-off: member index, active %, search values,
        test accuracy / AUROC, parameters, local file and artifact path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    trade_offs: dict[str, Any] = {"distinct": picks.distinct, "rule": picks.rule}
    for name in TRADE_OFFS:
        i = picks.picks[name]
        model = compact_model(heads[i], scaling)
        path = folder / f"{name}.keras"
        model.save(path)
        trade_offs[name] = {
            "member": i, "active_percent": rows[i]["active_percent"], "search": rows[i]["search"],
            "test_accuracy": rows[i]["test_accuracy"], "test_auroc": rows[i]["test_auroc"],
            "parameters": int(model.count_params()), "file": str(path),
            "artifact": f"tradeoff_models/{name}.keras",
        }
    return trade_offs


def explain_knee(backbone: BackboneSpec, encoding: Encoding, features: FeatureSplits, head: TrainedHead,
                 images: ImageSplits, folder: Path, out: TextIO) -> dict:
    """Feature ranking and CAM overlays of one head (feature selection only); errors are reported, not raised.

    Args:
        backbone: the run's backbone.
        encoding: the run's encoding.
        features: the run's features (validation ranks the features).
        head: the head to explain.
        images: the run's images.
        folder: where the files go.
        out: stream for the line saying why explanations were skipped.

    Returns:
        ``model``, ``method``, ``top_features`` and ``files``; or ``skipped`` / ``error``
        with an empty ``files``.
    """
    if encoding.name != "feature_selection":
        return {"skipped": f"explanations need the feature_selection encoding, not {encoding.name}", "files": []}
    try:
        influence = feature_influence(head, features.x_val, features.y_val, top_k=20)
        folder.mkdir(parents=True, exist_ok=True)
        ranking = write_csv(folder / "feature_influence.csv", ["rank", "feature", "val_accuracy_drop"],
                            [[r + 1, f, s] for r, (f, s) in enumerate(influence)])
        paths = explain_images(backbone, head, images, folder, per_class=2)
    except Exception as error:  # noqa: BLE001 - explanations are an extra; the report stands without them
        message = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        print(f"  explanations skipped ({message})", file=out)
        return {"error": message, "files": []}
    return {
        "model": "knee",
        "method": "occlusion",
        "top_features": [{"feature": int(f), "val_accuracy_drop": float(s)} for f, s in influence],
        "files": [str(p) for p in [*paths, ranking]],
    }


def explain_images(backbone: BackboneSpec, head: TrainedHead, images: ImageSplits, folder: str | Path, *,
                   per_class: int = 2) -> list[Path]:
    """CAM overlays of ``per_class`` test images per class (validation images when test is empty).

    The backbone is rebuilt from ``backbone`` at the images' size; the head must have been
    trained on that backbone's pooled features.

    Args:
        backbone: the run's backbone.
        head: the trained head.
        images: the run's images.
        folder: where the PNGs go.
        per_class: images per class.

    Returns:
        The PNG paths, one per class.
    """
    model = build_backbone(backbone.name, weights=backbone.weights, image_size=images.image_size,
                           **(backbone.options or {}))
    pixels, labels = images.test_images, images.test_labels
    if len(labels) == 0:
        pixels, labels = images.val_images, images.val_labels
    return save_explanations(model, head, pixels, labels, list(images.class_names), folder, per_class=per_class,
                             batch_size=max(1, int(backbone.batch_size)))


class ArtifactLog:
    """Logs report files to the tracker (when there is one) and lists their paths inside the run.

    Args:
        tracker: the run's tracker, or None (the files are then only listed).
    """

    def __init__(self, tracker: ArtifactTracker | None) -> None:
        self.tracker = tracker
        self.paths: list[str] = []

    def __call__(self, path: Path, artifact_path: str | None) -> None:
        """Log a file, or every file of a folder, under ``artifact_path``."""
        if self.tracker is not None:
            self.tracker.log_artifact(path, artifact_path)
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        self.paths.extend(f"{artifact_path}/{p.name}" if artifact_path else p.name for p in files)


def hypervolume_on_test(rows: list[dict]) -> float | None:
    """Hypervolume of (test accuracy, active fraction[, test AUROC]) of the members.

    Args:
        rows: the `member_rows`.

    Returns:
        The hypervolume; None when a member has no test accuracy.
    """
    if any(r["test_accuracy"] is None for r in rows):
        return None
    with_auc = all(r["test_auroc"] is not None for r in rows)
    weights = (1.0, -1.0, 1.0) if with_auc else (1.0, -1.0)
    return hypervolume(_test_columns(rows, with_auc), weights)



# ---------------------------------------------------------------- the report


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
            `evoprune_tf.session.report_folder`); None: a new temporary folder, which is
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
    out = out or sys.stdout
    began = time.perf_counter()
    encoding = evaluator.encoding
    members = front_members(front, encoding, options.objective_names)
    folder = Path(local_dir) if local_dir is not None else _temporary_folder(options.run_name)
    folder.mkdir(parents=True, exist_ok=True)
    if ood is not None:
        ood = np.asarray(ood, dtype=np.float32)
    temperature = float(options.temperature)

    scores = score_members(encoding, features, members.genomes, train_config, seed=options.seed,
                           seeds=int(options.seeds), ood=ood, temperature=temperature)
    picks = pick_trade_offs(members, scores.val_accuracy)
    rows = member_rows(members, scores, picks, evaluator)
    ensembles = ensemble_summary(scores, features, ood, rows, band=float(options.ensemble_band),
                                 temperature=temperature)

    log = ArtifactLog(tracker)
    pareto_dir = folder / "pareto"
    log(write_front_table(pareto_dir / "pareto_front.csv", members.names, rows, banded_members(ensembles),
                          len(members.genomes[0])), "pareto")
    with_auroc = ood is not None and len(features.y_test) > 0
    for path in front_plots(members.points, members.names, rows, picks.picks, with_auroc, pareto_dir):
        log(path, "pareto")
    model_dir = folder / "tradeoff_models"
    trade_offs = export_trade_offs(scores.heads[0], picks, rows, features.scaling, model_dir)
    log(model_dir, "tradeoff_models")
    explanations = None
    if options.explain and images is not None and options.backbone is not None:
        explain_dir = folder / "explanations" / "knee"
        explanations = explain_knee(options.backbone, encoding, features, scores.heads[0][picks.picks["knee"]],
                                    images, explain_dir, out)
        if explanations.get("files"):
            log(explain_dir, "explanations/knee")

    result = {
        "objectives": members.names,
        "weights": list(members.weights),
        "n_members": len(rows),
        "hypervolume": hypervolume(members.points, members.weights),
        "hypervolume_test": hypervolume_on_test(rows),
        "knee_all_objectives": picks.knee_all_objectives,
        "retrain": {"seeds": scores.seeds, "epochs": train_config.epochs,
                    "early_stopping": train_config.early_stopping},
        "members": rows,
        "trade_offs": trade_offs,
        "ensembles": ensembles,
        "explanations": explanations,
        "local_dir": str(folder),
        "artifacts": log.paths,
        "seconds": round(time.perf_counter() - began, 2),
    }
    write_json(folder / "pareto_report.json", result)
    print(format_pareto_report(result), file=out)
    return result


# ----------------------------------------------------------------------- helpers


def _temporary_folder(run_name: str) -> Path:
    """A new folder under the system's temporary folder, named after the run (kept, not deleted)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name)[:60] or "experiment"
    return Path(tempfile.mkdtemp(prefix=f"evoprune-report-{safe}-"))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _std(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.std(vals)) if vals else None


def _test_auroc(head: TrainedHead, data: FeatureSplits, ood: np.ndarray | None, temperature: float) -> float | None:
    if ood is None or len(data.y_test) == 0:
        return None
    return auroc(max_softmax_score(head.logits(data.x_test), temperature),
                 max_softmax_score(head.logits(ood), temperature))


def _test_columns(rows: list[dict], with_auroc: bool) -> np.ndarray:
    """(test accuracy, active fraction[, test AUROC]) of the members, one row each."""
    return np.array([[r["test_accuracy"], r["active_fraction"]] + ([r["test_auroc"]] if with_auroc else [])
                     for r in rows])


def trade_off_columns(names: list[str], points: np.ndarray, weights: tuple, active: np.ndarray,
                       val_accuracy: np.ndarray) -> tuple[np.ndarray, tuple, int, int]:
    """Points, weights, accuracy and complexity columns for `trade_off_models`.

    The search objectives are used as they are; when they lack a complexity objective
    the genome's active fraction is appended (minimised), and when they lack both
    accuracy and loss the retrained validation accuracy is appended (maximised).
    Appending a column never removes a point from the front.
    """
    pts, w = points, tuple(weights)
    if "accuracy" in names:
        acc = names.index("accuracy")
    elif "loss" in names:
        acc = names.index("loss")
    else:
        pts, w, acc = np.column_stack([pts, val_accuracy]), w + (1.0,), pts.shape[1]
    if "active_fraction" in names:
        cpx = names.index("active_fraction")
    else:
        pts, w, cpx = np.column_stack([pts, active]), w + (-1.0,), pts.shape[1]
    return pts, w, acc, cpx


def distinct_trade_offs(points: np.ndarray, weights: tuple, acc: int, cpx: int,
                         picks: dict[str, int]) -> tuple[dict[str, int], str]:
    """Make ``heavy`` / ``knee`` / ``light`` three different members when there are three.

    `trade_off_models` works on the accuracy-complexity projection of the front, where
    the picks coincide when that projection has fewer than three points (e.g. members that
    differ only in robustness) or the knee of a concave projection is one of its ends.
    Then, keeping ``heavy``: a ``light`` equal to it becomes the lightest other member
    (ties: more accurate), and a ``knee`` equal to either becomes the other member
    nearest the ideal point of the accuracy-complexity plane (normalised to the members'
    range). Returns the picks and ``"trade_off_models"`` or ``"distinct_fallback"``.
    """
    n = len(points)
    if n < len(TRADE_OFFS) or len(set(picks.values())) == len(TRADE_OFFS):
        return dict(picks), "trade_off_models"
    signs = np.sign(np.asarray(weights, dtype=np.float64))
    minimised = -points[:, [acc, cpx]] * signs[[acc, cpx]]
    low, high = minimised.min(axis=0), minimised.max(axis=0)
    norm = (minimised - low) / np.where(high > low, high - low, 1.0)
    heavy, light, knee = picks["heavy"], picks["light"], picks["knee"]
    if light == heavy:
        others = [i for i in range(n) if i != heavy]
        light = min(others, key=lambda i: (minimised[i, 1], minimised[i, 0], i))
    if knee in (heavy, light):
        others = [i for i in range(n) if i not in (heavy, light)]
        knee = min(others, key=lambda i: (float(np.linalg.norm(norm[i])), i))
    return {"heavy": heavy, "knee": knee, "light": light}, "distinct_fallback"


# ----------------------------------------------------------------------- summary


def format_pareto_report(report: dict) -> str:
    """A short human-readable summary of `pareto_report`'s dict.

    With one retrain seed the values are printed without ``± std``; counts are printed
    as integers where they are integral (`evoprune_tf.report.text`).

    Args:
        report: `pareto_report`'s dict.

    Returns:
        The summary, several lines.
    """
    names = report["objectives"]
    seeds = int(report["retrain"]["seeds"])
    acc_title = "test_acc ± std" if seeds != 1 else "test_acc"
    lines = [
        f"Pareto front: {plural(report['n_members'], 'member')} over {', '.join(names)}; "
        f"hypervolume {report['hypervolume']:.4f} (validation)"
        + (f", {report['hypervolume_test']:.4f} (test)" if report.get("hypervolume_test") is not None else "")
        + f"; retrained with {plural(seeds, 'seed')}",
        "  #   " + "  ".join(f"{n[:10]:>10}" for n in names) + f"   active%   {acc_title:<15}  test_AUROC  model",
    ]
    for r in report["members"][:_TABLE_ROWS]:
        acc = mean_std(r["test_accuracy"], r["test_accuracy_std"], seeds)
        lines.append(
            f"  {r['index']:<3} " + "  ".join(f"{r['search'][n]:>10.4f}" for n in names)
            + f"   {r['active_percent']:6.2f}   {acc:<15}  {mean_std(r['test_auroc'], None, 1):>10}  {r['trade_off']}"
        )
    if report["n_members"] > _TABLE_ROWS:
        lines.append(f"  ... {report['n_members'] - _TABLE_ROWS} more in pareto/pareto_front.csv")
    ens = report.get("ensembles")
    if ens:
        over = "1 seed" if ens["seeds"] == 1 else f"mean of {plural(ens['seeds'], 'seed')}"
        lines.append(f"Ensembles (soft vote, test, {over}; AUROC at T={ens['temperature']:g}):")
        for kind, label in (("best_single", "best single (val)"), ("all", "all members"),
                            ("banded", f"within {ens['band']:g} of best")):
            e = ens[kind]
            lines.append(
                f"  {label:<20} n={count(e['n_members']):<5} "
                f"accuracy {mean_std(e['accuracy'], e['accuracy_std'], ens['seeds'])}"
                f"   AUROC {mean_std(e['auroc'], None, 1)}"
            )
    t = report["trade_offs"]
    lines.append(
        "Trade-off models: " + "; ".join(
            f"{n} #{t[n]['member']} ({t[n]['active_percent']:.1f}% active, "
            f"test acc {mean_std(t[n]['test_accuracy'], None, 1)})"
            for n in TRADE_OFFS
        )
    )
    ex = report.get("explanations")
    if ex and ex.get("files"):
        lines.append(f"Explanations: {plural(len(ex['files']), 'file')} in {Path(ex['files'][0]).parent}")
    lines.append(f"Report files in {report['local_dir']}")
    return "\n".join(lines)
