"""The final report of a multi-objective run (MO-EvoPruneDeepTL): the Pareto front on test.

`pareto_report` takes the front the search found (the run's `deap.tools.ParetoFront`)
and, after the single-model report of `evoprune_tf.report.single`:

1. retrains every member (deduplicated) with the report recipe over
   ``options.seeds`` seeds and scores it on the *test* split: accuracy, active %,
   and the OOD-detection AUROC of its max-softmax score with temperature scaling
   (in-distribution = test split, OOD = the run's OOD features; None without them);
2. writes ``pareto/pareto_front.csv`` (search objectives on validation, test metrics,
   packed genome) and the plots ``pareto/pareto_validation.png`` /
   ``pareto/pareto_test.png`` (2-D projections and a 3-D scatter, knee marked);
3. picks DeepPruningES's three trade-off models (``heavy`` = most accurate, ``knee``,
   ``light`` = fewest active genes) with `evoprune_tf.search.pareto.trade_off_models` on the
   search objectives and exports each as a compact Keras model
   ``tradeoff_models/{heavy,knee,light}.keras``;
4. compares soft-vote ensembles of the members (all of them, and those within
   ``options.ensemble_band`` of the best validation accuracy) with the best single
   member (chosen on validation), on test, for every retrain seed
   (`evoprune_tf.report.ensembles.evaluate_ensembles`);
5. with ``options.explain``, images and the feature-selection encoding: ranks the
   knee model's features by occlusion and writes CAM overlays of a few test images per
   class under ``explanations/knee/``.

Everything is written to a local folder first (``<store folder>/reports/<run id>/`` for
a SQLite store, ``mlruns/reports/<name>-<time>/`` without tracking) and then logged to
the MLflow run when a tracker is given, so the files exist with or without MLflow.
The returned dict is JSON-able and lands in ``report.json`` under ``"pareto"``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evoprune_tf.metrics import accuracy_and_loss, auroc, max_softmax_score
from evoprune_tf.encodings import genome_key
from evoprune_tf.records import write_csv
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.train import TrainConfig

__all__ = ["pareto_report", "report_dir", "format_pareto_report", "TRADE_OFFS"]

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
        run_name: names the report folder when there is no MLflow run id.
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


# ----------------------------------------------------------------------- helpers


def report_dir(run_name: str, tracker: Any = None, root: str | Path | None = None) -> Path:
    """The local folder of a run's report files.

    ``<root>/reports/<run id>`` where ``root`` defaults to the folder of the tracker's
    SQLite file (so a throw-away store keeps its reports next to it) and otherwise to
    ``mlruns``; without a run id the name is ``<run_name>-<YYYYmmdd-HHMMSS>``.
    """
    if root is None:
        root = Path("mlruns")
        uri = getattr(tracker, "uri", None) or ""
        if uri.startswith("sqlite:///"):
            db = uri[len("sqlite:///"):].split("?", 1)[0]
            if db and db != ":memory:":
                root = Path(db).parent
    run_id = getattr(tracker, "run_id", None)
    name = run_id or f"{run_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(root) / "reports" / name


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _std(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.std(vals)) if vals else None


def _unique_members(front: Sequence) -> list:
    """Valid individuals with distinct genomes, in the front's order."""
    seen: set[bytes] = set()
    members = []
    for ind in front:
        if not ind.fitness.valid:
            continue
        key = genome_key(ind)
        if key not in seen:
            seen.add(key)
            members.append(ind)
    return members


def _test_auroc(head, data: FeatureSplits, ood: np.ndarray | None, temperature: float) -> float | None:
    if ood is None or len(data.y_test) == 0:
        return None
    return auroc(max_softmax_score(head.logits(data.x_test), temperature),
                 max_softmax_score(head.logits(ood), temperature))


def _trade_off_columns(names: list[str], points: np.ndarray, weights: tuple, active: np.ndarray,
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


def _distinct_trade_offs(points: np.ndarray, weights: tuple, acc: int, cpx: int,
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


def _fmt(value: float | None, digits: int = 4) -> str:
    return "   -  " if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- the report


def pareto_report(
    options: ParetoReportOptions,
    evaluator: Any,
    features: FeatureSplits,
    front: list,
    ood: np.ndarray | None,
    train_config: TrainConfig,
    *,
    images: Any = None,
    tracker: Any = None,
    out=None,
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
        local_dir: folder for the files (default `report_dir`).

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
    from evoprune_tf.report.ensembles import evaluate_ensembles
    from evoprune_tf.search.pareto import hypervolume, knee_point, trade_off_models
    from evoprune_tf.report.single import compact_model, retrain
    from evoprune_tf.encodings import pack_genome

    out = out or sys.stdout
    began = time.perf_counter()
    members = _unique_members(front)
    if not members:
        raise ValueError("the Pareto front holds no individual with a valid fitness; expected a finished search")
    encoding = evaluator.encoding
    names = list(options.objective_names)
    weights = tuple(float(w) for w in members[0].fitness.weights)
    if len(names) != len(weights):
        names = [f"obj{i}" for i in range(len(weights))]
    points = np.array([ind.fitness.values for ind in members], dtype=np.float64)
    genomes = [encoding.validate(ind).astype(np.int8) for ind in members]
    active = np.array([float(g.mean()) for g in genomes])
    temperature = float(options.temperature)
    seeds = int(options.seeds)
    folder = Path(local_dir) if local_dir is not None else report_dir(options.run_name, tracker)
    folder.mkdir(parents=True, exist_ok=True)
    has_test = len(features.y_test) > 0
    if ood is not None:
        ood = np.asarray(ood, dtype=np.float32)

    # 1. retrain every member once per seed, score on validation and test
    heads = retrain(encoding, features, genomes, train_config, seed=options.seed, seeds=seeds)
    val = [[accuracy_and_loss(h.logits(features.x_val), features.y_val) for h in per_seed] for per_seed in heads]
    test_acc = [[accuracy_and_loss(h.logits(features.x_test), features.y_test)[0] if has_test else None
                 for h in per_seed] for per_seed in heads]
    test_auc = [[_test_auroc(h, features, ood, temperature) for h in per_seed] for per_seed in heads]
    val_accuracy = np.array([np.mean([val[s][i][0] for s in range(seeds)]) for i in range(len(members))])

    # 2. trade-off models on the search objectives, knee of the whole front
    tpoints, tweights, acc_col, cpx_col = _trade_off_columns(names, points, weights, active, val_accuracy)
    picks = trade_off_models(tpoints, tweights, accuracy_index=acc_col, complexity_index=cpx_col)
    picks, pick_rule = _distinct_trade_offs(tpoints, tweights, acc_col, cpx_col, picks)
    knee_all = knee_point(points, weights)
    role = {}
    for name in reversed(TRADE_OFFS):  # coinciding picks share a label, e.g. "heavy+knee"
        role.setdefault(picks[name], [])
        role[picks[name]].insert(0, name)

    rows = []
    for i, ind in enumerate(members):
        cached = evaluator.lookup(genomes[i])
        search = {n: float(v) for n, v in zip(names, ind.fitness.values)}
        rows.append({
            "index": i,
            "search": search,
            "search_val_accuracy": _float(cached.accuracy) if cached else None,
            "search_val_auroc": _float(cached.auroc) if cached else None,
            "active_fraction": float(active[i]),
            "active_percent": round(100.0 * float(active[i]), 2),
            "active_features": int(encoding.decode(genomes[i]).units[0].sum()),
            "active_parameters": int(encoding.active_parameters(genomes[i])),
            "val_accuracy": float(val_accuracy[i]),
            "test_accuracy": _mean([test_acc[s][i] for s in range(seeds)]),
            "test_accuracy_std": _std([test_acc[s][i] for s in range(seeds)]),
            "test_accuracy_per_seed": [test_acc[s][i] for s in range(seeds)] if has_test else [],
            "test_auroc": _mean([test_auc[s][i] for s in range(seeds)]),
            "test_auroc_std": _std([test_auc[s][i] for s in range(seeds)]),
            "trade_off": "+".join(role.get(i, [])),
            "genome": pack_genome(genomes[i]),
        })

    artifacts: list[str] = []

    def log(path: Path, artifact_path: str | None) -> None:
        if tracker is not None:
            tracker.log_artifact(path, artifact_path)
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        artifacts.extend(f"{artifact_path}/{p.name}" if artifact_path else p.name for p in files)

    # 3. ensembles, every seed: members chosen on validation, reported on test
    ensembles = None
    if has_test:
        band = float(options.ensemble_band)
        per_seed = []
        for s in range(seeds):
            scores = [{"accuracy": a, "loss": l} for a, l in val[s]]
            result = evaluate_ensembles(heads[s], scores, features, ood, band=band, temperature=temperature)
            result.pop("members", None)
            per_seed.append(result)
        summary = {}
        for kind in ("best_single", "all", "banded"):
            summary[kind] = {
                "accuracy": _mean([r[kind]["accuracy"] for r in per_seed]),
                "accuracy_std": _std([r[kind]["accuracy"] for r in per_seed]),
                "auroc": _mean([r[kind]["auroc"] for r in per_seed]),
                "n_members": _mean([r[kind]["n_members"] for r in per_seed]),
            }
        summary["best_single"]["members"] = [r["best_single"]["members"][0] for r in per_seed]
        best_test = max((r["test_accuracy"] for r in rows if r["test_accuracy"] is not None), default=None)
        ensembles = {
            "split": "test", "band": band, "temperature": temperature, "seeds": seeds,
            "n_members": len(members), **summary,
            "best_test_member_accuracy": best_test,  # oracle (chosen on test): context only
            "per_seed": per_seed,
        }
        banded_any = set().union(*[set(r["banded"]["members"]) for r in per_seed])
    else:
        banded_any = set()

    # 4. CSV and plots
    header = ["member", *[f"val_{n}" for n in names], "search_val_accuracy", "search_val_auroc",
              "active_fraction", "active_features", "active_parameters", "retrain_val_accuracy",
              "test_accuracy", "test_accuracy_std", "test_auroc", "test_auroc_std", "trade_off",
              "banded_ensemble", "genome_length", "genome"]
    csv_rows = [
        [r["index"], *[r["search"][n] for n in names], r["search_val_accuracy"], r["search_val_auroc"],
         r["active_fraction"], r["active_features"], r["active_parameters"], r["val_accuracy"],
         r["test_accuracy"], r["test_accuracy_std"], r["test_auroc"], r["test_auroc_std"], r["trade_off"],
         int(r["index"] in banded_any), len(genomes[0]), r["genome"]]
        for r in rows
    ]
    pareto_dir = folder / "pareto"
    log(write_csv(pareto_dir / "pareto_front.csv", header, csv_rows), "pareto")
    plots = _plots(points, names, rows, picks, ood is not None and has_test, pareto_dir)
    for path in plots:
        log(path, "pareto")

    # 5. trade-off models as compact Keras models (the first retrain seed's heads)
    model_dir = folder / "tradeoff_models"
    model_dir.mkdir(parents=True, exist_ok=True)
    trade_offs: dict[str, Any] = {"distinct": len(set(picks.values())) == len(TRADE_OFFS), "rule": pick_rule}
    for name in TRADE_OFFS:
        i = picks[name]
        model = compact_model(heads[0][i], features.scaling)
        path = model_dir / f"{name}.keras"
        model.save(path)
        trade_offs[name] = {
            "member": i, "active_percent": rows[i]["active_percent"], "search": rows[i]["search"],
            "test_accuracy": rows[i]["test_accuracy"], "test_auroc": rows[i]["test_auroc"],
            "parameters": int(model.count_params()), "file": str(path),
            "artifact": f"tradeoff_models/{name}.keras",
        }
    log(model_dir, "tradeoff_models")

    # 6. explanations of the knee model
    explanations = None
    if options.explain and images is not None and options.backbone is not None:
        explain_dir = folder / "explanations" / "knee"
        explanations = _explain(options.backbone, encoding, features, heads[0][picks["knee"]], images, explain_dir, out)
        if explanations.get("files"):
            log(explain_dir, "explanations/knee")

    result = {
        "objectives": names,
        "weights": list(weights),
        "n_members": len(members),
        "hypervolume": hypervolume(points, weights),
        "hypervolume_test": _test_hypervolume(rows),
        "knee_all_objectives": int(knee_all),
        "retrain": {"seeds": seeds, "epochs": train_config.epochs, "early_stopping": train_config.early_stopping},
        "members": rows,
        "trade_offs": trade_offs,
        "ensembles": ensembles,
        "explanations": explanations,
        "local_dir": str(folder),
        "artifacts": artifacts,
        "seconds": round(time.perf_counter() - began, 2),
    }
    (folder / "pareto_report.json").write_text(json.dumps(result, indent=2, default=str))
    print(format_pareto_report(result), file=out)
    return result


def _test_hypervolume(rows: list[dict]) -> float | None:
    """Hypervolume of (test accuracy, active fraction[, test AUROC]) of the members."""
    from evoprune_tf.search.pareto import hypervolume

    if any(r["test_accuracy"] is None for r in rows):
        return None
    with_auc = all(r["test_auroc"] is not None for r in rows)
    cols = [[r["test_accuracy"], r["active_fraction"]] + ([r["test_auroc"]] if with_auc else []) for r in rows]
    weights = (1.0, -1.0, 1.0) if with_auc else (1.0, -1.0)
    return hypervolume(np.array(cols), weights)


def _plots(points: np.ndarray, names: list[str], rows: list[dict], picks: dict, with_auroc: bool,
           folder: Path) -> list[Path]:
    """Pareto plots of the search objectives and of the test metrics; knee star, heavy/light rings."""
    from evoprune_tf.report.plots import pareto_plots

    ends = sorted({picks["heavy"], picks["light"]})
    paths = []
    if points.shape[1] >= 2:
        paths.append(pareto_plots(points, [f"{n} (val)" for n in names], folder / "pareto_validation.png",
                                  knee_index=picks["knee"], highlight=ends))
    if all(r["test_accuracy"] is not None for r in rows):
        cols = [[r["test_accuracy"], r["active_fraction"]] + ([r["test_auroc"]] if with_auroc else []) for r in rows]
        test_names = ["test accuracy", "active fraction"] + (["test AUROC"] if with_auroc else [])
        paths.append(pareto_plots(np.array(cols), test_names, folder / "pareto_test.png",
                                  knee_index=picks["knee"], highlight=ends))
    return paths


def _explain(backbone: BackboneSpec, encoding: Any, features: FeatureSplits, head: Any, images: Any, folder: Path,
             out) -> dict:
    """Feature ranking and CAM overlays of one head (feature selection only); errors are reported, not raised."""
    from evoprune_tf.report.explain import feature_influence

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


def explain_images(backbone: BackboneSpec, head: Any, images: Any, folder: str | Path, *,
                   per_class: int = 2) -> list[Path]:
    """CAM overlays of ``per_class`` test images per class (validation images when test is empty).

    The backbone is rebuilt from ``backbone`` at the images' size; the head must have been
    trained on that backbone's pooled features.
    """
    from evoprune_tf.backbones import build_backbone
    from evoprune_tf.report.explain import save_explanations

    model = build_backbone(backbone.name, weights=backbone.weights, image_size=images.image_size,
                           **(backbone.options or {}))
    pixels, labels = images.test_images, images.test_labels
    if len(labels) == 0:
        pixels, labels = images.val_images, images.val_labels
    return save_explanations(model, head, pixels, labels, list(images.class_names), folder, per_class=per_class,
                             batch_size=max(1, int(backbone.batch_size)))


def format_pareto_report(report: dict) -> str:
    """A short human-readable summary of `pareto_report`'s dict."""
    names = report["objectives"]
    lines = [
        f"Pareto front: {report['n_members']} member(s) over {', '.join(names)}; "
        f"hypervolume {report['hypervolume']:.4f} (validation)"
        + (f", {report['hypervolume_test']:.4f} (test)" if report.get("hypervolume_test") is not None else "")
        + f"; retrained x{report['retrain']['seeds']} seeds",
        "  #   " + "  ".join(f"{n[:10]:>10}" for n in names) + "   active%   test_acc ± std   test_AUROC  model",
    ]
    for r in report["members"][:_TABLE_ROWS]:
        acc = r["test_accuracy"]
        std = r["test_accuracy_std"]
        lines.append(
            f"  {r['index']:<3} " + "  ".join(f"{r['search'][n]:>10.4f}" for n in names)
            + f"   {r['active_percent']:6.2f}   "
            + (f"{acc:.4f} ± {std:.4f}" if acc is not None else "      -        ")
            + f"   {_fmt(r['test_auroc']):>10}  {r['trade_off']}"
        )
    if report["n_members"] > _TABLE_ROWS:
        lines.append(f"  ... {report['n_members'] - _TABLE_ROWS} more in pareto/pareto_front.csv")
    ens = report.get("ensembles")
    if ens:
        lines.append(
            f"Ensembles (soft vote, test, mean of {ens['seeds']} seed(s); AUROC at T={ens['temperature']:g}):"
        )
        for kind, label in (("best_single", "best single (val)"), ("all", "all members"),
                            ("banded", f"within {ens['band']:g} of best")):
            e = ens[kind]
            lines.append(
                f"  {label:<20} n={e['n_members']:<5.1f} accuracy {e['accuracy']:.4f} ± {e['accuracy_std']:.4f}"
                f"   AUROC {_fmt(e['auroc'])}"
            )
    t = report["trade_offs"]
    lines.append(
        "Trade-off models: " + "; ".join(
            f"{n} #{t[n]['member']} ({t[n]['active_percent']:.1f}% active, test acc {_fmt(t[n]['test_accuracy'])})"
            for n in TRADE_OFFS
        )
    )
    ex = report.get("explanations")
    if ex and ex.get("files"):
        lines.append(f"Explanations: {len(ex['files'])} file(s) in {Path(ex['files'][0]).parent}")
    lines.append(f"Report files in {report['local_dir']}")
    return "\n".join(lines)
