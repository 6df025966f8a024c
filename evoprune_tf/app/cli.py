"""The ``evoprune`` command line.

    evoprune run CONFIG.toml [overrides]    run one evolution (see --help for overrides)
    evoprune resume CHECKPOINT              continue a killed run in the same MLflow run
    evoprune ui [--port 5000]               MLflow UI over the project's store
    evoprune bench [...]                    fitness-evaluation benchmark
    evoprune explain RUN_ID [--model knee]  explanation heat maps for a finished run (best, heavy, knee, light)
    evoprune operators                      list the registered operator names
    evoprune grid GRID.toml                 run a study grid, one MLflow run per cell (resumable)
    evoprune server [--port 5000]           one MLflow tracking server for concurrent runs

Bad input ends with one line ``error: ...`` on stderr and exit status 2, before any
long computation starts. Ctrl-C (exit 130) and SIGTERM (exit 143) stop a run the same
way: the MLflow run is marked KILLED, the checkpoint is kept and the resume command is
printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from evoprune_tf.app.trust import add_trust_arguments
from evoprune_tf.quiet import quiet_startup, quiet_tensorflow  # noqa: F401 - importable from here as before
from evoprune_tf.studies.compare import add_compare_arguments, run_compare
from evoprune_tf.tracking.redact import redact_text, redact_uri

if TYPE_CHECKING:
    from evoprune_tf.app.backend import BackendChoice

__all__ = ["main", "build_parser", "parse_operator", "overrides_from_args", "load_run_config", "grid_backend",
           "Terminated"]

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so a run stops exactly as on Ctrl-C.

    A `KeyboardInterrupt` subclass: the run is marked KILLED, the checkpoint is kept
    and the resume hint printed; the command exits with 143 (128 + SIGTERM).
    """


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


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
                   "deep_pruning_es | tascnet; baselines: unpruned | random_mask | magnitude | l1_selection")
    g.add_argument("--blocks", type=lambda s: s if s == "all" else int(s),
                   help="filters encoding: prune the last K blocks of the backbone, or 'all'")
    g.add_argument("--objectives", type=lambda s: s.split(","),
                   help="comma list of accuracy, loss, active_fraction, robustness")
    g.add_argument("--ood", help="OOD images for the robustness objective (folder, .npz, tfds:NAME)")
    g.add_argument("--evaluations", type=int, help="evaluation budget (steady_state, nsga2, nsga3)")
    g.add_argument("--generations", type=int, help="generations (ea_simple, mu_plus_lambda)")
    g.add_argument("--population", type=int, help="population size")
    g.add_argument("--density", type=float, help="baselines random_mask / magnitude / l1_selection: fraction of genes on")
    g.add_argument("--active", type=_budget, metavar="K",
                   help="fixed budget: exactly K genes on (an integer) or this fraction of them (e.g. 0.05)")
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

    Like `evoprune_tf.app.config.load_config`, except that an operator given on the
    command line *replaces* the config's spec, options included, as ``--help`` says
    (a nested merge would keep the file's options next to the new name). Plugins given
    with ``--plugin`` are added to the config's. The Keras backend is chosen from the
    merged values before they are validated (`evoprune_tf.app.config.use_backend_for_dict`):
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

    from evoprune_tf.app.config import check_shadowed_values, config_from_dict, load_config, merge, \
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
    if operator_overrides:
        section = merged.get("operators", {})
        if isinstance(section, dict):
            merged["operators"] = {**section, **operator_overrides}
    if plugins:
        known = merged.get("plugins", [])
        merged["plugins"] = [*known, *(p for p in plugins if p not in known)] if isinstance(known, list) else plugins
    use_backend_for_dict(merged)
    return config_from_dict(merged, str(path) if path is not None else "config")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``evoprune``."""
    parser = argparse.ArgumentParser(
        prog="evoprune", description="Evolutionary pruning of transfer-learning heads (DEAP + Keras + MLflow).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run one evolution from a TOML config", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="TOML config (omit for the built-in defaults)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the config as JSON, run nothing")
    add_run_options(p)
    p = sub.add_parser("resume", help="continue a killed run from its checkpoint, in the same MLflow run")
    p.add_argument("checkpoint", help="checkpoint file or folder, or an MLflow run id (or a unique prefix)")
    p.add_argument("--evaluations", type=int, help="a new (larger) evaluation budget")
    p.add_argument("--generations", type=int, help="a new (larger) generation budget")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept an old pickle checkpoint (format 1 or 2); unpickling can run code: only for a file you trust")
    add_trust_arguments(p)
    p = sub.add_parser("ui", help="open the MLflow UI over the project's store (127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    p.add_argument("--log-file", default=None, help="write the MLflow server's output here")
    p = sub.add_parser("bench", help="fitness-evaluation benchmark (see benchmarks/fitness.py --help)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p = sub.add_parser("explain", help="explanation heat maps for a finished run")
    p.add_argument("run_id")
    p.add_argument("--per-class", type=int, default=2)
    p.add_argument("--model", default="best",
                   help="which model: best (default), or for multi-objective runs a trade-off model: heavy, knee, light")
    add_trust_arguments(p)
    sub.add_parser("operators", help="list registered operator names by kind")
    p = sub.add_parser("compare", help="compare groups of finished runs over seeds: table, paired tests, plots")
    add_compare_arguments(p)
    from evoprune_tf.app.server import add_server_arguments
    from evoprune_tf.studies.grid import add_grid_arguments

    add_grid_arguments(sub.add_parser("grid", help="run a study grid (cross product of config keys), resumable"))
    add_server_arguments(sub.add_parser("server", help="start one MLflow tracking server for concurrent runs"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evoprune`` console script.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 2 for bad input, 130 after Ctrl-C, 143 after SIGTERM.
    """
    quiet_startup()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # hand every option to the benchmark's own parser
        argv = ["bench", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _dispatch(args)
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, ImportError, RuntimeError) as error:
        # RuntimeError: e.g. ImageNet weights that cannot be downloaded (the message names the file)
        line = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {redact_text(line)}", file=sys.stderr)  # no URI password on the terminal
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def grid_backend(path: str) -> BackendChoice:
    """Choose the Keras backend of ``evoprune grid``: one for every cell, since the cells share a process.

    The cells' own choices (`evoprune_tf.app.backend.choose_backend`) when they agree;
    TensorFlow when they differ (it runs every method; each cell then prints what it
    would have picked). Ray workers get it through the forwarded ``KERAS_BACKEND``.

    Args:
        path: the grid TOML.

    Returns:
        The applied `evoprune_tf.app.backend.BackendChoice` (print its ``line``).

    Raises:
        ValueError: a bad grid (as ``evoprune grid``), or a cell asking for a backend that is not installed.
    """
    from evoprune_tf.app.backend import BackendChoice, apply_backend, choose_backend
    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.features.child import backend_installed
    from evoprune_tf.studies.grid import load_grid

    cells = [config_from_dict(cell.config) for cell in load_grid(path).cells]
    choices = [choose_backend(c.algorithm.name, c.train.backend, c.train.engine) for c in cells]
    if not choices or len({c.backend for c in choices}) == 1:
        return apply_backend(choices[0]) if choices else choose_backend("steady_state")
    wanted = sorted({c.backend for c in choices})
    common = "tensorflow" if backend_installed("tensorflow") else "jax"
    return apply_backend(BackendChoice(common, f"the grid's cells want {' and '.join(wanted)}; they share one "
                                               f"process, so one backend: {common} runs every method", common))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "grid":
        from evoprune_tf.studies.grid import run_grid_command

        if not args.dry_run:
            print(grid_backend(args.grid).line, flush=True)
        return run_grid_command(args)
    if args.command == "server":
        from evoprune_tf.app.server import serve as serve_tracking_server

        return serve_tracking_server(args)
    if args.command == "compare":
        run_compare(args)
        return 0
    if args.command == "operators":
        import operators

        for kind, names in operators.available().items():
            print(f"{kind}: {', '.join(names)}")
        return 0
    if args.command == "ui":
        from evoprune_tf.app.server import MLflowServer, serve_in_foreground
        from evoprune_tf.tracking.store import resolve_tracking_uri

        uri = resolve_tracking_uri(args.uri)
        server = MLflowServer(host="127.0.0.1", port=args.port, backend_store_uri=uri, workers=1,
                              log_file=args.log_file)
        code, stopped = serve_in_foreground(server, f"MLflow UI for {redact_uri(uri)} at {{url}} (Ctrl-C to stop)")
        if stopped is not None:  # as a run: 130 for Ctrl-C, 143 for SIGTERM
            return 128 + (signal.SIGTERM if stopped == signal.SIGHUP else stopped)
        return code
    if args.command == "bench":
        import runpy

        script = Path(__file__).resolve().parents[2] / "benchmarks" / "fitness.py"
        if not script.is_file():
            raise FileNotFoundError(f"benchmark script {script} not found; run it from a source checkout")
        sys.argv = [str(script), *args.bench_args]
        runpy.run_path(str(script), run_name="__main__")
        return 0
    if args.command == "explain":
        from evoprune_tf.app.explain import explain_run

        for path in explain_run(args.run_id, per_class=args.per_class, model=args.model, plugins=args.plugin,
                                trust_plugins=args.trust_plugins):
            print(path)
        return 0
    from evoprune_tf.app.config import merge
    from evoprune_tf.app.run import resume, run

    if args.command == "resume":
        from evoprune_tf.app.config import config_from_dict, use_backend_for_dict
        from evoprune_tf.app.trust import check_stored_modules
        from evoprune_tf.search.checkpoint import load_checkpoint
        from evoprune_tf.tracking.checkpoints import find_checkpoint, recorded_store

        path = find_checkpoint(args.checkpoint)
        checkpoint = load_checkpoint(path, allow_pickle=args.allow_pickle)
        budget = {k: v for k, v in (("evaluations", args.evaluations), ("generations", args.generations)) if v}
        extra: dict = {"algorithm": budget} if budget else {}
        if args.no_progress:
            extra["progress"] = False
        extra.update(recorded_store(checkpoint))  # no store named now: the one the run lives in
        # The checkpoint's config is stored data: the modules it names are imported only when allowed.
        check_stored_modules(merge(checkpoint.config, extra), f"config of checkpoint {path}",
                             allowed=args.plugin, trust=args.trust_plugins)
        use_backend_for_dict(merge(checkpoint.config, extra))  # before validation may import Keras
        config = config_from_dict(merge(checkpoint.config, extra), source=f"config of {path}")
        resume(path, config=config, allow_pickle=args.allow_pickle)
        return 0
    config = load_run_config(args.config, overrides_from_args(args))
    if getattr(args, "dry_run", False):
        import json

        print(json.dumps(config.to_dict(), indent=2, default=str))
        return 0
    run(config)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
