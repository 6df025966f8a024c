"""Config -> parts: the one place that turns an `Any` into resolved objects.

`run`, `resume`, `explain` and the experiment scripts all build their parts here:
images and cached features, the encoding, the evaluator, the toolbox with resolved
operators, and the plain params/tags/names the tracker logs. Everything downstream
receives these objects, never the config.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from operators.cardinality import count_of
from evoprune_tf.backbones import feature_dim
from evoprune_tf.model_files import is_model_file
from evoprune_tf.encodings import Encoding, HeadSpec, make_encoding
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.features.extract import extract_features
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.report.pareto import BackboneSpec, ParetoReportOptions
from evoprune_tf.resampling import ResampledEvaluator
from evoprune_tf.methods.head.baselines import BASELINES, baseline_genome
from evoprune_tf.methods.inputs import head_tags, head_title, image_size, load_run_images, operator_specs, weights_arg
from evoprune_tf.search.toolbox import build_toolbox
from evoprune_tf.session.options import run_tags as session_run_tags
from evoprune_tf.session.options import tracker_options as session_tracker_options
from evoprune_tf.tracking.store import run_genomes
from evoprune_tf.train import derive_seed

__all__ = [
    "prepare_features",
    "encoding_for",
    "make_evaluator",
    "genome_length_of",
    "check_budget",
    "rescoring_evaluator",
    "make_toolbox",
    "initial_population",
    "baseline_density",
    "head_tags",
    "head_title",
    "run_tags",
    "tracker_options",
    "backbone_spec",
    "pareto_options",
]


def prepare_features(config: Any) -> tuple[FeatureSplits, np.ndarray | None, Any]:
    """Images -> cached backbone features, and OOD features when configured.

    Returns:
        ``(features, ood_features or None, image_splits)``.
    """
    images = load_run_images(config.data.source, config, name=config.data.name or None)
    common = dict(
        backbone=config.backbone.name, weights=weights_arg(config), image_size=image_size(config),
        cache_dir=config.cache_dir or None, batch_size=config.backbone.batch_size,
        backbone_kwargs=config.backbone.options or None, progress=config.progress,
    )
    features = extract_features(images, **common)
    if config.data.standardize:
        features = features.standardized()
    ood = None
    if config.objectives.ood:
        ood_images = load_run_images(config.objectives.ood, config)
        ood_splits = extract_features(ood_images, **common)
        ood = features.scale(np.concatenate([ood_splits.x_val, ood_splits.x_test, ood_splits.x_train]))
        if config.objectives.ood_max_images:
            ood = ood[: config.objectives.ood_max_images]
    return features, ood, images


def encoding_for(config: Any, features: FeatureSplits) -> Encoding:
    """The run's `Encoding` over a head sized for these features."""
    spec = HeadSpec(features.n_features, features.n_classes, tuple(config.head.hidden), config.head.use_bias)
    options: dict[str, Any] = {}
    if config.encoding.name == "neuron_pruning" and config.encoding.layers:
        options["layers"] = config.encoding.layers
    if config.encoding.name == "connection_pruning":
        options["layer"] = config.encoding.layer
    return make_encoding(config.encoding.name, spec, **options)


def genome_length_of(config: Any) -> int | None:
    """The genome length of a config's head encoding, known before any image is read.

    Feature selection has one gene per backbone feature (`evoprune_tf.backbones.feature_dim`),
    neuron pruning one per pruned hidden neuron, connection pruning one per weight of a
    kernel between the features and the hidden layers; the last kernel's length depends
    on the number of classes, which only the data knows.

    Returns:
        The number of genes, or None when it depends on the data.
    """
    e, hidden = config.encoding, list(config.head.hidden)
    if is_model_file(config.backbone.name):  # a user's own model: its width is known once it is loaded
        return None
    if e.name == "feature_selection":
        return feature_dim(config.backbone.name, **(config.backbone.options or {}))
    if e.name == "neuron_pruning":
        return sum(hidden[i] for i in (e.layers or range(len(hidden))))
    if e.name == "connection_pruning" and e.layer < len(hidden):
        width_in = feature_dim(config.backbone.name, **(config.backbone.options or {})) if e.layer == 0 else hidden[e.layer - 1]
        return width_in * hidden[e.layer]
    return None


def check_budget(config: Any) -> None:
    """``encoding.active`` against the genome length, before any image is read (one-line ValueError).

    A count above the number of genes fails here, not after the features are extracted;
    when the length depends on the data, `evoprune_tf.search.toolbox.build_toolbox` checks it.
    """
    active = config.encoding.active
    genes = genome_length_of(config) if active else None
    if genes is not None:
        count_of(active, genes, "encoding.active")


def make_evaluator(config: Any, features: FeatureSplits, ood: np.ndarray | None) -> PopulationEvaluator:
    """The run's evaluator on these features (and OOD features, for robustness).

    ``objectives.resampling`` = ``cv`` or ``repeated`` gives a `ResampledEvaluator`
    (the mean over train+validation partitions); ``holdout`` the plain validation split.
    """
    encoding = encoding_for(config, features)
    o = config.objectives
    options = dict(seed=config.seed, objectives=tuple(o.names), ood_features=ood, temperature=o.temperature,
                   loss_resolution=o.loss_resolution)
    if o.resampling == "holdout":
        return PopulationEvaluator(encoding, features, config.train, **options)
    return ResampledEvaluator(encoding, features, config.train, method=o.resampling, folds=o.folds,
                              repeats=o.repeats, **options)


def rescoring_evaluator(config: Any, evaluator: PopulationEvaluator) -> ResampledEvaluator:
    """k-fold CV (``report.rescore_folds``) over partitions the search never used, to pick the winner."""
    o = config.objectives
    return ResampledEvaluator(
        evaluator.encoding, evaluator.data, config.train, method="cv", folds=config.report.rescore_folds,
        partition_seed=derive_seed(config.seed, "rescore"), seed=config.seed, objectives=tuple(o.names),
        ood_features=evaluator.ood_features, temperature=o.temperature, loss_resolution=o.loss_resolution,
    )


def make_toolbox(config: Any, evaluator: PopulationEvaluator):
    """The run's DEAP toolbox: the config's operators resolved on the evaluator's encoding."""
    return build_toolbox(evaluator, operator_specs(config.operators), active=config.encoding.active or None)


def run_tags(config: Any) -> dict[str, str]:
    """The MLflow tags of a head run (`evoprune_tf.session.run_tags` and `head_tags`)."""
    return session_run_tags(config, head_tags(config))


def tracker_options(config: Any) -> dict[str, Any]:
    """Keyword arguments of `evoprune_tf.tracking.MLflowTracker` for a head run's config."""
    return session_tracker_options(config, tags=head_tags(config), title=head_title(config))


def baseline_density(config: Any) -> float:
    """``algorithm.density``, or the active fraction of the best genome of the run ``algorithm.density_of``.

    Raises:
        ValueError: the named run cannot be found or has no logged best genome.
    """
    a = config.algorithm
    if not a.density_of:
        return float(a.density)
    genomes = run_genomes(a.density_of, config.tracking.uri)
    best = genomes.get("genomes")
    if best is None or not len(best):
        raise ValueError(f"algorithm.density_of={a.density_of!r}: that run logged no best genome (masks/best_genomes.npz)")
    return float(np.mean(np.asarray(best[0]) != 0))


def initial_population(config: Any, toolbox: Any, evaluator: PopulationEvaluator) -> list:
    """Generation 0: the baseline's one genome, or ``algorithm.population`` genomes from the initialiser.

    With ``operators.seed_unpruned`` the first genome is the unpruned one, and with
    ``operators.seed_baselines`` the first genomes are those baselines' (a seeded search).
    With a fixed budget (``encoding.active``) a baseline keeps exactly that many genes.
    """
    name = config.algorithm.name
    if name in BASELINES:
        individual = toolbox.individual()
        individual[:] = _baseline_genome(config, name, evaluator)
        return [individual]
    population = toolbox.population(n=config.algorithm.population)
    if config.operators.seed_unpruned:
        population[0][:] = 1
    seeded = population[1:] if config.operators.seed_unpruned else population
    for individual, baseline in zip(seeded, config.operators.seed_baselines):
        individual[:] = _baseline_genome(config, baseline, evaluator)
    return population


def _baseline_genome(config: Any, name: str, evaluator: PopulationEvaluator) -> np.ndarray:
    """Baseline ``name``'s genome at the run's budget: ``encoding.active`` genes, else its density."""
    active, length = config.encoding.active, evaluator.encoding.genome_length
    count = count_of(active, length, "encoding.active") if active else None
    return baseline_genome(name, evaluator.encoding, density=baseline_density(config) or 1.0,
                           seed=config.seed, evaluator=evaluator, count=count)


def backbone_spec(config: Any) -> BackboneSpec:
    """The run's backbone as the reports rebuild it (explanations)."""
    b = config.backbone
    return BackboneSpec(name=b.name, weights=weights_arg(config), options=dict(b.options or {}),
                        batch_size=int(b.batch_size))


def pareto_options(config: Any) -> ParetoReportOptions:
    """What `evoprune_tf.report.pareto.pareto_report` needs to know of a config's run."""
    return ParetoReportOptions(
        run_name=config.name, objective_names=tuple(config.objectives.names),
        temperature=float(config.objectives.temperature), seeds=int(config.report.seeds), seed=int(config.seed),
        ensemble_band=float(config.report.ensemble_band), explain=bool(config.report.explain),
        backbone=backbone_spec(config),
    )
