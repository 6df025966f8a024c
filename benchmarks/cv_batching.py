"""Cross-validated fitness: the per-partition loop vs every partition's heads in one trainer call.

Run from a source checkout: ``python benchmarks/cv_batching.py`` (``--help`` for the options).

Workload (RPS-like): planted Gaussian features, 1280 wide, 2016 train + 504 validation
rows, 3 balanced classes, a class signal in 64 columns; head 1280 -> 512 (ReLU) -> 3,
SGD-Nesterov, batch 32, 10 epochs, no early stopping; 10 feature-selection genomes with
densities evenly spread over 0.1..1.0; fitness = stratified 5-fold CV of train+val
(`ResampledEvaluator(method="cv", folds=5)`): every genome is trained 5 times.

For each engine (a clean subprocess each, ``KERAS_BACKEND`` set for the Keras ones):

* ``loop``: ``ResampledEvaluator(batched=False)``, one `PopulationEvaluator` per fold,
  each training the genomes as its own population batch;
* ``batched``: ``ResampledEvaluator(batched=True)``, the 10 x 5 heads in one call of a
  trainer over train+val, each head on its own fold's rows.

The evaluators are built before the clock starts. Keras rows are measured cold (the
first generation: JAX compiles every group program, TensorFlow traces its step) and
warm (a second generation of genomes with the same densities on the same evaluator:
every later generation of a search). The NumPy engine has nothing to compile (warm
only); it runs at its search default ``group_size`` 1 and with ``--numpy-group`` heads
per group. Each run also checks that both paths give the same
fitness (accuracy equal, largest loss difference reported).

Output: a markdown table on stdout and a JSON file (default
``benchmarks/results/cv_batching.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cv_batching.json"
ENGINES = ("numpy", "jax", "tensorflow")


def build_parser() -> argparse.ArgumentParser:
    """The command line.

    Returns:
        The parser.
    """
    p = argparse.ArgumentParser(prog="benchmarks/cv_batching.py",
                                description="Seconds per cross-validated evaluation: per-fold loop vs one batched call.")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=["numpy", "jax"],
                   help="numpy engine, Keras on JAX, Keras on TensorFlow (default: numpy jax)")
    p.add_argument("--genomes", type=int, default=10, help="genomes (default 10)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per head (default 10)")
    p.add_argument("--folds", type=int, default=5, help="k of k-fold CV (default 5)")
    p.add_argument("--n-train", type=int, default=2016)
    p.add_argument("--n-val", type=int, default=504)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--numpy-group", type=int, default=16, help="group_size of the grouped NumPy run (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    p.add_argument("--_worker", metavar="ARGS_JSON", help=argparse.SUPPRESS)
    return p


def planted(n_train: int, n_val: int, seed: int, n_features: int = 1280, n_classes: int = 3, n_informative: int = 64):
    """Balanced planted features (the class in ``n_informative`` columns, noise elsewhere).

    Args:
        n_train, n_val: rows of the train and validation splits.
        seed: drives the draw.
        n_features, n_classes, n_informative: the shape of the problem.

    Returns:
        A `FeatureSplits` (test: 64 rows, unused here).
    """
    from evoprune_tf.features.splits import FeatureSplits

    rng = np.random.default_rng(seed)
    informative = rng.choice(n_features, n_informative, replace=False)
    centers = rng.normal(0.0, 1.0, (n_classes, n_informative)).astype(np.float32)

    def split(n: int):
        y = np.arange(n) % n_classes  # balanced: 5 folds of 2520 rows are equal in size
        x = rng.normal(0.0, 3.0, (n, n_features)).astype(np.float32)
        x[:, informative] = centers[y] + rng.normal(0.0, 1.0, (n, n_informative)).astype(np.float32)
        return x, y.astype(np.int64)

    parts = [split(n) for n in (n_train, n_val, 64)]
    return FeatureSplits(*parts[0], *parts[1], *parts[2], class_names=tuple(f"c{i}" for i in range(n_classes)),
                         name="planted")


def worker(options: dict[str, Any]) -> dict[str, Any]:
    """Time the loop and the batched path for one engine (in this process).

    Args:
        options: the parsed arguments as a dict, plus ``engine``.

    Returns:
        The timings and the equality check.
    """
    from evoprune_tf.encodings import FeatureSelection, HeadSpec
    from evoprune_tf.resampling import ResampledEvaluator
    from evoprune_tf.train import TrainConfig

    engine = options["engine"]
    data = planted(options["n_train"], options["n_val"], options["seed"])
    enc = FeatureSelection(HeadSpec(data.n_features, data.n_classes, (options["hidden"],)))
    rng = np.random.default_rng(options["seed"])
    densities = np.linspace(0.1, 1.0, options["genomes"])
    # cold: the first generation; warm: a second one (same densities, other genes) on the same evaluator
    generations = {run: [(rng.random(data.n_features) < d).astype(np.int8) for d in densities]
                   for run in ("cold", "warm")}
    for genomes in generations.values():
        genomes[-1][:] = 1
    base = dict(epochs=options["epochs"], batch_size=32, learning_rate=1e-3)
    if engine == "numpy":
        configs = {"group 1": TrainConfig(**base, engine="numpy"),
                   f"group {options['numpy_group']}": TrainConfig(**base, engine="numpy", bucket=64,
                                                                  group_size=options["numpy_group"])}
        runs = ["warm"]  # nothing to compile: one generation is enough
    else:
        configs = {"default": TrainConfig(**base)}
        runs = ["cold", "warm"]
    rows = []
    for label, cfg in configs.items():
        timed: dict[tuple[str, str], tuple[float, list]] = {}
        for batched in (False, True):
            path = "batched" if batched else "loop"
            ev = ResampledEvaluator(enc, data, cfg, method="cv", folds=options["folds"], seed=options["seed"],
                                    batched=batched)
            _ = ev.pooled_trainer if batched else ev.members  # construction is not an evaluation
            for run in runs:
                began = time.perf_counter()
                records = ev.measure(generations[run])
                timed[run, path] = (time.perf_counter() - began, [(e.accuracy, e.loss) for e in records])
        for run in runs:
            for path in ("loop", "batched"):
                seconds = timed[run, path][0]
                rows.append({"engine": engine, "config": label, "run": run, "path": path, "seconds": seconds,
                             "seconds_per_evaluation": seconds / options["genomes"]})
            loop, batched = np.asarray(timed[run, "loop"][1]), np.asarray(timed[run, "batched"][1])
            rows[-1]["accuracy_equal"] = bool(np.array_equal(loop[:, 0], batched[:, 0]))
            rows[-1]["max_loss_difference"] = float(np.abs(loop[:, 1] - batched[:, 1]).max())
    return {"rows": rows}


def run_engine(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run `worker` for one engine in a clean subprocess.

    Args:
        engine: ``numpy``, ``jax`` or ``tensorflow``.
        args: the parsed arguments.

    Returns:
        The worker's result.
    """
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "_worker"}
    options["engine"] = engine
    env = {**os.environ, "KERAS_BACKEND": "jax" if engine in ("numpy", "jax") else "tensorflow",
           "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, __file__, "--_worker", json.dumps(options)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"the {engine} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a markdown table.

    Args:
        rows: one per (engine, config, run, path).

    Returns:
        The table, with the batched path's speed-up over the loop.
    """
    lines = ["| engine | config | run | loop s/eval | batched s/eval | speed-up | same fitness (max loss diff) |",
             "|---|---|---|---|---|---|---|"]
    for loop, batched in zip(rows[0::2], rows[1::2]):
        same = ""
        if "accuracy_equal" in batched:
            same = f"{'yes' if batched['accuracy_equal'] else 'NO'} ({batched['max_loss_difference']:.1e})"
        lines.append(f"| {loop['engine']} | {loop['config']} | {loop['run']} | {loop['seconds_per_evaluation']:.2f} | "
                     f"{batched['seconds_per_evaluation']:.2f} | "
                     f"{loop['seconds'] / batched['seconds']:.2f}x | {same} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    if args._worker:
        print("RESULT " + json.dumps(worker(json.loads(args._worker))))
        return 0
    for name in ("genomes", "epochs", "n_train", "n_val", "hidden", "numpy_group"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')}={getattr(args, name)}; expected a positive integer")
    rows = []
    for engine in args.engines:
        rows += run_engine(engine, args)["rows"]
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    workload = {k: getattr(args, k) for k in ("genomes", "epochs", "folds", "n_train", "n_val", "hidden", "seed")}
    args.out.write_text(json.dumps({"workload": workload, "machine": {"cpus": os.cpu_count(),
                                    "platform": platform.platform(), "load": os.getloadavg()}, "rows": rows},
                                   indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
