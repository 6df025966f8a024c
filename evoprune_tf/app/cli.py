"""The ``evoprune`` command line.

    evoprune run CONFIG.toml [overrides]    run one evolution (see --help for overrides)
    evoprune resume CHECKPOINT              continue a killed run in the same MLflow run
    evoprune ui [--port 5000]               MLflow UI over the project's store
    evoprune bench [...]                    fitness-evaluation benchmark
    evoprune explain RUN_ID                 explanation heat maps for a finished run
    evoprune operators                      list the registered operator names

Bad input ends with one line ``error: ...`` on stderr and exit status 2, before any
long computation starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

__all__ = ["main", "build_parser", "parse_operator", "overrides_from_args"]

EPILOG = """\
operator syntax: NAME or NAME:key=value,key=value (e.g. --mate uniform:indpb=0.3,
--mutate flip_bit:indpb=1/L, --select tournament:tournsize=3). DEAP's own tools
functions work by name too (--mate cxTwoPoint). `evoprune operators` lists the names.

environment: EVOPRUNE_ASSETS (the shared real assets; experiment scripts default to
it), MLFLOW_TRACKING_URI (default sqlite:///mlruns/mlflow.db), EVOPRUNE_CACHE_DIR
(feature cache, default ~/.cache/evoprune_tf/features), KERAS_BACKEND.
"""


def parse_operator(text: str) -> Any:
    """``"uniform:indpb=0.5"`` -> ``{"name": "uniform", "indpb": 0.5}``; a bare name stays a string."""
    if ":" not in text:
        return text
    name, _, options = text.partition(":")
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


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides (each replaces the config's value)")
    g.add_argument("--seed", type=int, help="run seed (drives Python, NumPy, Keras, weights, batches)")
    g.add_argument("--data", help="dataset: class folder, .npz, tfds:NAME or builtin:synthetic")
    g.add_argument("--image-size", type=int, help="image side in pixels (0 = backbone default)")
    g.add_argument("--max-per-class", type=int, help="at most this many images per class and split")
    g.add_argument("--skip-bad-images", action="store_true", default=None, help="skip unreadable images (counted)")
    g.add_argument("--backbone", help="keras.applications backbone, e.g. mobilenet_v2, resnet50")
    g.add_argument("--weights", help="'imagenet', a local weights file, or 'none'")
    g.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",")], help="hidden widths, e.g. 512,512")
    g.add_argument("--encoding", help="feature_selection | neuron_pruning | connection_pruning")
    g.add_argument("--algorithm", help="steady_state | ea_simple | mu_plus_lambda | nsga2 | nsga3")
    g.add_argument("--objectives", type=lambda s: s.split(","),
                   help="comma list of accuracy, loss, active_fraction, robustness")
    g.add_argument("--ood", help="OOD images for the robustness objective (folder, .npz, tfds:NAME)")
    g.add_argument("--evaluations", type=int, help="evaluation budget (steady_state, nsga2, nsga3)")
    g.add_argument("--generations", type=int, help="generations (ea_simple, mu_plus_lambda)")
    g.add_argument("--population", type=int, help="population size")
    g.add_argument("--epochs", type=int, help="head training epochs per evaluation")
    for alias in ("init", "select", "mate", "mutate", "survive"):
        g.add_argument(f"--{alias}", type=parse_operator, help=f"{alias} operator (see below)")
    g.add_argument("--seeds", type=int, help="retrains per head in the final report")
    g.add_argument("--experiment", help="MLflow experiment name")
    g.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The nested config overrides given on the command line."""
    table = {
        "seed": ("seed",), "data": ("data", "source"), "image_size": ("data", "image_size"),
        "max_per_class": ("data", "max_per_class"), "skip_bad_images": ("data", "skip_bad_images"),
        "backbone": ("backbone", "name"), "weights": ("backbone", "weights"), "hidden": ("head", "hidden"),
        "encoding": ("encoding", "name"), "algorithm": ("algorithm", "name"),
        "objectives": ("objectives", "names"), "ood": ("objectives", "ood"),
        "evaluations": ("algorithm", "evaluations"), "generations": ("algorithm", "generations"),
        "population": ("algorithm", "population"), "epochs": ("train", "epochs"),
        "init": ("operators", "init"), "select": ("operators", "select"), "mate": ("operators", "mate"),
        "mutate": ("operators", "mutate"), "survive": ("operators", "survive"), "seeds": ("report", "seeds"),
        "experiment": ("tracking", "experiment"),
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
    return out


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
    _add_run_options(p)
    p = sub.add_parser("resume", help="continue a killed run from its checkpoint, in the same MLflow run")
    p.add_argument("checkpoint", help="checkpoint file or folder, or an MLflow run id")
    p.add_argument("--evaluations", type=int, help="a new (larger) evaluation budget")
    p.add_argument("--generations", type=int, help="a new (larger) generation budget")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p = sub.add_parser("ui", help="open the MLflow UI over the project's store (127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    p = sub.add_parser("bench", help="fitness-evaluation benchmark (see benchmarks/fitness.py --help)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p = sub.add_parser("explain", help="explanation heat maps for a finished run")
    p.add_argument("run_id")
    p.add_argument("--per-class", type=int, default=2)
    sub.add_parser("operators", help="list registered operator names by kind")
    return parser


def _checkpoint_for(target: str) -> str:
    from pathlib import Path

    if Path(target).exists():
        return target
    candidate = Path("mlruns") / "checkpoints" / target / "checkpoint.pkl"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError(f"no checkpoint file, folder or run id {target!r}; expected a path or a run id under mlruns/checkpoints")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evoprune`` console script."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # hand every option to the benchmark's own parser
        argv = ["bench", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, ImportError, RuntimeError) as error:
        # RuntimeError: e.g. ImageNet weights that cannot be downloaded (the message names the file)
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "operators":
        import operators

        for kind, names in operators.available().items():
            print(f"{kind}: {', '.join(names)}")
        return 0
    if args.command == "ui":
        import subprocess

        from evoprune_tf.tracking import resolve_tracking_uri

        uri = resolve_tracking_uri(args.uri)
        print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port} (Ctrl-C to stop)")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
        if uri.startswith("sqlite:///"):
            from pathlib import Path

            cmd += ["--default-artifact-root", str(Path(uri[len("sqlite:///"):]).parent / "artifacts")]
        return subprocess.call(cmd, env=env)
    if args.command == "bench":
        import runpy
        from pathlib import Path

        script = Path(__file__).resolve().parents[2] / "benchmarks" / "fitness.py"
        if not script.is_file():
            raise FileNotFoundError(f"benchmark script {script} not found; run it from a source checkout")
        sys.argv = [str(script), *args.bench_args]
        runpy.run_path(str(script), run_name="__main__")
        return 0
    if args.command == "explain":
        from evoprune_tf.app.explain import explain_run

        for path in explain_run(args.run_id, per_class=args.per_class):
            print(path)
        return 0
    from evoprune_tf.app.config import load_config, merge
    from evoprune_tf.app.run import resume, run

    if args.command == "resume":
        from evoprune_tf.search.checkpoint import load_checkpoint
        from evoprune_tf.app.config import config_from_dict

        path = _checkpoint_for(args.checkpoint)
        checkpoint = load_checkpoint(path)
        budget = {k: v for k, v in (("evaluations", args.evaluations), ("generations", args.generations)) if v}
        extra = {"algorithm": budget} if budget else {}
        if args.no_progress:
            extra["progress"] = False
        config = config_from_dict(merge(checkpoint.config, extra), source=f"config of {path}")
        resume(path, config=config)
        return 0
    config = load_config(args.config, overrides_from_args(args))
    run(config)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
