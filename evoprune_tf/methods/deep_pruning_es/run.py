"""`run_filter_pruning(config)`: DeepPruningES from images to three tracked, exported compact models.

``algorithm.name = "deep_pruning_es"`` with ``encoding.name = "filters"``: the method's
``run(session)`` is `run_deep_pruning_es`; the session (`evoprune_tf.session.RunSession`)
does the preflight, seeding, MLflow run, checkpoint/resume and callbacks. The steps:

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
   are retrained for ``report.epochs`` (same seeds), scored on test, their FLOPs,
   parameters counted and latency measured (`evoprune_tf.report.latency`: LiteRT b1 on 1 and 2 threads, Keras b32); a table (CSV + markdown),
   a FLOPs-vs-accuracy plot and the three compact ``.keras`` models go to MLflow.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoprune_tf.methods.registry import get_method
from evoprune_tf.backbones import backbone_info, build_backbone
from evoprune_tf.features.extract import default_cache_dir, feature_cache_key
from evoprune_tf.methods.deep_pruning_es.evaluation import FilterEvaluator
from evoprune_tf.model_files import is_model_file, load_model_file
from evoprune_tf.methods.deep_pruning_es.report import (final_report, markdown_table, report_artifacts,
                                                      summary_metrics)
from evoprune_tf.methods.inputs import head_title, image_size, load_run_images, operator_specs, weights_arg
from evoprune_tf.search import algorithms
from evoprune_tf.search.callbacks import Callback
from evoprune_tf.search.statistics import make_front_record
from evoprune_tf.search.toolbox import build_toolbox
from evoprune_tf.session import run_method
from evoprune_tf.train.config import derive_seed

__all__ = ["FilterRunResult", "HEAD_WARMUP_EPOCHS", "build_filter_network", "run_deep_pruning_es",
           "run_filter_pruning"]

#: Epochs of the head warm-up on the unpruned network's pooled features (Adam, lr 1e-3).
HEAD_WARMUP_EPOCHS = 30


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

    config: Any
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


def run_filter_pruning(
    config: Any,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    images: Any = None,
    network: Any = None,
    output_dir: str | Path | None = None,
    head_epochs: int = HEAD_WARMUP_EPOCHS,
    out: Any = None,
    allow_pickle: bool = False,
) -> FilterRunResult:
    """Run DeepPruningES as ``config`` describes (``algorithm.name = "deep_pruning_es"``) in a run session.

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
            `evoprune_tf.session.report_folder`, i.e. ``report.dir`` or
            ``<store folder>/reports/<run id>``; with a tracking server a temporary folder,
            logged to MLflow and then removed, and ``files`` is then empty).
        head_epochs: Epochs of the head warm-up (0: none).
        out: Stream for the human-readable lines (default stdout).
        allow_pickle: Resume from an old pickle checkpoint (only one you trust: unpickling
            can run code); data-only checkpoints need no permission.

    Returns:
        A `FilterRunResult`.

    Raises:
        ValueError: One line, before images are read, for a layer the coupling analysis
            cannot handle, ``encoding.blocks`` larger than the network, a bad config.
    """
    # The registered method, looked up by name: method.py imports this module's pipeline.
    return run_method(config, get_method("deep_pruning_es"), callbacks=callbacks, checkpoint=checkpoint, out=out,
                      allow_pickle=allow_pickle, images=images, network=network, output_dir=output_dir,
                      head_epochs=head_epochs)


def _network_and_images(session: Any, check: Any = None) -> tuple[Any, str, Any]:
    """The network to prune (checked by the coupling analysis before any image is read) and the images.

    ``check(model, encoding)``, when given, runs after the encoding is built and before any
    image is read (a filter baseline checks its FLOPs target there).
    """
    import keras

    # Loads Keras (its coupling analysis works on Keras graphs): only when a filter run starts.
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning

    config, images, network = session.config, session.inputs.get("images"), session.inputs.get("network")
    if isinstance(network, keras.Model):  # a user's own trained model, pruned whole
        network = (network, None)
    size = image_size(config)
    keras.utils.set_random_seed(config.seed % 2**32)
    if network is None:
        # The class count is only known from the images: a placeholder head lets a graph the
        # coupling analysis cannot handle, or too many blocks, fail before any image is read.
        model, module = build_filter_network(config.backbone.name, weights=weights_arg(config),
                                             image_size=size,
                                             n_classes=images.n_classes if images is not None else 2,
                                             options=config.backbone.options or None)
    else:
        model, module = network
    side = tuple(model.inputs[0].shape)[1:3]
    if module is None and side != (size, size):
        raise ValueError(f"model '{model.name}' takes {side[0]}x{side[1]} images; data.image_size={size}: "
                         f"expected data.image_size = {side[0]}")
    encoding = FilterPruning(model, config.encoding.blocks, config.encoding.round_to)  # one-line errors first
    if check is not None:
        check(model, encoding)
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
    return model, module, images


def _evaluator(session: Any, model: Any, module: str, images: Any) -> Any:
    """The `FilterEvaluator` (prefix activations computed once, cached), the head warmed up."""
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning

    config, out = session.config, session.out
    encoding = FilterPruning(model, config.encoding.blocks, config.encoding.round_to)
    print(images.summary(), file=out)
    print(encoding.describe() + f"; cut after '{encoding.cut_layer}'", file=out)
    own = session.inputs.get("network") is not None or is_model_file(config.backbone.name)
    cache_key = None if own else _activation_cache_key(config, images, image_size(config))
    evaluator = FilterEvaluator(
        encoding, _preprocessed_splits(images, module), config.train, seed=config.seed,
        objectives=tuple(config.objectives.names), batch_size=config.backbone.batch_size,
        cache_dir=Path(config.cache_dir) if config.cache_dir else default_cache_dir(), cache_key=cache_key,
    )
    print(f"prefix activations {'from cache' if evaluator.activations_from_disk else 'computed'} "
          f"({evaluator.prefix_seconds:.1f} s): train {evaluator.activations['train'][0].shape}", file=out)
    head_epochs = session.inputs.get("head_epochs", HEAD_WARMUP_EPOCHS)
    if head_epochs > 0 and module is not None:  # a user's own model comes trained
        head_acc = _warm_up_head(evaluator, epochs=head_epochs, seed=config.seed)
        print(f"head warm-up: {head_epochs} epochs, validation accuracy {head_acc:.4f}", file=out)
    return evaluator


def run_deep_pruning_es(session: Any) -> FilterRunResult:
    """DeepPruningES inside a prepared `RunSession` (the method's ``run``).

    Session inputs: ``images``, ``network``, ``output_dir``, ``head_epochs`` (see `run_filter_pruning`).
    """
    config, out = session.config, session.out
    model, module, images = _network_and_images(session)
    evaluator = _evaluator(session, model, module, images)
    toolbox = build_toolbox(evaluator, operator_specs(config.operators))
    session.seed()
    state = session.restore(evaluator)
    population = None
    if state is None:
        first = toolbox.individual()
        first[:] = 1  # generation 0 is the unpruned network alone, whatever the initialiser
        population = [first]
    dataset = dict(name=config.data.name or images.name, digest=images.content_hash(), source=config.data.source,
                   profile={"train": len(images.train_labels), "val": len(images.val_labels),
                            "test": len(images.test_labels), "classes": images.n_classes})
    cbs = session.callbacks(evaluator, early_stop_key="hypervolume", dataset=dataset, log_fronts=True,
                            objective_names=list(config.objectives.names), title=head_title(config))
    session.restore_rng()
    halloffame = state.halloffame if state else algorithms.new_halloffame(True)
    with session.guard("Run"):
        population, logbook = algorithms.deep_pruning_es(
            population, toolbox, generations=config.algorithm.generations,
            population_size=config.algorithm.population, halloffame=halloffame, callbacks=cbs,
            record=make_front_record(), state=state)
    search_seconds = session.elapsed
    output_dir = session.inputs.get("output_dir")
    with session.report_folder(output_dir) as folder:
        try:
            genomes, table, models, files = final_report(config, evaluator, halloffame, module, folder, out)
            report = _report(config, evaluator, logbook, table, search_seconds, session.elapsed)
            (folder / "report.json").write_text(json.dumps(report, indent=2, default=float))
            print(markdown_table(table, config.report.seeds), file=out)
            summary = summary_metrics(table)
            exported = {f"{n}_model": models[n] for n in ("heavy", "knee", "light")} if config.report.export_model else {}
            session.finish(report, metrics={**summary, "test_accuracy_mean": report["test_accuracy_mean"]},
                           step=int(logbook[-1]["gen"]),
                           artifacts=report_artifacts(files), models=exported)
        except BaseException as error:
            session.fail(error)
            raise
    if not folder.exists():  # a temporary folder (tracking server): its files were logged, then removed
        files = {}
    return FilterRunResult(config, evaluator, population, logbook, halloffame, genomes, table, report, models,
                           files, session.run_id, session.checkpoint_file, session.elapsed)


def _report(config: Any, evaluator: Any, logbook: Any, table: list[dict], search_seconds: float,
            wall_seconds: float) -> dict:
    """The JSON report of a DeepPruningES run (``report.json``)."""
    knee = next(r for r in table if r["model"] == "knee")
    return {
        "method": "deep_pruning_es", "encoding": evaluator.encoding.config(), "table": table,
        "search": {"generations": int(logbook[-1]["gen"]), "evaluations": int(logbook[-1]["evaluations"]),
                   **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in evaluator.stats().items()},
                   "rss_trace_mb": evaluator.rss_trace, "search_seconds": round(search_seconds, 2),
                   "hypervolume": float(logbook[-1].get("hypervolume", 0.0))},
        "test_accuracy_mean": knee["test_accuracy"],
        "wall_seconds": round(wall_seconds, 2),
    }


def _activation_cache_key(config: Any, images: Any, size: int) -> str:
    """What identifies the prefix activations besides the cut: backbone, options, weights, size, images.

    The images enter through `ImageSplits.content_hash` (splits, order and labels), not the
    feature cache's order-free digest: activations are stored per split, in order.
    """
    return feature_cache_key(images.content_hash(), backbone=config.backbone.name, weights=weights_arg(config),
                             image_size=size, backbone_kwargs=config.backbone.options or None)
