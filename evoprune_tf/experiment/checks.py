"""Range, name and method checks of a built `ExperimentConfig` (each problem one line).

`evoprune_tf.experiment.config.config_from_dict` builds the sections, then calls `check_config`,
which checks the shared sections and asks the chosen method for its own checks
(`Method.validate`); everything is collected, so one error names every problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import operators
from evoprune_tf.experiment.backend import choose_backend
from evoprune_tf.backbones import canonical_name
from evoprune_tf.encodings import ENCODINGS
from evoprune_tf.methods import get_method
from evoprune_tf.methods.head.baselines import BASELINES
from evoprune_tf.methods.inputs import operator_specs
from evoprune_tf.model_files import is_model_file
from evoprune_tf.search.toolbox import check_cardinality, with_genome_length

if TYPE_CHECKING:  # pragma: no cover
    from evoprune_tf.experiment.sections import ExperimentConfig

__all__ = ["check_config"]


def check_config(config: ExperimentConfig, problems: list[str]) -> None:
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


#: The head searches with a generation 0 that ``operators.seed_baselines`` can join.
SEARCHES = ("steady_state", "ea_simple", "mu_plus_lambda", "nsga2", "nsga3")


def _check_seed_baselines(config: ExperimentConfig, problems: list[str], budget: bool) -> None:
    """Checks of ``operators.seed_baselines``: known baselines with a size, in a search that has a population."""
    seeds, a = config.operators.seed_baselines, config.algorithm
    if not seeds:
        return
    known = [name for name in BASELINES if name != "unpruned"]
    if not isinstance(seeds, list) or any(name not in known for name in seeds):
        problems.append(f"operators.seed_baselines={seeds!r}; expected a list of head baselines from {known} "
                        "(the unpruned genome: operators.seed_unpruned)")
        return
    if a.name not in SEARCHES:
        problems.append(f"operators.seed_baselines with algorithm {a.name!r}; expected an evolutionary head "
                        f"search ({', '.join(SEARCHES)}), whose generation 0 the genomes join")
    elif not budget and not (a.density or a.density_of):
        problems.append(f"operators.seed_baselines={seeds!r} without a size; expected encoding.active (a fixed "
                        "budget) or algorithm.density / density_of for the baselines' genomes")
    elif len(seeds) + bool(config.operators.seed_unpruned) > a.population:
        problems.append(f"operators.seed_baselines={seeds!r} holds more genomes than algorithm.population="
                        f"{a.population}; expected at most that many")
    if "l1_selection" in seeds and config.encoding.name != "feature_selection":
        problems.append(f"operators.seed_baselines with 'l1_selection' and encoding {config.encoding.name!r}; "
                        "l1_selection selects features (encoding.name = \"feature_selection\")")


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
    _check_seed_baselines(config, problems, budget)
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
