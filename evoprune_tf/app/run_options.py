"""The options of ``evoprune run`` that override config values, and the config they build.

`add_run_options` adds them to a parser (``evoprune run`` and every experiment script),
`overrides_from_args` turns what it parsed into nested config overrides, and
`load_run_config` merges those over a TOML file (or the defaults) into a validated
`ExperimentConfig`. `EPILOG` is the help text that explains operator syntax, the
environment and the Keras backend.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["EPILOG", "add_run_options", "overrides_from_args", "load_run_config", "parse_operator"]

EPILOG = """\
operator syntax: NAME or NAME:key=value,key=value (e.g. --mate uniform:indpb=0.3,
--mutate flip_bit:indpb=1/L, --select tournament:tournsize=3). DEAP's own tools
functions work by name too (--mate cxTwoPoint); your own function by import path,
module:function, with options after a second colon (--mate my_ops:block_swap:width=8).
An operator on the command line replaces the config's, options included (NAME: alone
means no options). Operators registered with @operators.register in your module are
named once the module is loaded: --plugin my_ops (or plugins = ["my_ops"] in the
config, or an "evoprune.operators" entry point). `evoprune operators` lists the names.

environment: EVOPRUNE_ASSETS (the shared real assets; experiment scripts default to
it), MLFLOW_TRACKING_URI (default sqlite:///mlruns/mlflow.db), EVOPRUNE_CACHE_DIR
(feature cache, default ~/.cache/evoprune_tf/features), KERAS_BACKEND (wins over
--backend / train.backend).

Keras backend (--backend, train.backend): auto (default) runs every method on
TensorFlow when it is installed (on CPU heads train as fast there as on JAX or faster,
and features and convolutions much faster) and on JAX where only JAX is (a GPU
machine); or name tensorflow or jax (on JAX, features are extracted on TensorFlow in a
child process). The run prints which backend it uses and why.
"""


def _is_registered(name: str) -> bool:
    import operators

    return any(name in names for names in operators.available().values())


def parse_operator(text: str) -> Any:
    """An operator given on the command line -> a spec for the config.

    ``"uniform"`` -> ``"uniform"``; ``"uniform:indpb=0.5"`` -> ``{"name": "uniform",
    "indpb": 0.5}``; ``"uniform:"`` -> ``{"name": "uniform"}`` (no options: replaces the
    config's); ``"my_ops:block_swap"`` -> that import path; ``"my_ops:block_swap:width=8"``
    -> the import path with options. Options come after the *last* colon, and only when
    that part holds ``key=value`` items (or nothing).

    Args:
        text: the command-line value.

    Returns:
        A name or import path (str), or a dict with ``name`` and the options.

    Raises:
        ValueError: an option that is not ``key=value``.
    """
    if ":" not in text:
        return text
    name, _, options = text.rpartition(":")
    if options and "=" not in options:
        if _is_registered(name):  # "uniform:indpb": options were meant, not an import path
            raise ValueError(f"operator option {options!r} in {text!r}; expected key=value")
        return text  # "package.module:function"
    spec: dict[str, Any] = {"name": name}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"operator option {item!r} in {text!r}; expected key=value")
        spec[key.strip()] = _number(value.strip())
    return spec


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _budget(text: str) -> int | float:
    """``--active``: an integer count (``5``) or a fraction (``0.05``); the config checks the range."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Add the options of ``evoprune run`` that override config values (shared with the experiment scripts).

    Args:
        p: the parser to extend; `overrides_from_args` reads what it parses.
    """
    g = p.add_argument_group("overrides (each replaces the config's value)")
    g.add_argument("--seed", type=int, help="run seed (drives Python, NumPy, Keras, weights, batches)")
    g.add_argument("--data", help="dataset: class folder, .npz, tfds:NAME, download:NAME or builtin:synthetic")
    g.add_argument("--image-size", type=int, help="image side in pixels (0 = backbone default)")
    g.add_argument("--max-per-class", type=int, help="at most this many images per class and split")
    g.add_argument("--skip-bad-images", action="store_true", default=None, help="skip unreadable images (counted)")
    g.add_argument("--backbone", help="keras.applications backbone, e.g. mobilenet_v2, resnet50")
    g.add_argument("--weights", help="'imagenet', a local weights file, or 'none'")
    g.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",")], help="hidden widths, e.g. 512,512")
    g.add_argument("--encoding", help="feature_selection | neuron_pruning | connection_pruning | filters")
    g.add_argument("--algorithm", help="steady_state | ea_simple | mu_plus_lambda | nsga2 | nsga3 | random_search | "
                   "deep_pruning_es | tascnet; head baselines: unpruned | random_mask | magnitude | l1_selection; "
                   "filter baselines: random_filters | uniform_width | l1_filters | bn_scale | fpgm | taylor "
                   "(`evoprune methods` lists every registered one)")
    g.add_argument("--blocks", type=lambda s: s if s == "all" else int(s),
                   help="filters encoding: prune the last K blocks of the backbone, or 'all'")
    g.add_argument("--objectives", type=lambda s: s.split(","),
                   help="comma list of accuracy, loss, active_fraction, robustness (filters: error, flops, params, "
                        "latency)")
    g.add_argument("--ood", help="OOD images for the robustness objective (folder, .npz, tfds:NAME)")
    g.add_argument("--evaluations", type=int, help="evaluation budget (steady_state, nsga2, nsga3)")
    g.add_argument("--generations", type=int, help="generations (ea_simple, mu_plus_lambda)")
    g.add_argument("--population", type=int, help="population size")
    g.add_argument("--density", type=float, help="baselines random_mask / magnitude / l1_selection: fraction of genes on")
    g.add_argument("--active", type=_budget, metavar="K",
                   help="fixed budget: exactly K genes on (an integer) or this fraction of them (e.g. 0.05)")
    g.add_argument("--flops-reduction", type=float, metavar="F",
                   help="filter baselines: remove this fraction of the searched FLOPs (0 < F < 1)")
    g.add_argument("--round-to", type=int, metavar="N",
                   help="filters encoding: every kept group's width a multiple of N (8 is usual on hardware)")
    g.add_argument("--epochs", type=int, help="head training epochs per evaluation")
    g.add_argument("--backend", help="Keras backend: auto | tensorflow | jax (train.backend; KERAS_BACKEND wins)")
    for alias in ("init", "select", "mate", "mutate", "survive"):
        g.add_argument(f"--{alias}", type=parse_operator, help=f"{alias} operator (see below)")
    g.add_argument("--seeds", type=int, help="retrains per head in the final report")
    g.add_argument("--experiment", help="MLflow experiment name")
    g.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--runner", help="where evaluations run: auto | serial | processes | ray")
    g.add_argument("--workers", type=int, help="worker processes or Ray actors (0: every core / cluster CPU)")
    g.add_argument("--ray-address", help="Ray: auto, host:port or ray://host:port (default: a local cluster)")
    g.add_argument("--num-gpus", type=float, help="Ray: GPUs per worker actor (fractional allowed)")
    g.add_argument("--plugin", action="append", metavar="MODULE",
                   help="import MODULE first (its @operators.register operators can then be named); repeatable")


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The nested config overrides given on the command line."""
    table = {
        "seed": ("seed",), "data": ("data", "source"), "image_size": ("data", "image_size"),
        "max_per_class": ("data", "max_per_class"), "skip_bad_images": ("data", "skip_bad_images"),
        "backbone": ("backbone", "name"), "weights": ("backbone", "weights"), "hidden": ("head", "hidden"),
        "encoding": ("encoding", "name"), "algorithm": ("algorithm", "name"), "blocks": ("encoding", "blocks"),
        "objectives": ("objectives", "names"), "ood": ("objectives", "ood"),
        "evaluations": ("algorithm", "evaluations"), "generations": ("algorithm", "generations"),
        "population": ("algorithm", "population"), "density": ("algorithm", "density"),
        "active": ("encoding", "active"), "epochs": ("train", "epochs"),
        "flops_reduction": ("algorithm", "flops_reduction"), "round_to": ("encoding", "round_to"),
        "backend": ("train", "backend"),
        "init": ("operators", "init"), "select": ("operators", "select"), "mate": ("operators", "mate"),
        "mutate": ("operators", "mutate"), "survive": ("operators", "survive"), "seeds": ("report", "seeds"),
        "experiment": ("tracking", "experiment"),
        "runner": ("runner",), "workers": ("workers",), "ray_address": ("ray_address",), "num_gpus": ("num_gpus",),
    }
    out: dict = {}
    for attr, path in table.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    if getattr(args, "no_tracking", False):
        out.setdefault("tracking", {})["enabled"] = False
    if getattr(args, "no_progress", False):
        out["progress"] = False
    if getattr(args, "plugin", None):
        out["plugins"] = list(args.plugin)
    return out


def load_run_config(path: str | None, overrides: dict, *, base: dict | None = None):
    """The config of ``evoprune run``: the TOML file (or defaults) with the command-line overrides.

    Like `evoprune_tf.experiment.config.load_config`, except that an operator given on the
    command line *replaces* the config's spec, options included, as ``--help`` says
    (a nested merge would keep the file's options next to the new name). Plugins given
    with ``--plugin`` are added to the config's. The Keras backend is chosen from the
    merged values before they are validated (`evoprune_tf.experiment.config.use_backend_for_dict`):
    validating a non-default optimizer or loss imports Keras, which fixes the backend.

    Args:
        path: a TOML file, or None for the defaults.
        overrides: `overrides_from_args`' nested dict.
        base: defaults under the file (an experiment script's dataset settings); the
            file's values win over them, the command line over both.

    Returns:
        The validated `ExperimentConfig`.

    Raises:
        ConfigError: as `load_config`.
    """
    import tomllib

    from evoprune_tf.experiment.config import check_shadowed_values, config_from_dict, load_config, merge, \
        use_backend_for_dict

    overrides = dict(overrides)
    operator_overrides = overrides.pop("operators", {})
    plugins = overrides.pop("plugins", [])
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return load_config(path, overrides)  # its one-line message for a missing or broken file
        check_shadowed_values(raw, overrides, str(path))  # a bad file value the command line replaces still fails
    merged = merge(merge(base or {}, raw), overrides)
    given = merge(raw, overrides)  # what the user set: keys the method does not read are refused
    if operator_overrides:
        for target in (merged, given):
            section = target.get("operators", {})
            if isinstance(section, dict):
                target["operators"] = {**section, **operator_overrides}
    if plugins:
        known = merged.get("plugins", [])
        merged["plugins"] = [*known, *(p for p in plugins if p not in known)] if isinstance(known, list) else plugins
    use_backend_for_dict(merged)
    return config_from_dict(merged, str(path) if path is not None else "config", given=given)
