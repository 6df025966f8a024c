"""The ``evoprune`` command line.

    evoprune run CONFIG.toml [overrides]    run one evolution (see --help for overrides)
    evoprune resume CHECKPOINT              continue a killed run in the same MLflow run
    evoprune ui [--port 5000]               MLflow UI over the project's store
    evoprune bench [...]                    fitness-evaluation benchmark
    evoprune explain RUN_ID [--model knee]  explanation heat maps for a finished run (best, heavy, knee, light)
    evoprune operators                      list the registered operator names
    evoprune methods                        list the registered methods and the config sections they read
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
from typing import TYPE_CHECKING, Sequence

from evoprune_tf.app.run_options import (  # noqa: F401 - importable from here as before
    EPILOG,
    add_run_options,
    load_run_config,
    overrides_from_args,
    parse_operator,
)
from evoprune_tf.experiment.trust import add_trust_arguments
from evoprune_tf.quiet import quiet_startup, quiet_tensorflow  # noqa: F401 - importable from here as before
from evoprune_tf.session.signals import Terminated, _raise_terminated
from evoprune_tf.studies.compare import add_compare_arguments, run_compare
from evoprune_tf.tracking.redact import redact_text, redact_uri

if TYPE_CHECKING:
    from evoprune_tf.experiment.backend import BackendChoice

__all__ = ["main", "build_parser", "parse_operator", "overrides_from_args", "load_run_config", "grid_backend",
           "Terminated"]


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
    p = sub.add_parser("methods", help="list the registered methods (algorithm.name) and the config keys each reads")
    p.add_argument("--plugin", action="append", metavar="MODULE", help="import MODULE first (its @register methods)")
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


def _print_methods(plugins: list[str]) -> None:
    """``evoprune methods``: each method's name, summary, own section and the keys it reads."""
    import operators

    from evoprune_tf.experiment.config import section_types
    from evoprune_tf.methods import available_methods

    operators.registry.load_plugins(plugins)  # a plugin module may register methods as well as operators
    sections = section_types()
    for name, method in available_methods().items():
        reads = [f"[{method.section}] (own)"] if method.section else []
        reads += [f"[{r}]" if r in sections else r for r in method.reads]
        if method.checkpoints:
            reads.append("[checkpoint]")
        if method.writes_report_files and "report.dir" not in reads:
            reads.append("report.dir")
        print(f"{name}: {method.summary or type(method).__doc__ or ''}".rstrip())
        print(f"    reads: {', '.join(reads)}; and every run's name, seed, progress, plugins, algorithm.name, "
              "train.backend, [tracking]")


def grid_backend(path: str) -> BackendChoice:
    """Choose the Keras backend of ``evoprune grid``: one for every cell, since the cells share a process.

    The cells' own choices (`evoprune_tf.experiment.backend.choose_backend`) when they agree;
    TensorFlow when they differ (it runs every method; each cell then prints what it
    would have picked). Ray workers get it through the forwarded ``KERAS_BACKEND``.

    Args:
        path: the grid TOML.

    Returns:
        The applied `evoprune_tf.experiment.backend.BackendChoice` (print its ``line``).

    Raises:
        ValueError: a bad grid (as ``evoprune grid``), or a cell asking for a backend that is not installed.
    """
    from evoprune_tf.experiment.backend import BackendChoice, apply_backend, choose_backend
    from evoprune_tf.experiment.config import config_from_dict
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


def _grid(args: argparse.Namespace) -> int:
    from evoprune_tf.studies.grid import run_grid_command

    if not args.dry_run:
        print(grid_backend(args.grid).line, flush=True)
    return run_grid_command(args)


def _server(args: argparse.Namespace) -> int:
    from evoprune_tf.app.server import serve as serve_tracking_server

    return serve_tracking_server(args)


def _compare(args: argparse.Namespace) -> int:
    run_compare(args)
    return 0


def _methods(args: argparse.Namespace) -> int:
    _print_methods(args.plugin or [])
    return 0


def _operators(args: argparse.Namespace) -> int:
    import operators

    for kind, names in operators.available().items():
        print(f"{kind}: {', '.join(names)}")
    return 0


def _ui(args: argparse.Namespace) -> int:
    from evoprune_tf.app.server import MLflowServer, serve_in_foreground
    from evoprune_tf.tracking.experiments import ui_link
    from evoprune_tf.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(args.uri)
    server = MLflowServer(host="127.0.0.1", port=args.port, backend_store_uri=uri, workers=1,
                          log_file=args.log_file)
    # The link opens MLflow 3.17's "Model training" view (runs first), not its GenAI overview.
    banner = f"MLflow UI for {redact_uri(uri)} at " + ui_link("{url}") + " (Ctrl-C to stop)"
    code, stopped = serve_in_foreground(server, banner)
    if stopped is not None:  # as a run: 130 for Ctrl-C, 143 for SIGTERM
        return 128 + (signal.SIGTERM if stopped == signal.SIGHUP else stopped)
    return code


def _bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "fitness.py"
    if not script.is_file():
        raise FileNotFoundError(f"benchmark script {script} not found; run it from a source checkout")
    sys.argv = [str(script), *args.bench_args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from evoprune_tf.app.explain import explain_run

    for path in explain_run(args.run_id, per_class=args.per_class, model=args.model, plugins=args.plugin,
                            trust_plugins=args.trust_plugins):
        print(path)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from evoprune_tf.experiment.config import config_from_dict, merge, use_backend_for_dict
    from evoprune_tf.experiment.run import resume
    from evoprune_tf.experiment.trust import check_stored_modules
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


def _run(args: argparse.Namespace) -> int:
    from evoprune_tf.experiment.run import run

    config = load_run_config(args.config, overrides_from_args(args))
    if getattr(args, "dry_run", False):
        import json

        print(json.dumps(config.to_dict(), indent=2, default=str))
        return 0
    run(config)
    return 0


#: ``evoprune COMMAND`` -> its handler (each returns the exit status).
_COMMANDS = {
    "run": _run, "resume": _resume, "grid": _grid, "compare": _compare, "explain": _explain,
    "methods": _methods, "operators": _operators, "ui": _ui, "server": _server, "bench": _bench,
}


def _dispatch(args: argparse.Namespace) -> int:
    return _COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
