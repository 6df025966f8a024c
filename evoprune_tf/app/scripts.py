"""The shared entry point of the per-dataset scripts in ``experiments/``.

A script declares its dataset (where the data is, how to get it) and its defaults;
`experiment_main` adds every ``evoprune run`` override (``--algorithm``,
``--objectives``, ``--encoding``, operators, budgets...), an optional ``--config`` TOML,
checks that the data exists (saying what to download and where when it does not), and
runs the evolution.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["Dataset", "experiment_main", "assets_path", "REFERENCE_SETUP"]

#: EvoPruneDeepTL's reference head: ResNet50 (ImageNet, average pooling, 2048 features)
#: -> Dense 512 -> Dense 512 -> softmax, at 224 px.
REFERENCE_SETUP = {
    "backbone": {"name": "resnet50", "weights": "imagenet"},
    "head": {"hidden": [512, 512]},
    "data": {"image_size": 224},
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """How an experiment finds its data.

    Attributes:
        name: short name (MLflow tag, experiment name).
        description: one line for ``--help``.
        download: what to download and how to lay it out, shown when the data is missing.
        default_source: a folder, ``.npz`` or ``tfds:NAME`` used when ``--data`` is not given.
        assets_subpath: folder under ``$EVOPRUNE_ASSETS`` preferred when that is set.
        overrides: config defaults of this experiment (a nested dict like the TOML).
        assets_weights: backbone weights file under ``$EVOPRUNE_ASSETS`` used when that is
            set (offline machines cannot download ``"imagenet"``).
    """

    name: str
    description: str
    download: str
    default_source: str = ""
    assets_subpath: str = ""
    overrides: dict = dataclasses.field(default_factory=dict)
    assets_weights: str = ""


def assets_path(subpath: str) -> Path | None:
    """``$EVOPRUNE_ASSETS/subpath`` when the variable is set and the path exists."""
    root = os.environ.get("EVOPRUNE_ASSETS")
    if root and subpath and (Path(root) / subpath).exists():
        return Path(root) / subpath
    return None


def _source(dataset: Dataset, given: str | None) -> str:
    if given:
        return given
    local = assets_path(dataset.assets_subpath)
    if local is not None:
        return str(local)
    return dataset.default_source


def _check_source(dataset: Dataset, source: str) -> None:
    if not source:
        raise FileNotFoundError(f"no data for {dataset.name}: pass --data FOLDER. {dataset.download}")
    if source.startswith(("tfds:", "builtin:")):
        return
    if not Path(source).exists():
        raise FileNotFoundError(f"dataset {source} does not exist. {dataset.download}")


def experiment_main(dataset: Dataset, argv: Sequence[str] | None = None) -> int:
    """Parse the command line of an experiment script and run it.

    Returns:
        The exit status (0, or 2 for bad input with a one-line error on stderr).
    """
    from evoprune_tf.app.cli import EPILOG, _add_run_options, overrides_from_args

    parser = argparse.ArgumentParser(
        prog=f"experiments/{dataset.name}.py", description=f"{dataset.description}\n\nData: {dataset.download}",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )
    parser.add_argument("--config", help="a TOML config; this script's defaults apply under it")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the config, run nothing")
    _add_run_options(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        from evoprune_tf.app.config import load_config, merge

        source = _source(dataset, args.data)
        _check_source(dataset, source)
        args.data = source
        base = merge({"name": dataset.name, "data": {"name": dataset.name},
                      "tracking": {"experiment": f"evoprune-{dataset.name}"}}, dataset.overrides)
        weights = assets_path(dataset.assets_weights)
        if weights is not None:
            base = merge(base, {"backbone": {"weights": str(weights)}})
        overrides = merge(base, overrides_from_args(args))
        if args.config:
            import tomllib

            with open(args.config, "rb") as f:
                overrides = merge(overrides, tomllib.load(f))
            overrides = merge(overrides, overrides_from_args(args))
        config = load_config(None, overrides)
        if args.dry_run:
            import json

            print(json.dumps(config.to_dict(), indent=2, default=str))
            return 0
        from evoprune_tf.app.run import run

        run(config)
        return 0
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
