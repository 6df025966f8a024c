"""The final report: retrain the winner, the unpruned head and chance; score them on test.

The search selected on validation with a short, fixed training budget; here the best
genome and the all-ones (unpruned) head are retrained with the same recipe over several
seeds (or with the full reference recipe), scored on the held-out *test* split, and
exported as a compact Keras model whose layers physically hold only the surviving
units. Inference time (`evoprune_tf.report.latency.keras_latency_ms`: median of compiled
``predict_on_batch`` calls on the whole test split) and parameter counts of both Keras models
are measured.

What chance would do comes with it (``chance=True``, the default): a random mask of the
winner's exact size (the same number of active genes, drawn with a seed derived from
the run seed) is retrained in the same batch, on the same seeds and recipe, so every
report says at once whether the search found more than a random choice of that size.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from evoprune_tf.encodings import Encoding, pack_genome
from evoprune_tf.metrics import accuracy_and_loss
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.report.latency import keras_latency_ms
from evoprune_tf.report.text import mean_std, plural
from evoprune_tf.train import TrainConfig, TrainedHead, derive_seed, make_trainer

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["retrain", "report_recipe", "final_report", "head_to_keras", "compact_model", "export_measurements", "format_report"]


def retrain(
    encoding: Encoding,
    data: FeatureSplits,
    genomes: Sequence[np.ndarray],
    config: TrainConfig,
    *,
    seed: int,
    seeds: int,
) -> list[list[TrainedHead]]:
    """Train each genome once per seed, with the recipe's engine (`evoprune_tf.train.make_trainer`).

    The run's own engine retrains: the Keras engine for any recipe (optimizer, loss,
    dropout, L2, label smoothing, class weights, a user head), the NumPy engine when the
    run named it (default head and SGD only).

    Args:
        encoding: the run's encoding.
        data: the features to train on.
        genomes: the genomes.
        config: the training recipe.
        seed: the run seed (each retrain seed derives from it).
        seeds: retrains per genome.

    Returns:
        ``heads[seed_index][genome_index]``.
    """
    masks = [encoding.decode(g) for g in genomes]
    return [
        make_trainer(encoding.spec, data, config, seed=derive_seed(seed, "report", i)).train(masks)
        for i in range(seeds)
    ]


def report_recipe(train: TrainConfig, recipe: str) -> TrainConfig:
    """The recipe a report retrains with.

    Args:
        train: the run's ``[train]`` recipe.
        recipe: ``"search"`` (the run's recipe) or ``"reference"`` (`TrainConfig.reference`:
            600 epochs of SGD with training-loss early stopping).

    Returns:
        ``train`` itself, or the reference recipe on the run's engine and backend.
    """
    if recipe == "search":
        return train
    return TrainConfig.reference(engine=train.engine, backend=train.backend, blas_threads=train.blas_threads)


def head_to_keras(head: TrainedHead) -> keras.Model:
    """A `MaskedDense` Keras model holding a trained head's weights and masks.

    Args:
        head: the trained head.

    Returns:
        The masked Keras model (full width, masks applied).
    """
    # Imported here: the Keras layers load TensorFlow, and `evoprune_tf.methods.head.build` imports
    # this module (through the Pareto report's options) without needing a model.
    from evoprune_tf.nn.layers import build_masked_head, set_head_weights

    spec = head.spec
    model = build_masked_head(
        spec.n_features, spec.n_classes, spec.hidden, use_bias=spec.use_bias,
        kernel_masks=head.masks.kernel_masks(),
    )
    kernels, biases = head.full_weights()
    set_head_weights(model, kernels, biases)
    return model


def compact_model(head: TrainedHead, scaling: tuple[np.ndarray, np.ndarray] | None = None) -> keras.Model:
    """The physically smaller plain-`Dense` Keras model of a trained head.

    Args:
        head: the trained head.
        scaling: the features' ``(mean, std)`` when the head was trained on standardised
            features (`FeatureSplits.scaling`); a `FeatureScaling` layer in front then
            lets the model take raw backbone features.

    Returns:
        The compact Keras model (raw features in, probabilities out).
    """
    import keras  # here, not at the top: see head_to_keras

    from evoprune_tf.nn.export import compact
    from evoprune_tf.nn.layers import FeatureScaling

    if head.keras_model is not None:  # a user head the plain-Dense export cannot reproduce
        model = _user_head_model(head)
    else:
        model = compact(head_to_keras(head), name="compact_head")
    if scaling is None:
        return model

    inputs = keras.Input((head.spec.n_features,), name="features")
    scaled = FeatureScaling(*scaling, name="feature_scaling")(inputs)
    return keras.Model(inputs, model(scaled), name="compact_head_scaled")


def _user_head_model(head: TrainedHead) -> keras.Model:
    """A user head as trained (its own layers at its compact widths), taking full-width features.

    Padded input slots (index -1) read feature 0: their kernel rows are masked to zero.
    """
    import keras

    from evoprune_tf.nn.layers import FeatureGather

    inputs = keras.Input((head.spec.n_features,), name="features")
    trained = head.keras_model()
    gathered = FeatureGather(np.maximum(head.indices[0], 0).tolist(), name="feature_gather")(inputs)
    return keras.Model(inputs, trained(gathered), name="compact_head")


def _scores(heads: Sequence[TrainedHead], data: FeatureSplits) -> dict:
    test = [accuracy_and_loss(h.logits(data.x_test), data.y_test)[0] for h in heads] if len(data.y_test) else []
    val = [accuracy_and_loss(h.logits(data.x_val), data.y_val)[0] for h in heads]
    out = {"val_accuracy_mean": float(np.mean(val)), "val_accuracy_per_seed": val}
    if test:
        out.update(test_accuracy_mean=float(np.mean(test)), test_accuracy_std=float(np.std(test)),
                   test_accuracy_per_seed=test)
    return out


def _random_mask(length: int, count: int, seed: int) -> np.ndarray:
    """``count`` random genes on, drawn as the ``random_mask`` baseline draws them."""
    genome = np.zeros(length, dtype=np.int8)
    genome[np.random.default_rng(seed).choice(length, count, replace=False)] = 1
    return genome


def final_report(
    encoding: Encoding,
    data: FeatureSplits,
    genome: np.ndarray,
    train_config: TrainConfig,
    *,
    seed: int,
    seeds: int = 3,
    export: bool = True,
    chance: bool = True,
) -> tuple[dict, keras.Model | None]:
    """Retrain the best genome, the unpruned head and a random mask of the same size; score on test.

    Args:
        encoding: the run's encoding.
        data: the run's features (test split used here only).
        genome: the best genome of the search.
        train_config: the retrain recipe (the search's, or `TrainConfig.reference()`).
        seed: the run seed (retrain seeds derive from it).
        seeds: retrains per head.
        export: build the compact Keras model and time both models.
        chance: also retrain a random mask with the winner's number of active genes
            (seed ``derive_seed(seed, "chance")``) on the same retrain seeds; its scores
            go under ``report["random"]``.

    Returns:
        ``(report, compact_keras_model or None)``; the report is JSON-able.
    """
    genome = encoding.validate(genome).astype(np.int8)
    ones = np.ones_like(genome)
    genomes = [genome, ones]
    if chance:
        chance_seed = derive_seed(seed, "chance")
        genomes.append(_random_mask(len(genome), int(np.count_nonzero(genome)), chance_seed))
    began = time.perf_counter()
    heads = retrain(encoding, data, genomes, train_config, seed=seed, seeds=seeds)
    masks = encoding.decode(genome)
    spec = encoding.spec
    report: dict[str, Any] = {
        "dataset": data.name,
        "encoding": encoding.name,
        "genome_length": int(len(genome)),
        "active_fraction": float(genome.mean()),
        "active_percent": round(100.0 * float(genome.mean()), 2),
        "active_features": int(masks.units[0].sum()),
        "active_neurons": [int(u.sum()) for u in masks.units[1:-1]],
        "retrain": {"seeds": seeds, "epochs": train_config.epochs, "early_stopping": train_config.early_stopping},
        "pruned": _scores([h[0] for h in heads], data),
        "unpruned": _scores([h[1] for h in heads], data),
        "parameters": {"pruned_head": masks.active_parameters(spec), "full_head": spec.n_parameters()},
    }
    if chance:
        report["random"] = {**_scores([h[2] for h in heads], data), "active_genes": int(np.count_nonzero(genomes[2])),
                            "seed": chance_seed, "genome": pack_genome(genomes[2])}
    report["retrain"]["seconds"] = round(time.perf_counter() - began, 2)
    model = None
    if export:
        model, measured = export_measurements(heads[-1][0], heads[-1][1], data)
        report["parameters"].update(measured.pop("parameters"))
        report.update(measured)
    return report, model


def export_measurements(pruned: TrainedHead, full: TrainedHead, data: FeatureSplits) -> tuple[keras.Model, dict]:
    """Export the pruned head as a compact Keras model and measure it against the unpruned one.

    Args:
        pruned: the pruned head.
        full: the unpruned head trained with the same seed.
        data: the features (test split timed, validation when test is empty).

    Returns:
        ``(compact model, measured)`` where ``measured`` holds ``parameters``
        (``compact_model``, ``full_model``), ``inference_ms`` (``compact``, ``full``,
        ``samples``) and ``compact_max_abs_diff`` (largest probability difference between
        the compact model and the masked head).
    """
    model = compact_model(pruned, data.scaling)
    full_model = compact_model(full, data.scaling)
    x = data.x_test if len(data.x_test) else data.x_val
    raw = x if data.scaling is None else x * data.scaling[1] + data.scaling[0]  # what the exported model takes
    reference = pruned.predict_proba(x)
    return model, {
        "parameters": {"compact_model": int(model.count_params()), "full_model": int(full_model.count_params())},
        "inference_ms": {"compact": keras_latency_ms(model, raw, runs=5),
                         "full": keras_latency_ms(full_model, raw, runs=5),
                         "samples": len(x)},
        "compact_max_abs_diff": float(np.abs(np.asarray(model(raw, training=False)) - reference).max()),
    }


def format_report(report: dict) -> str:
    """A short human-readable summary of a report.

    With one retrain seed the accuracies are printed without ``± std`` (there is no
    spread to show) and the count reads ``(1 seed)``. A report with a random mask of
    the winner's size (``report["random"]``) prints it beside the pruned and unpruned
    heads, and the pruned head's margin over it.

    Args:
        report: `final_report`'s dict.

    Returns:
        The summary, several lines.
    """
    lines = [f"Final report: {report.get('dataset', '?')} / {report.get('encoding', '?')}"]
    pruned, unpruned = report["pruned"], report["unpruned"]
    seeds = int(report["retrain"]["seeds"])
    key = "test_accuracy_mean" if "test_accuracy_mean" in pruned else "val_accuracy_mean"
    split = "test" if key.startswith("test") else "validation"
    chance = report.get("random")
    beside = f"   random mask {mean_std(chance[key], chance.get('test_accuracy_std'), seeds)}" if chance else ""
    lines.append(
        f"  {split} accuracy  pruned {mean_std(pruned[key], pruned.get('test_accuracy_std'), seeds)}"
        f"   unpruned {mean_std(unpruned[key], unpruned.get('test_accuracy_std'), seeds)}{beside}"
        f"   ({plural(seeds, 'seed')})"
    )
    if chance:
        lines.append(
            f"  vs chance       pruned - random mask = {pruned[key] - chance[key]:+.4f} on {split}"
            f" (a random mask of the same {plural(chance['active_genes'], 'active gene')}, same seeds)"
        )
    lines.append(
        f"  active          {report['active_percent']:.1f}% of {plural(report['genome_length'], 'gene')}"
        f" ({plural(report['active_features'], 'feature')}, neurons {report['active_neurons']})"
    )
    params = report["parameters"]
    if "compact_model" in params:
        lines.append(
            f"  parameters      compact {params['compact_model']:,} vs full {params['full_model']:,}"
            f" ({params['compact_model'] / params['full_model']:.1%})"
        )
        inf = report["inference_ms"]
        lines.append(f"  inference       compact {inf['compact']:.2f} ms vs full {inf['full']:.2f} ms"
                     f" ({plural(inf['samples'], 'sample')})")
    return "\n".join(lines)
