"""The shared entry point of the per-dataset scripts in ``experiments/``.

A script declares its dataset (where the data is, how to get it) and its defaults;
`experiment_main` adds every ``evoprune run`` override (``--algorithm``,
``--objectives``, ``--encoding``, operators, budgets...), an optional ``--config`` TOML,
checks that the data exists (saying what to download and where when it does not), and
runs the evolution. `TascnetImageSet` does the same for TASCNet's image evaluation sets
(CalTech-101, CalTech-256, Stanford Dogs), which share the paper's recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from evoprune_tf.app.run_options import EPILOG, add_run_options, load_run_config, overrides_from_args
from evoprune_tf.data.images import is_named_source
from evoprune_tf.experiment.config import ConfigError, merge
from evoprune_tf.experiment.run import run
from evoprune_tf.quiet import quiet_startup

__all__ = ["Dataset", "experiment_main", "assets_path", "REFERENCE_SETUP", "TascnetImageSet",
           "TASCNET_IMAGE_RECIPE", "TASCNET_WEIGHTS_HELP", "tascnet_main"]

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

    The config is built like ``evoprune run``'s (`evoprune_tf.app.run_options.load_run_config`):
    the script's defaults, under ``--config``'s file, under the command line, and an
    operator given on the command line (``--mate NAME:opts``) replaces the file's spec.

    Args:
        dataset: the script's dataset and defaults.
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status (0, or 2 for bad input with a one-line error on stderr).
    """
    script = Path(sys.argv[0]).name if argv is None and sys.argv[0].endswith(".py") else f"{dataset.name}.py"
    parser = argparse.ArgumentParser(
        prog=f"experiments/{script}", description=f"{dataset.description}\n\nData: {dataset.download}",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )
    parser.add_argument("--config", help="a TOML config; this script's defaults apply under it")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the config, run nothing")
    add_run_options(parser)
    args = parser.parse_args(argv)
    quiet_startup()  # as `evoprune run`: no TensorFlow start-up noise, no MLflow table-creation lines
    try:
        base = merge({"name": dataset.name, "data": {"name": dataset.name, "source": _source(dataset, None)},
                      "tracking": {"experiment": f"evoprune-{dataset.name}"}}, dataset.overrides)
        weights = assets_path(dataset.assets_weights)
        if weights is not None:
            base = merge(base, {"backbone": {"weights": str(weights)}})
        config = load_run_config(args.config, overrides_from_args(args), base=base)
        _check_source(dataset, config.data.source)
        if args.dry_run:
            print(json.dumps(config.to_dict(), indent=2, default=str))
            return 0
        run(config)
        return 0
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


#: TASCNet's recipe on its image evaluation sets: VGG16 (ImageNet) at 224 px; stage 1
#: searches 20 configurations of 6, stage 2 prunes while validation accuracy holds.
TASCNET_IMAGE_RECIPE: dict[str, Any] = {
    "data": {"image_size": 224, "val_fraction": 0.15, "test_fraction": 0.2},
    "backbone": {"name": "VGG16", "weights": "imagenet"},
    "tascnet": {"stage": "both", "evaluations": 20, "population": 6, "search_epochs": 5, "final_epochs": 30,
                "epochs": 5, "max_iterations": 20},
}

#: Where the ImageNet weights of TASCNet's backbones go on an offline machine.
TASCNET_WEIGHTS_HELP = (
    "ImageNet weights: put vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (or "
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 / densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5) "
    "in $KERAS_HOME/models/ (default ~/.keras/models/) or pass --weights <file>."
)


@dataclasses.dataclass(frozen=True)
class TascnetImageSet:
    """One of TASCNet's image evaluation sets, as its experiment script declares it.

    The script runs TASCNet (stage-1 configuration search + stage-2 trajectory-similarity
    pruning) with `TASCNET_IMAGE_RECIPE`, the paper's (SGD lr 1e-3, momentum 0.9
    Nesterov, halved every 20 epochs, batch 32; prune 5 % per layer and iteration while
    validation accuracy stays within 2 points); ``--set`` changes any config value.
    `dataset` keeps the set's head-pruning entry for `experiment_main` (the
    EvoPruneDeepTL methods, on `REFERENCE_SETUP`).

    Attributes:
        name: short name (MLflow experiment ``tascnet-<name>``, tags).
        description: one line for ``--help``.
        source: the default ``data.source`` (``tfds:NAME``, or ``""``: ``--data`` needed).
        data_help: how to download and lay out the images (``--help``'s epilog).
        head_download: the shorter form of it that `experiment_main` shows.
    """

    name: str
    description: str
    source: str
    data_help: str
    head_download: str

    @property
    def dataset(self) -> Dataset:
        """The head-pruning entry of this set (`experiment_main`'s `Dataset`)."""
        return Dataset(name=self.name, description=self.description, download=self.head_download,
                       default_source=self.source, assets_subpath="", overrides=REFERENCE_SETUP)

    @property
    def download(self) -> str:
        """What to download for a TASCNet run: the images, then the backbone weights."""
        return f"{self.data_help} {TASCNET_WEIGHTS_HELP}"

    @property
    def defaults(self) -> dict[str, Any]:
        """The config defaults of the TASCNet run (`TASCNET_IMAGE_RECIPE` on this set)."""
        return merge(TASCNET_IMAGE_RECIPE, {"data": {"source": self.source},
                                            "tracking": {"experiment": f"tascnet-{self.name}"}})

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run TASCNet on this set from the command line (`tascnet_main`).

        Args:
            argv: arguments (default ``sys.argv[1:]``).

        Returns:
            The exit status.
        """
        return tascnet_main(None if argv is None else list(argv), defaults=self.defaults,
                            description=self.description, download=self.download)


# ------------------------------------------------------------------ TASCNet scripts

def _tascnet_parser(description: str, download: str) -> argparse.ArgumentParser:
    """Every ``evoprune run`` option, ``--config``, ``--dry-run``, and TASCNet's own."""
    parser = argparse.ArgumentParser(description=description, epilog=f"{download}\n\n{EPILOG}" if download else EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, conflict_handler="resolve")
    parser.add_argument("--config", help="a TOML config; this script's recipe applies under it")
    parser.add_argument("--dry-run", action="store_true", help="validate and print each seed's config, run nothing")
    add_run_options(parser)
    t = parser.add_argument_group("TASCNet")
    t.add_argument("--text", help="text corpus folder (<class>.txt files or rt-polarity.pos/.neg)")
    t.add_argument("--stage", choices=("1", "2", "both"), help="TASCNet stage(s) to run")
    # Replaces `evoprune run`'s --seeds (report retrains, which TASCNet does not do): the run seeds.
    t.add_argument("--seeds", type=int, nargs="+", dest="run_seeds", metavar="SEED",
                   help="run seeds, one MLflow run each (default: --seed, else 0)")
    t.add_argument("--out", default="", help="folder for each seed's artifacts (default: the report folder)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config value, e.g. tascnet.evaluations=6 (repeatable)")
    return parser


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML-like literal (int, float, bool, list) or a plain string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _tascnet_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """``evoprune run``'s overrides plus ``--text``, ``--stage`` and each ``--set KEY=VALUE``."""
    overrides = overrides_from_args(args)
    overrides.setdefault("algorithm", {})["name"] = overrides.get("algorithm", {}).get("name", "tascnet")
    if args.text:
        overrides.setdefault("tascnet", {})["text_corpus"] = args.text
    if args.stage:
        overrides.setdefault("tascnet", {})["stage"] = args.stage if args.stage == "both" else int(args.stage)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}; expected KEY=VALUE, e.g. tascnet.evaluations=6")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _parse_value(value)
    return overrides


def tascnet_main(
    argv: Sequence[str] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    description: str = "Run TASCNet over one or more seeds and print a results table.",
    download: str = "",
) -> int:
    """Command line of the TASCNet experiment scripts (``experiments/*.py``).

    Takes every ``evoprune run`` option, ``--config`` and ``--dry-run`` (the config is
    built as ``evoprune run`` builds it, over ``defaults``), plus ``--text`` (a text
    corpus), ``--stage``, ``--seeds`` (run seeds, one MLflow run each), ``--out`` and
    ``--set key=value`` (any config value, ``--set tascnet.evaluations=6``); then a table
    (params/FLOPs/filters of the searched layers, test accuracy, wall time) and its mean
    over the seeds. A key TASCNet does not read is refused in one line.

    Args:
        argv: arguments (default ``sys.argv[1:]``).
        defaults: nested config dict the arguments override (the dataset's recipe).
        description: the ``--help`` text.
        download: what to download and where (shown in ``--help`` and when the data is missing).

    Returns:
        The exit status (2 for bad input, with one line on stderr).
    """
    from evoprune_tf.methods.tascnet.report import results_table

    parser = _tascnet_parser(description, download)
    args = parser.parse_args(None if argv is None else list(argv))
    quiet_startup()
    overrides = _tascnet_overrides(parser, args)
    base = merge({"algorithm": {"name": "tascnet"}}, defaults or {})
    seeds = args.run_seeds or [args.seed if args.seed is not None else 0]
    configs = []
    try:
        for seed in seeds:
            configs.append(load_run_config(args.config, merge(overrides, {"seed": seed}), base=base))
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    c = configs[0]
    source = c.tascnet.text_corpus or c.data.source
    if not source or (not is_named_source(source) and not source.startswith("builtin:") and not Path(source).exists()):
        print(f"dataset {source!r} not found. {download}", file=sys.stderr)
        return 2
    if args.dry_run:
        for config in configs:
            print(json.dumps(config.to_dict(), indent=2, default=str))
        return 0
    rows = [run(config, out_dir=Path(args.out) / f"seed{config.seed}" if args.out else None, print_table=False)
            if config.algorithm.name == "tascnet" else run(config) for config in configs]
    if all(isinstance(r, dict) and "unpruned" in r for r in rows):  # TASCNet reports (--algorithm may name another)
        print(results_table(rows))
    return 0
