"""Explanations for a finished run: ``evoprune explain RUN_ID [--model best|heavy|knee|light]``.

`explain_run` rebuilds what a run needs from MLflow alone: its config (the
``config.json`` artifact that `ConfigArtifact` logs when the evolution starts; for
older runs the flattened params), its genomes (``masks/best_genomes.npz``), its images
and features (the feature cache makes the features cheap). It retrains the chosen head
with the run's report recipe and seed (the same head as the run's own report), ranks
its input features by occlusion and writes CAM overlays of a few test images per class,
saved locally under ``<report folder>/explanations/<model>/`` (the run's
`evoprune_tf.session.report_folder`: ``report.dir``, else
``<store folder>/reports/<run id>``; with a tracking server a temporary folder, removed
once logged) and logged to the same run under ``explanations/<model>/``.

Relative data paths in the config are resolved from the current directory, as in the
run itself.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from mlflow import MlflowClient

from evoprune_tf.methods.head.build import backbone_spec, encoding_for, prepare_features
from evoprune_tf.session import seed_everything
from evoprune_tf.experiment.config import ExperimentConfig, config_from_dict, report_files
from evoprune_tf.experiment.trust import check_stored_modules
from evoprune_tf.encodings import pack_genome
from evoprune_tf.records import write_csv
from evoprune_tf.report.influence import feature_influence
from evoprune_tf.report.pareto import trade_off_columns, explain_images
from evoprune_tf.report.single import report_recipe, retrain
from evoprune_tf.search.pareto import trade_off_models
from evoprune_tf.tracking import find_run, resolve_tracking_uri
from evoprune_tf.tracking.store import run_artifact, run_genomes

__all__ = ["explain_run", "run_config", "check_model", "MODELS"]

#: Which genome of the run to explain.
MODELS = ("best", "heavy", "knee", "light")


# ------------------------------------------------------------ reading a run back


def _parse(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def _config_from_params(params: dict[str, str]) -> dict:
    """Best-effort nested config dict from flattened params (runs without ``config.json``)."""
    defaults = ExperimentConfig().to_dict()
    raw: dict = {}
    for key, text in params.items():
        parts = key.split(".")
        default: Any = defaults
        for part in parts:
            default = default.get(part) if isinstance(default, dict) else None
        value = text if isinstance(default, str) else _parse(text)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return raw


def run_config(run_id: str, uri: str = "", *, plugins: Iterable[str] = (), trust_plugins: bool = False
               ) -> ExperimentConfig:
    """The `ExperimentConfig` of a logged run (``config.json``, else its params).

    The config comes from the store, so the modules it names (plugins, operator and head
    import paths) are imported only when allowed (`evoprune_tf.experiment.trust.check_stored_modules`).

    Args:
        run_id: the run's id or a unique prefix of it.
        uri: tracking URI (``""``: ``$MLFLOW_TRACKING_URI`` or the project's store).
        plugins: module names the stored config may import.
        trust_plugins: it may import every module it names.

    Returns:
        The validated config.

    Raises:
        ValueError: no such run, a module not allowed, or a config that does not validate.
    """
    with run_artifact(run_id, "config.json", uri) as (run, path):
        if path is not None and path.is_file():
            raw = json.loads(path.read_text())
            source = f"config.json of run {run.info.run_id}"
        else:
            raw = _config_from_params(dict(run.data.params))
            source = f"params of run {run.info.run_id}"
    if not raw:
        raise ValueError(f"run {run.info.run_id} has neither config.json nor params; expected an evoprune run")
    check_stored_modules(raw, source, allowed=plugins, trust=trust_plugins)
    return config_from_dict(raw, source=source)


def check_model(config: ExperimentConfig, model: str, run_id: str = "") -> None:
    """Refuse, in one line, a model the run does not have (before anything slow).

    Single-objective runs have one model, ``best``; multi-objective runs (NSGA-II,
    NSGA-III) also ``heavy``, ``knee`` and ``light``. DeepPruningES and TASCNet prune
    filters inside the network, not a head: their models are the run's exported
    ``.keras`` artifacts, and the CAM overlays here explain heads only.

    Args:
        config: the run's config.
        model: one of `MODELS`.
        run_id: the run's id, for the message.

    Raises:
        ValueError: the model is unknown or not one of this run's.
    """
    which = f"run {run_id}" if run_id else "this run"
    if model not in MODELS:
        raise ValueError(f"model={model!r}; expected one of {', '.join(MODELS)}")
    method = config.algorithm.name
    if method in ("deep_pruning_es", "tascnet"):
        raise ValueError(f"{which} is a {method} run (filters pruned inside the network); explain draws the CAMs "
                         "of pruned heads: expected a head-pruning run (its models are the run's .keras artifacts)")
    if model != "best" and not config.multi_objective:
        raise ValueError(f"model={model!r}: {which} is single-objective ({method}); expected 'best' "
                         "(heavy, knee and light are the trade-off models of multi-objective runs)")


def _pick(genomes: dict[str, np.ndarray], model: str) -> int:
    if model == "best" or len(genomes["genomes"]) == 1:
        return 0
    names = [str(n) for n in genomes["objective_names"]]
    fitness = genomes["fitness"]
    weights = tuple(float(w) for w in genomes["weights"])
    active = genomes["genomes"].astype(bool).mean(axis=1)
    if "accuracy" not in names and "loss" not in names:
        raise ValueError(f"model={model!r} needs an accuracy or loss objective; this run has {names}")
    points, w, acc, cpx = trade_off_columns(names, fitness, weights, active, np.zeros(len(fitness)))
    return trade_off_models(points, w, accuracy_index=acc, complexity_index=cpx)[model]


# ------------------------------------------------------------------ the command


def explain_run(run_id: str, *, per_class: int = 2, uri: str = "", model: str = "best", plugins: Iterable[str] = (),
                trust_plugins: bool = False) -> list[Path]:
    """CAM overlays (and a feature ranking) for a finished run, logged to that run.

    Args:
        run_id: the run's id or a unique prefix of it.
        per_class: test images per class in the overlays.
        uri: tracking URI (``""``: ``$MLFLOW_TRACKING_URI`` or the project's store).
        model: which genome of ``masks/best_genomes.npz``: ``"best"`` (the first: the
            hall of fame's best, or the Pareto front's most accurate), or for
            multi-objective runs the trade-off model ``"heavy"``, ``"knee"`` or ``"light"``.
        plugins: modules the run's stored config may import (`run_config`).
        trust_plugins: it may import every module it names.

    Returns:
        The local files written: one PNG per class, then ``feature_influence.csv`` (with a
        tracking server and no ``report.dir`` they were in a temporary folder, deleted
        once logged to the run).

    Raises:
        ValueError: unknown run or model, no genomes logged, a genome that does not fit
            the rebuilt encoding.
    """
    if model not in MODELS:
        raise ValueError(f"model={model!r}; expected one of {', '.join(MODELS)}")
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"per_class={per_class!r}; expected a positive integer")
    uri = resolve_tracking_uri(uri)
    run = find_run(run_id, uri)
    run_id = run.info.run_id
    config = run_config(run_id, uri, plugins=plugins, trust_plugins=trust_plugins)
    check_model(config, model, run_id)
    genomes = run_genomes(run_id, uri)
    genome = np.asarray(genomes["genomes"][_pick(genomes, model)]).astype(np.int8)

    # images and features exactly as the run made them (features from the cache)
    data_config = copy.deepcopy(config)
    data_config.objectives.ood = ""  # the OOD images are not needed here
    seed_everything(config.seed)
    features, _, images = prepare_features(data_config)
    encoding = encoding_for(config, features)
    if len(genome) != encoding.genome_length:
        raise ValueError(
            f"the logged genome has {len(genome)} genes but the rebuilt {encoding.name} encoding needs "
            f"{encoding.genome_length}; expected the run's own data and backbone"
        )

    # the same head as the run's report (first retrain seed of the report recipe)
    recipe = report_recipe(config.train, config.report.recipe)
    head = retrain(encoding, features, [genome], recipe, seed=config.seed, seeds=1)[0][0]

    with report_files(config, run_id, uri=uri) as report:
        folder = report / "explanations" / model
        folder.mkdir(parents=True, exist_ok=True)
        paths = explain_images(backbone_spec(config), head, images, folder, per_class=per_class)
        influence = feature_influence(head, features.x_val, features.y_val, top_k=20)
        ranking = write_csv(folder / "feature_influence.csv", ["rank", "feature", "val_accuracy_drop"],
                            [[r + 1, f, s] for r, (f, s) in enumerate(influence)])
        (folder / "genome.txt").write_text(f"{model} genome ({encoding.name}, {len(genome)} genes): "
                                           f"{pack_genome(genome)}\n")
        MlflowClient(tracking_uri=uri).log_artifacts(run_id, str(folder), f"explanations/{model}")
    return [*paths, ranking]
