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

import copy
import dataclasses
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import operators
from evoprune_tf.app.backend import BackendChoice, apply_backend, choose_backend
from evoprune_tf.backbones import canonical_name
from evoprune_tf.model_files import is_model_file
from evoprune_tf.encodings import ENCODINGS
from evoprune_tf.methods import get_method, method_sections
from evoprune_tf.methods.head.baselines import BASELINES
from evoprune_tf.methods.inputs import operator_specs
from evoprune_tf.search.toolbox import CARDINALITY_OPERATORS, check_cardinality, with_genome_length
from evoprune_tf.session import checkpoint_dir, report_files, report_folder
from evoprune_tf.session import check_output_locations as _check_output_locations
from evoprune_tf.tracking.redact import is_secret_name, redact_text
from evoprune_tf.train.config import BACKENDS
from evoprune_tf.train.numpy_engine import TrainConfig

__all__ = [
    "ExperimentConfig",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "check_shadowed_values",
    "checkpoint_dir",
    "report_folder",
    "report_files",
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
    #: The registered methods' own sections (``[tascnet]``...) by name, read as attributes
    #: (``config.tascnet``); each method validates its own.
    sections: dict = dataclasses.field(default_factory=lambda: {k: t() for k, t in method_sections().items()})

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def method(self) -> Any:
        """The `evoprune_tf.methods.Method` that ``algorithm.name`` selects."""
        return get_method(self.algorithm.name)

    #: ``value -> "${NAME}"`` of the secret-named variables `config_from_dict` expanded.
    _secrets: typing.ClassVar[dict[str, str]] = {}

    @property
    def multi_objective(self) -> bool:
        """True for runs that keep a Pareto front (NSGA-II/III)."""
        try:
            return self.method.multi_objective
        except ValueError:  # an unknown name: validation reports it
            return False

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

        The methods' sections are top-level tables. It is what the run's params, its
        ``config.json`` and its checkpoint hold: a value expanded from a secret-named
        variable is its ``${NAME}`` template again (expanded anew when the dict is loaded),
        and URI passwords are ``***``.
        """
        out = dataclasses.asdict(self)
        sections = out.pop("sections")
        return _redact_tree({**out, **sections}, self.redact)


#: The shared sections; the methods' own sections come from the registry (`section_types`).
_SHARED_SECTIONS = {
    "data": DataConfig, "backbone": BackboneConfig, "head": HeadConfig, "encoding": EncodingConfig,
    "train": TrainConfig, "algorithm": AlgorithmConfig, "operators": OperatorsConfig,
    "objectives": ObjectivesConfig, "report": ReportConfig, "tracking": TrackingConfig,
    "checkpoint": CheckpointConfig,
}


def section_types() -> dict[str, type]:
    """Every config section and its dataclass: the shared ones and the registered methods' own."""
    return {**_SHARED_SECTIONS, **method_sections()}


_SECTION_TYPES = section_types()
#: Keys every run reads, whatever the method: the run session's (seeding, progress,
#: plugins, the Keras backend, the MLflow run).
SESSION_READS = ("name", "seed", "progress", "plugins", "algorithm.name", "train.backend", "tracking")
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
    """Range and name checks across the shared sections, then the chosen method's own (`Method.validate`)."""

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
    try:
        method = get_method(a.name)
    except ValueError as error:
        method = None
        problems.append(str(error))
    try:  # an explicit backend that is not installed (KERAS_BACKEND, when set, wins over it)
        choose_backend(a.name, config.train.backend, config.train.engine)
    except ValueError as error:
        problems.append(str(error))
    if method is not None:
        problems.extend(method.validate(config))
    if is_model_file(config.backbone.name):  # a user's own model, pruned whole by deep_pruning_es
        if not Path(config.backbone.name).expanduser().is_file():
            problems.append(f"backbone.name={config.backbone.name!r} is not a file; expected a saved .keras model")
        elif method is not None and not method.prunes_model_files:
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
    _check_objectives(config, problems)
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


def _check_objectives(config: ExperimentConfig, problems: list[str]) -> None:
    """The OOD source, loss resolution, temperature and resampling of ``[objectives]``."""
    names = config.objectives.names
    if "robustness" in names and not config.objectives.ood:
        problems.append("objective 'robustness' needs objectives.ood (a folder, .npz or tfds:NAME of OOD images)")
    if config.objectives.loss_resolution < 0:
        problems.append(f"objectives.loss_resolution={config.objectives.loss_resolution}; expected 0 (exact) or a positive number")
    if config.objectives.temperature <= 0:
        problems.append(f"objectives.temperature={config.objectives.temperature}; expected a positive number")
    o = config.objectives
    if o.resampling not in ("holdout", "cv", "repeated"):
        problems.append(f"objectives.resampling={o.resampling!r}; expected 'holdout', 'cv' or 'repeated'")
    if o.resampling == "cv" and o.folds < 2:
        problems.append(f"objectives.folds={o.folds}; expected at least 2 for cross-validation")
    if o.resampling == "repeated" and o.repeats < 1:
        problems.append(f"objectives.repeats={o.repeats}; expected a positive integer")


def _check_litert(value: Any, problems: list[str]) -> None:
    """``report.litert``: "auto", true or false; true needs the LiteRT extra installed."""
    if value != "auto" and not isinstance(value, bool):
        problems.append(f"report.litert={value!r}; expected \"auto\", true or false")
    elif value is True:
        from evoprune_tf.report.latency import LITERT_INSTALL, litert_available

        if not litert_available():
            problems.append(f"report.litert=true but ai-edge-litert is not installed: {LITERT_INSTALL} "
                            "(or report.litert = \"auto\" to skip LiteRT latency when it is missing)")


def _unread_keys(raw: Mapping[str, Any], config: ExperimentConfig, method: Any) -> list[str]:
    """Keys given with a non-default value that neither the method nor the run session reads, one line each."""
    own_checkpoints = (("checkpoint",) if method.checkpoints else ()) + (
        ("report.dir",) if method.writes_report_files else ())
    defaults = ExperimentConfig()
    sections = section_types()
    problems = []
    for key, value in raw.items():
        if key in sections and isinstance(value, Mapping):
            default_section = getattr(defaults, key)
            given = [(f"{key}.{k}", getattr(getattr(config, key), k), getattr(default_section, k, None))
                     for k in value if hasattr(default_section, k)]
        elif key in _TOP_LEVEL:
            given = [(key, getattr(config, key), getattr(defaults, key))]
        else:
            continue
        for path, now, default in given:
            reads = (*SESSION_READS, *own_checkpoints)
            if now == default or method.reads_key(path) or any(path == r or path.startswith(r + ".") for r in reads):
                continue
            problems.append(f"{path}={now!r} is not read by method {method.name!r}; expected only keys it reads "
                            f"(`evoprune methods` lists them) or their defaults")
    return problems


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
    if budget and (a.name in ("deep_pruning_es", "tascnet") or config.encoding.name == 'filters'):
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


def config_from_dict(raw: dict, source: str = "config", *, given: dict | None = None) -> ExperimentConfig:
    """Build and validate a config from a nested dict (e.g. parsed TOML).

    A key the chosen method does not read (`evoprune_tf.methods.Method.reads`) is refused
    when it holds a value other than its default.

    Args:
        raw: the nested config.
        source: what the config came from (the error message starts with it).
        given: the part of ``raw`` the user set (a file, the command line), when ``raw``
            also holds a script's defaults: only these keys are checked against what the
            method reads (default: all of ``raw``).

    Raises:
        ConfigError: listing every problem found.
    """
    secrets: dict[str, str] = {}
    raw = _expand(copy.deepcopy(raw), secrets)
    user = raw if given is None else _expand(copy.deepcopy(given), {})
    plugin_error = None
    plugins = raw.get("plugins", [])
    try:
        # Before any name is looked up: a plugin's operators and methods are valid names.
        operators.registry.load_plugins(plugins if isinstance(plugins, list) else [])
    except ValueError as error:
        plugin_error = error
    algorithm = raw.get("algorithm", {}).get("name") if isinstance(raw.get("algorithm"), dict) else None
    if _budget(raw) and isinstance(raw.get("operators", {}), dict):
        # a fixed budget: count-keeping init, crossover and mutation, under the config's own operators
        # and before the method's defaults (NSGA keeps its selection and survival)
        raw["operators"] = {**CARDINALITY_OPERATORS, **raw.get("operators", {})}
    try:
        method = get_method(algorithm if algorithm is not None else AlgorithmConfig.name)
    except ValueError:  # reported with every other problem
        method = None
    for section, values in (method.defaults if method is not None else {}).items():
        present = raw.get(section, {})
        if isinstance(present, dict):  # the method's defaults under the config's values
            raw[section] = {**values, **present}
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    sections = section_types()
    own: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SHARED_SECTIONS:
            kwargs[key] = _build_section(key, sections[key], value, problems)
        elif key in sections:
            own[key] = _build_section(key, sections[key], value, problems)
        elif key in _TOP_LEVEL:
            if _type_ok(value, _TOP_LEVEL[key]):
                kwargs[key] = value
            else:
                problems.append(f"{key}={value!r} has the wrong type; expected {_TOP_LEVEL[key].__name__}")
        else:
            known = sorted([*sections, *_TOP_LEVEL])
            problems.append(f"unknown key {key!r} (known: {', '.join(known)})")
    config = ExperimentConfig(**kwargs)
    config.sections.update(own)
    config._secrets = secrets
    if plugin_error is not None:
        problems.append(f"plugins: {plugin_error}")
    _check(config, problems)
    if method is not None:
        problems.extend(_unread_keys(user, config, method))
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
    sections = section_types()
    for key, value in overrides.items():
        if key not in raw:
            continue
        if key in sections and isinstance(value, dict) and isinstance(raw[key], dict):
            shadowed = {k: raw[key][k] for k in value if k in raw[key]}
            if shadowed:
                _build_section(key, sections[key], _expand(shadowed), problems)
        elif key in _TOP_LEVEL and not _type_ok(_expand(raw[key]), _TOP_LEVEL[key]):
            problems.append(f"{key}={raw[key]!r} has the wrong type; expected {_TOP_LEVEL[key].__name__}")
    if problems:
        raise ConfigError(problems, source)


def check_output_locations(config: ExperimentConfig, *, features_cached: bool = False) -> None:
    """Check every folder the config's run writes to before long work starts (`evoprune_tf.session.check_output_locations`).

    What is checked follows the chosen method: checkpoints, the feature cache (unless
    ``features_cached``), the report folder for methods that write report files, and the
    MLflow artifact store.

    Raises:
        ValueError: the first location that cannot be written.
    """
    method = config.method
    _check_output_locations(config, features_cached=features_cached or not method.uses_feature_cache,
                            checkpoints=method.checkpoints,
                            writes_report_files=method.writes_report_files or method.multi_objective)


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
