"""evoprune-tf: evolutionary pruning of transfer-learning networks with DEAP, Keras 3 and MLflow.

The entry points a user needs are importable from here::

    import evoprune_tf as ep

    config = ep.load_config("my_experiment.toml", overrides={"seed": 3})
    result = ep.run(config)                 # one tracked evolution, reported on test
    ep.resume("<run id>")                  # or a checkpoint path, as `evoprune resume` takes

    evaluator = ep.PopulationEvaluator(ep.FeatureSelection(spec), features, ep.TrainConfig(epochs=10))
    toolbox = ep.build_toolbox(evaluator)   # a deap.base.Toolbox: eaSimple runs on it

    # filter pruning of a Keras model (DeepPruningES' building blocks)
    groups = ep.filter_groups(model)        # filters coupled by residual adds, pruned together
    keep = ep.FilterPruning(model, blocks=2).decode(genome)  # layer name -> kept filters
    compact = ep.prune_filters(model, keep) # a smaller model; ep.mask_filters masks in place
    ep.count_flops(compact).total_flops

    report = ep.run_tascnet(config)         # TASCNet (algorithm.name = "tascnet")

Names resolve lazily, so ``import evoprune_tf`` stays cheap (no TensorFlow, no MLflow)
until a name that needs them is used. The modules behind them are the implementation;
their layout follows the data flow (``data`` -> ``features`` -> ``encodings`` -> ``train``
-> ``evaluation`` -> ``search`` -> ``tracking`` / ``report``; ``methods`` in a ``session``;
``experiment`` builds a config and runs it; ``studies`` over it; ``app`` is the command line).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# The CLI's quiet start for library users too: no TensorFlow absl / cuInit lines when
# Keras is first imported, no telemetry, no MLflow table-creation logs (`evoprune_tf.quiet`).
from evoprune_tf.quiet import quiet_startup as _quiet_startup  # noqa: E402

_quiet_startup()

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # one experiment: configs and runs
    "run": "evoprune_tf.experiment.run",
    "resume": "evoprune_tf.experiment.run",
    "RunResult": "evoprune_tf.experiment.run",
    "load_config": "evoprune_tf.experiment.config",
    "config_from_dict": "evoprune_tf.experiment.config",
    "ConfigError": "evoprune_tf.experiment.config",
    "ExperimentConfig": "evoprune_tf.experiment.config",
    "DataConfig": "evoprune_tf.experiment.config",
    "BackboneConfig": "evoprune_tf.experiment.config",
    "HeadConfig": "evoprune_tf.experiment.config",
    "EncodingConfig": "evoprune_tf.experiment.config",
    "AlgorithmConfig": "evoprune_tf.experiment.config",
    "OperatorsConfig": "evoprune_tf.experiment.config",
    "ObjectivesConfig": "evoprune_tf.experiment.config",
    "ReportConfig": "evoprune_tf.experiment.config",
    "TrackingConfig": "evoprune_tf.experiment.config",
    "CheckpointConfig": "evoprune_tf.experiment.config",
    # data and features
    "load_images": "evoprune_tf.data",
    "ImageSplits": "evoprune_tf.data",
    "extract_features": "evoprune_tf.features",
    "FeatureSplits": "evoprune_tf.features",
    "build_backbone": "evoprune_tf.backbones",
    # encodings, training, evaluation
    "HeadSpec": "evoprune_tf.encodings",
    "HeadMasks": "evoprune_tf.encodings",
    "Encoding": "evoprune_tf.encodings",
    "FeatureSelection": "evoprune_tf.encodings",
    "NeuronPruning": "evoprune_tf.encodings",
    "ConnectionPruning": "evoprune_tf.encodings",
    "make_encoding": "evoprune_tf.encodings",
    "TrainConfig": "evoprune_tf.train",
    "TrainedHead": "evoprune_tf.train",
    "PopulationEvaluator": "evoprune_tf.evaluation",
    "MaskedDense": "evoprune_tf.nn.layers",
    # methods: the contract, the registry, the run session every method runs in
    "Method": "evoprune_tf.methods",
    "register_method": "evoprune_tf.methods",
    "get_method": "evoprune_tf.methods",
    "available_methods": "evoprune_tf.methods",
    "RunSession": "evoprune_tf.session",
    # search
    "build_toolbox": "evoprune_tf.search.toolbox",
    # filter pruning inside a network (DeepPruningES' building blocks; load Keras when used)
    "filter_groups": "evoprune_tf.nn.coupling",
    "FilterGroup": "evoprune_tf.nn.coupling",
    "prune_filters": "evoprune_tf.nn.surgery",
    "mask_filters": "evoprune_tf.nn.surgery",
    "count_flops": "evoprune_tf.nn.flops",
    "FlopCount": "evoprune_tf.nn.flops",
    "FilterPruning": "evoprune_tf.methods.deep_pruning_es.encoding",
    "FilterEvaluator": "evoprune_tf.methods.deep_pruning_es.evaluation",
    "run_filter_pruning": "evoprune_tf.methods.deep_pruning_es.run",
    # TASCNet: the whole method, and its two stages
    "run_tascnet": "evoprune_tf.methods.tascnet.run",
    "search_configuration": "evoprune_tf.methods.tascnet.stage1",
    "tascnet_prune": "evoprune_tf.methods.tascnet.stage2",
    "PruneSettings": "evoprune_tf.methods.tascnet.stage2",
    "Callback": "evoprune_tf.search.callbacks",
    "EvolutionState": "evoprune_tf.search.callbacks",
    "steady_state_ga": "evoprune_tf.search.algorithms",
    "ea_simple": "evoprune_tf.search.algorithms",
    "mu_plus_lambda": "evoprune_tf.search.algorithms",
    "nsga2": "evoprune_tf.search.algorithms",
    # tracking and studies
    "MLflowTracker": "evoprune_tf.tracking",
    "compare": "evoprune_tf.studies.compare",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evoprune_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
