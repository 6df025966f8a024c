"""`run_filter_pruning(config)`: DeepPruningES from images to three tracked, exported compact models.

``algorithm.name = "deep_pruning_es"`` with ``encoding.name = "filters"``: `evoprune_tf.app.run.run`
hands such configs here. The steps:

1. cheap checks (tracking store, output folders, ImageNet weights), then the network:
   the flat Keras Applications backbone (``include_top=False``, average pooling) with a
   softmax Dense head, and the `FilterPruning` encoding over its last ``encoding.blocks``
   blocks: a layer the coupling analysis cannot handle, or ``blocks`` larger than the
   network, fails here in one line, before any image is read;
2. images (`load_run_images`), preprocessed with the backbone's ``preprocess_input``;
   the `FilterEvaluator` computes the frozen prefix's activations once (cached on disk
   next to the feature cache) and the head is warmed up on the unpruned network's
   pooled features (DeepPruningES prunes a trained network);
3. `deep_pruning_es` with progress, MLflow, checkpoint/resume and early stop (on the
   hypervolume) callbacks; generation 0 is the unpruned genome alone;
4. the final report: heavy, knee and light of the Pareto archive and the unpruned network
   are retrained for ``report.epochs`` (same seeds), scored on test, their FLOPs and
   parameters counted and their latency measured by `evoprune_tf.report.latency` (LiteRT
   at batch 1 on 1 and 2 threads when ``report.litert`` allows, Keras at batch 32); a table
   (CSV + markdown), the latency table, a FLOPs-vs-accuracy plot, the ``.tflite`` files and
   the three compact ``.keras`` models go to MLflow.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoprune_tf.app.build import image_size, load_run_images, seed_everything, tracker_options, weights_arg
from evoprune_tf.app.config import ExperimentConfig, check_output_locations, checkpoint_dir, operator_specs, report_files
from evoprune_tf.backbones import backbone_info, build_backbone
from evoprune_tf.model_files import is_model_file, load_model_file
from evoprune_tf.features.extract import check_imagenet_weights, default_cache_dir, feature_cache_key
from evoprune_tf.filter_evaluation import FilterEvaluator
from evoprune_tf.report.latency import report_latency
from evoprune_tf.report.text import mean_std, plural
from evoprune_tf.search import algorithms
from evoprune_tf.search.callbacks import Callback, EarlyStop, ProgressBar
from evoprune_tf.search.checkpoint import (
    CheckpointCallback,
    checkpoint_target,
    load_checkpoint,
    restore_evaluator,
    restore_rng,
)
from evoprune_tf.search.statistics import make_front_record
from evoprune_tf.search.toolbox import build_toolbox
from evoprune_tf.tracking import check_tracking_uri, resolve_tracking_uri
from evoprune_tf.tracking.redact import redact_uri
from evoprune_tf.tracking.store import absolute_tracking_uri, check_resumable
from evoprune_tf.tracking.tracker import ConfigArtifact, DatasetInput, MLflowTracker
from evoprune_tf.train.config import derive_seed
from operators.selection import heavy_knee_light

__all__ = [
    "FilterRunResult",
    "HEAD_WARMUP_EPOCHS",
    "build_filter_network",
    "run_filter_pruning",
    "trade_off_table",
]

#: Epochs of the head warm-up on the unpruned network's pooled features (Adam, lr 1e-3).
HEAD_WARMUP_EPOCHS = 30
#: Names of the models of the final table, in order.
MODEL_NAMES = ("unpruned", "heavy", "knee", "light")


@dataclasses.dataclass
class FilterRunResult:
    """What `run_filter_pruning` returns (and logs to MLflow).

    Attributes:
        config: The run's config.
        evaluator: The `FilterEvaluator` (encoding, cache, prefix activations).
        population: The last population.
        logbook: One record per generation (hypervolume, front size...).
        halloffame: The Pareto archive of every evaluated genome.
        genomes: ``{"unpruned" | "heavy" | "knee" | "light": genome}``.
        table: One row per model of `MODEL_NAMES` (see `trade_off_table`).
        report: The JSON report (also ``report.json`` in MLflow).
        models: The compact deployable Keras models by name (images in 0..255 -> probabilities).
        files: Local paths of the table, markdown and plot.
        run_id: The MLflow run id (None without tracking).
        checkpoint: The checkpoint file (None without checkpoints).
        seconds: Wall time of the whole run.
    """

    config: ExperimentConfig
    evaluator: Any
    population: list
    logbook: Any
    halloffame: Any
    genomes: dict[str, np.ndarray]
    table: list[dict]
    report: dict
    models: dict[str, Any]
    files: dict[str, Path]
    run_id: str | None
    checkpoint: Path | None
    seconds: float

    @property
    def best(self) -> np.ndarray:
        """The knee genome (the recommended trade-off)."""
        return np.asarray(self.genomes["knee"])


def build_filter_network(
    backbone: str,
    *,
    weights: str | None,
    image_size: int,
    n_classes: int,
    options: dict | None = None,
) -> tuple[Any, str]:
    """The flat network DeepPruningES prunes: preprocessed images -> backbone -> pooling -> softmax.

    Args:
        backbone: A `evoprune_tf.backbones` name.
        weights: ``"imagenet"``, a weights file or None (random).
        image_size: Input side in pixels.
        n_classes: Classes of the softmax head (named ``"predictions"``).
        options: Backbone options (``alpha``...).

    Returns:
        ``(model, preprocess_module)``: a functional model taking *preprocessed* images, and
        the ``keras.applications`` module whose ``preprocess_input`` prepares them. For a
        ``.keras`` file (a user's own model) the model as saved, head included, and ``None``:
        its input gets the raw pixels (0..255), any preprocessing is the model's own.
    """
    import keras

    if is_model_file(backbone):
        return load_model_file(backbone), None

    wrapper = build_backbone(backbone, weights=weights, image_size=image_size, **(options or {}))
    application = wrapper.layers[-1]  # image -> preprocessing -> application: the application is flat
    application.trainable = True
    head = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(application.output)
    model = keras.Model(application.input, head, name=f"{application.name}_classifier")
    return model, backbone_info(backbone).preprocess_module


def _preprocessed_splits(images: Any, module: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import keras

    if module is None:  # a user's own model: raw pixels, as it was trained
        return {s: (np.asarray(x, np.float32), np.asarray(y)) for s, (x, y) in images.splits().items()}

    preprocess = getattr(keras.applications, module).preprocess_input
    # preprocess_input edits float arrays in place: give it a fresh copy per split.
    return {s: (np.asarray(preprocess(np.array(x, dtype=np.float32)), np.float32), np.asarray(y))
            for s, (x, y) in images.splits().items()}


def _warm_up_head(evaluator: Any, *, epochs: int, seed: int) -> float:
    """Train the head Dense on the unpruned network's pooled features; returns its validation accuracy."""
    import keras

    suffix = evaluator.suffix
    head = suffix.get_layer("predictions")
    pooled = keras.Model(suffix.inputs[0], head.input)
    features = {s: np.asarray(pooled.predict(x, batch_size=evaluator.batch_size, verbose=0)) if len(x) else x
                for s, (x, _) in evaluator.activations.items()}
    keras.utils.set_random_seed(derive_seed(seed, "head-warmup") % 2**32)
    probe_in = keras.Input(shape=(features["train"].shape[1],))
    probe = keras.Model(probe_in, keras.layers.Dense(head.units, activation="softmax")(probe_in))
    probe.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", jit_compile=False)
    probe.fit(features["train"], evaluator.activations["train"][1], batch_size=32, epochs=epochs, verbose=0)
    weights = probe.layers[-1].get_weights()
    head.set_weights(weights)
    evaluator.model.get_layer("predictions").set_weights(weights)
    val = np.argmax(probe.predict(features["val"], verbose=0), axis=1)
    return float(np.mean(val == evaluator.activations["val"][1]))


def _deployable(evaluator: Any, pruned_suffix: Any, module: str, name: str) -> Any:
    """Images in 0..255 -> preprocessing -> frozen prefix -> pruned suffix, one saveable model."""
    import keras

    # Defined on first use (it is a Keras layer): `evoprune_tf.backbones` loads without Keras.
    from evoprune_tf.backbones import BackbonePreprocessing

    compact = evaluator.compact_model(pruned_suffix, name=f"{name}_core")
    inputs = keras.Input(shape=tuple(evaluator.model.inputs[0].shape[1:]), name="image")
    x = inputs if module is None else BackbonePreprocessing(module, name="preprocess")(inputs)
    return keras.Model(inputs, compact(x), name=name)


def trade_off_table(rows: list[dict]) -> list[dict]:
    """Add reductions in % relative to the ``unpruned`` row.

    Args:
        rows: Dicts with ``model``, ``flops_searched``, ``flops_network``, ``params_network``
            (the first is the unpruned model).

    Returns:
        The rows with ``*_reduction_pct`` columns added.
    """
    base = next(r for r in rows if r["model"] == "unpruned")
    for row in rows:
        for key in ("flops_searched", "flops_network", "params_searched", "params_network"):
            row[f"{key}_reduction_pct"] = round(100.0 * (1.0 - row[key] / base[key]), 2) if base[key] else 0.0
    return rows


#: The latency helper's columns a trade-off row takes (`evoprune_tf.report.latency.latency_table`).
_LATENCY_PREFIXES = ("litert_", "keras_ms_", "tflite_bytes")
_COLUMNS = ("model", "test_accuracy", "test_accuracy_std", "val_accuracy", "flops_searched", "flops_network",
            "params_searched", "params_network", "litert_ms_b1_t1", "litert_ms_b1_t2", "keras_ms_b32",
            "flops_searched_reduction_pct", "flops_network_reduction_pct", "params_network_reduction_pct",
            "litert_ms_b1_t1_reduction_pct", "litert_ms_b1_t2_reduction_pct", "keras_ms_b32_reduction_pct",
            "litert_max_abs_diff", "tflite_bytes", "kept_filters", "repairs")


def _markdown(rows: list[dict], seeds: int = 1) -> str:
    """The trade-off table as Markdown; test accuracy with ``± std`` over ``seeds`` retrains when more than one."""
    head = ["model", "test acc" if seeds == 1 else f"test acc (mean ± std, {plural(seeds, 'seed')})",
            "FLOPs searched (M)", "FLOPs network (M)", "params (k)", "LiteRT b1 1 thread (ms)",
            "LiteRT b1 2 threads (ms)", "Keras b32 (ms)", "FLOPs searched -%", "FLOPs network -%", "params -%",
            "LiteRT 1 thread -%", "Keras b32 -%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(row: dict, key: str, fmt: str = ".2f") -> str:
        return format(row[key], fmt) if key in row else "-"  # LiteRT columns are absent when it is off

    for r in rows:
        lines.append("| " + " | ".join([
            r["model"], mean_std(r["test_accuracy"], r.get("test_accuracy_std"), seeds),
            f"{r['flops_searched'] / 1e6:.2f}", f"{r['flops_network'] / 1e6:.2f}",
            f"{r['params_network'] / 1e3:.1f}", cell(r, "litert_ms_b1_t1"), cell(r, "litert_ms_b1_t2"),
            cell(r, "keras_ms_b32"), f"{r['flops_searched_reduction_pct']:.1f}",
            f"{r['flops_network_reduction_pct']:.1f}", f"{r['params_network_reduction_pct']:.1f}",
            cell(r, "litert_ms_b1_t1_reduction_pct", ".1f"), cell(r, "keras_ms_b32_reduction_pct", ".1f")]) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], front: list[tuple[float, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    if front:
        f = np.asarray(front)
        ax.scatter(f[:, 1] / 1e6, 1.0 - f[:, 0], s=14, c="0.7", label="archive (validation)")
    colors = {"unpruned": "black", "heavy": "tab:blue", "knee": "tab:red", "light": "tab:green"}
    for r in rows:
        ax.scatter(r["flops_network"] / 1e6, r["test_accuracy"], s=60, c=colors.get(r["model"], "tab:purple"),
                   label=f"{r['model']} (test)", zorder=3)
    ax.set_xlabel("network FLOPs (M, 2 x MACs)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _final_report(config: ExperimentConfig, evaluator: Any, halloffame: Any, module: str | None, folder: Path,
                  out: Any) -> tuple[dict[str, np.ndarray], list[dict], dict[str, Any], dict[str, Path]]:
    archive = list(halloffame)
    error_col = list(evaluator.objectives).index("error")
    cpx_col = 1 if error_col == 0 else 0
    heavy, knee, light = heavy_knee_light(archive, 3, accuracy_index=error_col, complexity_index=cpx_col)
    genomes = {"unpruned": evaluator.encoding.unpruned(), "heavy": np.asarray(heavy), "knee": np.asarray(knee),
               "light": np.asarray(light)}
    rows, models = [], {}
    for name, genome in genomes.items():
        keep, repairs = evaluator.encoding.decode_with_repairs(genome)
        accs, vals, model = [], [], None
        for r in range(config.report.seeds):
            trained = evaluator.fine_tune(keep, epochs=config.report.epochs, seed=derive_seed(config.seed, "final", r))
            accs.append(evaluator.score(trained, "test")[0])
            vals.append(evaluator.score(trained, "val")[0])
            if r == 0:
                model = trained
        record = evaluator.describe(model, keep, repairs, vals[0], float("nan"), config.report.epochs)
        models[name] = _deployable(evaluator, model, module, name=f"{name}_model")
        rows.append({
            "model": name, "test_accuracy": float(np.mean(accs)), "test_accuracy_std": float(np.std(accs)),
            "val_accuracy": float(np.mean(vals)), "flops_searched": record.flops, "flops_network": record.network_flops,
            "params_searched": record.params, "params_network": record.network_params,
            "kept_filters": record.kept_filters, "repairs": record.repairs,
        })
        print(f"final {name}: test accuracy {mean_std(float(np.mean(accs)), float(np.std(accs)), len(accs))}"
              f", network FLOPs {record.network_flops / 1e6:.2f} M", file=out)
    # One latency helper for every method: LiteRT (b1, 1 and 2 threads) when on, Keras b32; .tflite files.
    latency, files = report_latency(models, setting=config.report.litert, folder=folder, seed=config.seed, out=out,
                                    flops={r["model"]: r["flops_network"] for r in rows})
    for row, measured in zip(rows, latency):
        row.update({k: v for k, v in measured.items() if k.startswith(_LATENCY_PREFIXES)})
    rows = trade_off_table(rows)
    files = {**{f"latency_{k}" if k in ("csv", "markdown") else k: v for k, v in files.items()},
             "csv": folder / "trade_off_models.csv", "markdown": folder / "trade_off_models.md",
             "plot": folder / "flops_vs_accuracy.png"}
    with open(files["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_COLUMNS) + ["params_searched_reduction_pct"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    files["markdown"].write_text(_markdown(rows, config.report.seeds))
    front = []
    for ind in archive:
        e = evaluator.lookup(ind)
        if e is not None:
            front.append((e.error, e.network_flops))
    _plot(rows, front, files["plot"], f"{config.name}: DeepPruningES (seed {config.seed})")
    return genomes, rows, models, files


def run_filter_pruning(
    config: ExperimentConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    images: Any = None,
    network: Any = None,
    output_dir: str | Path | None = None,
    head_epochs: int = HEAD_WARMUP_EPOCHS,
    out: Any = None,
    banner: str = "",
    allow_pickle: bool = False,
) -> FilterRunResult:
    """Run DeepPruningES as ``config`` describes (``algorithm.name = "deep_pruning_es"``).

    Args:
        config: A validated config with encoding ``filters``.
        callbacks: Extra callbacks, called after the built-in ones.
        checkpoint: Resume from this checkpoint (file or folder) instead of starting.
        images: Use these `ImageSplits` instead of loading ``data.source`` (tests, notebooks).
        network: ``(model, preprocess_module)`` to prune instead of the configured
            backbone (a functional model taking preprocessed images, softmax Dense named
            ``"predictions"`` last, warmed up on the images), or a user's own trained
            ``keras.Model`` (functional or Sequential, softmax output, raw 0..255 pixels in),
            pruned whole as it is.
        output_dir: Where the table, markdown and plot are written (default:
            `evoprune_tf.app.config.report_folder`, i.e. ``report.dir`` or
            ``<store folder>/reports/<run id>``; with a tracking server a temporary folder,
            logged to MLflow and then removed, and ``files`` is then empty).
        head_epochs: Epochs of the head warm-up (0: none).
        out: Stream for the human-readable lines (default stdout).
        banner: a line to print once the cheap input checks passed (the Keras backend `evoprune run` chose).
        allow_pickle: Resume from an old pickle checkpoint (only one you trust: unpickling
            can run code); data-only checkpoints need no permission.

    Returns:
        A `FilterRunResult`.

    Raises:
        ValueError: One line, before images are read, for a layer the coupling analysis
            cannot handle, ``encoding.blocks`` larger than the network, a bad config.
    """
    import keras

    # Loads Keras (its coupling analysis works on Keras graphs): only when a filter run starts.
    from evoprune_tf.filter_encoding import FilterPruning

    out = out or sys.stdout
    began = time.time()
    if config.algorithm.name != "deep_pruning_es" or config.encoding.name != "filters":
        raise ValueError(f"algorithm {config.algorithm.name!r} / encoding {config.encoding.name!r}: expected "
                         "'deep_pruning_es' with encoding 'filters'")
    resumed = (load_checkpoint(checkpoint, config_dict=config.to_dict(), allow_pickle=allow_pickle)
               if checkpoint else None)
    if config.tracking.enabled:
        check_tracking_uri(resolve_tracking_uri(config.tracking.uri))
        if resumed is not None and resumed.run_id:
            check_resumable(resumed.run_id, resolve_tracking_uri(config.tracking.uri),
                            generation=resumed.state.generation, recorded_uri=resumed.tracking_uri,
                            digest=resumed.digest, previous_digest=resumed.previous_digest)
    check_output_locations(config, features_cached=False)
    own_file = network is None and is_model_file(config.backbone.name)
    if isinstance(network, keras.Model):
        network = (network, None)
    size = image_size(config)
    if network is None and not own_file and config.backbone.weights == "imagenet":
        check_imagenet_weights(config.backbone.name, image_size=size, options=config.backbone.options)
    if banner:  # after the cheap checks: a bad input is one line
        print(banner, file=out)
    seed_everything(config.seed)
    keras.utils.set_random_seed(config.seed % 2**32)
    if network is None:
        # The class count is only known from the images: a placeholder head lets a graph the
        # coupling analysis cannot handle, or too many blocks, fail before any image is read.
        model, module = build_filter_network(config.backbone.name, weights=weights_arg(config), image_size=size,
                                             n_classes=images.n_classes if images is not None else 2,
                                             options=config.backbone.options or None)
    else:
        model, module = network
    side = tuple(model.inputs[0].shape)[1:3]
    if module is None and side != (size, size):
        raise ValueError(f"model '{model.name}' takes {side[0]}x{side[1]} images; data.image_size={size}: "
                         f"expected data.image_size = {side[0]}")
    FilterPruning(model, config.encoding.blocks)  # the one-line errors, before long work
    if images is None:
        images = load_run_images(config.data.source, config, name=config.data.name or None)
    if module is None and int(model.outputs[0].shape[-1]) != images.n_classes:
        raise ValueError(f"model '{model.name}' outputs {int(model.outputs[0].shape[-1])} classes; "
                         f"expected {images.n_classes}, the classes of {images.name or config.data.source!r}")
    if network is None and int(model.outputs[0].shape[-1]) != images.n_classes:
        keras.utils.set_random_seed(derive_seed(config.seed, "head") % 2**32)
        pooled = model.get_layer("predictions").input
        head = keras.layers.Dense(images.n_classes, activation="softmax", name="predictions")(pooled)
        model = keras.Model(model.inputs[0], head, name=model.name)
    encoding = FilterPruning(model, config.encoding.blocks)
    print(images.summary(), file=out)
    print(encoding.describe() + f"; cut after '{encoding.cut_layer}'", file=out)
    cache_key = _activation_cache_key(config, images, size) if network is None and not own_file else None
    evaluator = FilterEvaluator(
        encoding, _preprocessed_splits(images, module), config.train, seed=config.seed,
        objectives=tuple(config.objectives.names), batch_size=config.backbone.batch_size,
        cache_dir=Path(config.cache_dir) if config.cache_dir else default_cache_dir(), cache_key=cache_key,
    )
    print(f"prefix activations {'from cache' if evaluator.activations_from_disk else 'computed'} "
          f"({evaluator.prefix_seconds:.1f} s): train {evaluator.activations['train'][0].shape}", file=out)
    if head_epochs > 0 and module is not None:  # a user's own model comes trained
        head_acc = _warm_up_head(evaluator, epochs=head_epochs, seed=config.seed)
        print(f"head warm-up: {head_epochs} epochs, validation accuracy {head_acc:.4f}", file=out)
    toolbox = build_toolbox(evaluator, operator_specs(config.operators))
    seed_everything(config.seed)
    state, population = None, None
    if resumed is not None:
        restore_evaluator(resumed, evaluator)
        state = resumed.state
        state.stop = bool(state.stop and state.info.get("stopped_early") is not None and config.algorithm.early_stop)
    else:
        first = toolbox.individual()
        first[:] = 1  # generation 0 is the unpruned network alone, whatever the initialiser
        population = [first]
    cbs: list[Callback] = []
    if config.algorithm.early_stop:
        cbs.append(EarlyStop(config.algorithm.early_stop, key="hypervolume"))
    tracker = None
    if config.tracking.enabled:
        tracker = MLflowTracker(**tracker_options(config), stats=evaluator.stats,
                                run_id=resumed.run_id if resumed else None, log_fronts=True,
                                objective_names=list(config.objectives.names))
        cbs += [tracker, ConfigArtifact(tracker, config.to_dict()),
                DatasetInput(tracker, name=config.data.name or images.name, digest=images.content_hash(),
                             source=config.data.source,
                             profile={"train": len(images.train_labels), "val": len(images.val_labels),
                                      "test": len(images.test_labels), "classes": images.n_classes})]
    ckpt = None
    if config.checkpoint.enabled:
        ckpt = CheckpointCallback(checkpoint_target(checkpoint), directory=checkpoint_dir(config),
                                  config_dict=config.to_dict(), resumed=resumed,
                                  evaluator=evaluator, run_id=lambda: tracker.run_id if tracker else None,
                                  every=config.checkpoint.every, tracking_uri=lambda: _absolute_uri(tracker),
                                  on_save=tracker.checkpoint_saved if tracker else None)
        cbs.append(ckpt)
    cbs.append(ProgressBar(stats=evaluator.stats, disable=not config.progress))
    cbs.extend(callbacks)
    if resumed is not None:
        restore_rng(resumed)
    halloffame = state.halloffame if state else algorithms.new_halloffame(True)
    try:
        population, logbook = algorithms.deep_pruning_es(
            population, toolbox, generations=config.algorithm.generations,
            population_size=config.algorithm.population, halloffame=halloffame, callbacks=cbs,
            record=make_front_record(), state=state)
    except BaseException as error:
        if tracker is not None:
            tracker.finish(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        if ckpt is not None and ckpt.path is not None and ckpt.path.exists():
            print(f"\nRun stopped ({type(error).__name__}). Resume with: evoprune resume {ckpt.path}", file=out)
        raise
    search_seconds = time.time() - began
    location = contextlib.ExitStack()
    folder = (Path(output_dir) if output_dir is not None
              else location.enter_context(report_files(config, tracker.run_id if tracker else None)))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        genomes, table, models, files = _final_report(config, evaluator, halloffame, module, folder, out)
        knee = next(r for r in table if r["model"] == "knee")
        report = {
            "method": "deep_pruning_es", "encoding": encoding.config(), "table": table,
            "search": {"generations": int(logbook[-1]["gen"]), "evaluations": int(logbook[-1]["evaluations"]),
                       **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in evaluator.stats().items()},
                       "rss_trace_mb": evaluator.rss_trace, "search_seconds": round(search_seconds, 2),
                       "hypervolume": float(logbook[-1].get("hypervolume", 0.0))},
            "test_accuracy_mean": knee["test_accuracy"],
            "wall_seconds": round(time.time() - began, 2),
        }
        (folder / "report.json").write_text(json.dumps(report, indent=2, default=float))
        print(_markdown(table, config.report.seeds), file=out)
        if tracker is not None:
            summary = {f"{r['model']}_{k}": r[k] for r in table for k in
                       ("test_accuracy", "flops_searched_reduction_pct", "flops_network_reduction_pct",
                        "params_network_reduction_pct", "keras_ms_b32", "litert_ms_b1_t1", "litert_ms_b1_t2",
                        "litert_ms_b1_t1_reduction_pct") if k in r}
            tracker.log_metrics({**summary, "test_accuracy_mean": knee["test_accuracy"]}, step=int(logbook[-1]["gen"]))
            for key in ("csv", "markdown", "plot", "latency_csv", "latency_markdown"):
                tracker.log_artifact(files[key], "report")
            for key in (k for k in files if k.endswith(".tflite")):
                tracker.log_artifact(files[key], "litert")
            tracker.log_report(report)
            if config.report.export_model:
                for name in ("heavy", "knee", "light"):
                    tracker.log_keras_model(models[name], name=f"{name}_model")
            tracker.finish()
            print(f"MLflow run {tracker.run_id} in {redact_uri(tracker.uri)}", file=out)
    except BaseException as error:
        if tracker is not None:
            tracker.finish(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise
    finally:
        location.close()  # removes a temporary folder (tracking server), after its files were logged
        if not folder.exists():
            files = {}
    return FilterRunResult(config, evaluator, population, logbook, halloffame, genomes, table, report, models,
                           files, tracker.run_id if tracker else None, ckpt.path if ckpt else None,
                           time.time() - began)


def _activation_cache_key(config: ExperimentConfig, images: Any, size: int) -> str:
    """What identifies the prefix activations besides the cut: backbone, options, weights, size, images.

    The images enter through `ImageSplits.content_hash` (splits, order and labels), not the
    feature cache's order-free digest: activations are stored per split, in order.
    """
    return feature_cache_key(images.content_hash(), backbone=config.backbone.name, weights=weights_arg(config),
                             image_size=size, backbone_kwargs=config.backbone.options or None)


def _absolute_uri(tracker: MLflowTracker | None) -> str | None:
    if tracker is None or not tracker.uri:
        return None
    return redact_uri(absolute_tracking_uri(tracker.uri))  # what the checkpoint stores: no password
