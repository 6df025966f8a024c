"""The config's shape: one dataclass per TOML table, `ExperimentConfig` holding them, `ConfigError`.

`evoprune_tf.experiment.config` builds and validates these from TOML and command-line overrides;
the sections a method owns come from the method registry (`method_sections`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from evoprune_tf.methods import get_method, method_sections
from evoprune_tf.tracking.redact import redact_text
from evoprune_tf.train.numpy_engine import TrainConfig

__all__ = [
    "ConfigError", "DataConfig", "BackboneConfig", "HeadConfig", "EncodingConfig", "AlgorithmConfig",
    "OperatorsConfig", "ObjectivesConfig", "ReportConfig", "TrackingConfig", "CheckpointConfig",
    "ExperimentConfig", "section_types",
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
    round_to: int = 1  # filters: kept widths rounded up to a multiple of this (deep_pruning_es, filter baselines)
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
    flops_reduction: float = 0.5  # filter baselines: fraction of the searched FLOPs removed, in (0, 1)
    flops_of: str = ""  # ... or the network FLOPs of this MLflow run's knee (run id or prefix)
    ranking: str = "auto"  # filter baselines: auto (the criterion's own) | global | layer
    taylor_batches: int = 8  # taylor: training batches the importance is averaged over


@dataclasses.dataclass
class OperatorsConfig:
    """DEAP operators by registry name, with options (`operators.available()`)."""

    init: Any = "random_density"
    select: Any = dataclasses.field(default_factory=lambda: {"name": "hamming_farthest", "candidates": 3})
    mate: Any = dataclasses.field(default_factory=lambda: {"name": "uniform", "indpb": 0.5})
    mutate: Any = dataclasses.field(default_factory=lambda: {"name": "flip_one", "indpb": 0.07})
    survive: Any = "nsga2"
    seed_unpruned: bool = False  # put the all-ones genome in the initial population
    seed_baselines: list = dataclasses.field(default_factory=list)  # baselines whose genome starts in generation 0


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

def _redact_tree(value: Any, redact: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_tree(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact_tree(v, redact) for k, v in value.items()}
    return value
