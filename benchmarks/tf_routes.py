"""TensorFlow routes of the Keras engine: per-head reused model vs population-stacked heads (issue 9).

Run from a source checkout: ``python benchmarks/tf_routes.py`` (about 4-5 minutes on 2 cores).

Workload: the one of ``benchmarks/fitness.py`` (1280 planted Gaussian features, 2000 train
/ 500 validation samples, 3 classes, head 1280 -> 512 -> 3, SGD lr 1e-3 momentum 0.9
Nesterov, batch 32, 5 epochs, no early stopping), ``--genomes`` genomes (default 12) of
densities evenly spread over 0.1..1.0, for feature selection and neuron pruning.

Routes (all on the TensorFlow backend except the reference):

* ``per_head``: `keras_engine._StatefulRoute`, one reused compiled model per compact shape,
  heads one after another (the route before this benchmark);
* ``stacked``: `evoprune_tf.train.tf_stacked`, a group's heads as stacked kernels
  ``(P, in, out)`` in one XLA-compiled loop (the default route);
* ``stacked_nojit``: the same without XLA (``tf_jit_compile = False``);
* ``numpy``: the NumPy engine (``engine="numpy"``), the reference.

Measured per encoding and route, at the engine's default ``group_size`` (1 on TensorFlow)
unless said otherwise:

(a) the spread population, seconds per evaluation: *cold* (a fresh evaluator: every
    compact shape traced / compiled) and *warm* (the same evaluator, fitness cache
    cleared: what later generations of a run pay); and the largest fitness difference
    to the NumPy engine;
(b) a same-shape population (``--genomes`` genomes all at density 0.3: one compact shape),
    warm, and for the stacked routes also in groups of ``--group-size`` heads (what
    stacking itself buys);
(c) the all-ones genome and a 20% genome trained alone (best of 3 after a warm-up):
    their ratio is "cost follows sparsity" (target >= 2.5x).

Output: a markdown table on stdout and a JSON file (default ``benchmarks/results/tf_routes.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fitness import density_genome, planted_features, spread_genomes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tf_routes.json"
ENCODINGS = ("feature_selection", "neuron_pruning")
ROUTES = ("per_head", "stacked", "stacked_nojit", "numpy")


def build_parser() -> argparse.ArgumentParser:
    """The command line.

    Returns:
        The parser.
    """
    p = argparse.ArgumentParser(
        prog="benchmarks/tf_routes.py",
        description="TensorFlow routes of the Keras engine (per-head reused model, population-stacked with and "
        "without XLA) vs the NumPy engine: seconds per evaluation, same-shape stacking, 20%% vs all-ones alone.",
        epilog="Workload: 1280 features, 2000 train / 500 val, 3 classes, hidden 512, 5 epochs, batch 32.",
    )
    p.add_argument("--genomes", type=int, default=12, help="genomes per population (default 12)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per evaluation (default 5)")
    p.add_argument("--group-size", type=int, default=16,
                   help="group_size of the stacked same-shape measurement (default 16)")
    p.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS))
    p.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    p.add_argument("--repeats", type=int, default=3, help="best of this many timings for the alone genomes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    return p


def timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def evaluator(route: str, enc: Any, data: Any, args: argparse.Namespace, *, group_size: int | None = None) -> Any:
    """A fresh `PopulationEvaluator` on one route (bucket 64, as the search default)."""
    from evoprune_tf.evaluation import PopulationEvaluator
    from evoprune_tf.train import TrainConfig

    if route == "numpy":
        cfg = TrainConfig(epochs=args.epochs, batch_size=32, engine="numpy")
    else:  # group_size 0: the engine's default on TensorFlow (1)
        cfg = TrainConfig(epochs=args.epochs, batch_size=32, bucket=64, group_size=group_size or 0)
    ev = PopulationEvaluator(enc, data, cfg, seed=args.seed)
    if route != "numpy":
        ev.trainer.tf_route = "per_head" if route == "per_head" else "stacked"
        ev.trainer.tf_jit_compile = route == "stacked"
    return ev


def bench_encoding(name: str, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    from evoprune_tf.encodings import HeadSpec, make_encoding

    enc = make_encoding(name, HeadSpec(1280, 3, (512,)))
    genomes = spread_genomes(enc.genome_length, args.genomes, args.seed)
    same = [density_genome(enc.genome_length, 0.3, args.seed + 10 + i) for i in range(args.genomes)]
    ones, g20 = np.ones(enc.genome_length, np.int8), density_genome(enc.genome_length, 0.2, args.seed + 1)
    n = len(genomes)
    out: dict[str, Any] = {"genomes": n, "mean_density": round(float(np.mean([g.mean() for g in genomes])), 3)}
    reference = None
    if "numpy" in args.routes:
        ev = evaluator("numpy", enc, data, args)
        ev.evaluate_population(genomes)
        reference = [ev.lookup(g) for g in genomes]
    for route in args.routes:
        r: dict[str, Any] = {}
        ev = evaluator(route, enc, data, args)
        r["cold_s_per_eval"] = timed(lambda: ev.evaluate_population(genomes)) / n
        found = [ev.lookup(g) for g in genomes]
        if reference is not None:
            r["max_loss_diff_vs_numpy"] = float(max(abs(a.loss - b.loss) for a, b in zip(reference, found)))
            r["max_accuracy_diff_vs_numpy"] = float(max(abs(a.accuracy - b.accuracy) for a, b in zip(reference, found)))
        ev.cache.clear()
        r["warm_s_per_eval"] = timed(lambda: ev.evaluate_population(genomes)) / n
        if route != "numpy":
            r["groups"] = len({ev.trainer.plan(enc.decode(g)).key for g in genomes})
        ev = evaluator(route, enc, data, args)
        ev.evaluate_population(same)
        ev.cache.clear()
        r["same_shape_warm_s_per_eval"] = timed(lambda: ev.evaluate_population(same)) / n
        if route.startswith("stacked"):  # the same heads stacked in groups of --group-size: what stacking buys
            ev = evaluator(route, enc, data, args, group_size=args.group_size)
            ev.evaluate_population(same)
            ev.cache.clear()
            r["same_shape_stacked_warm_s_per_eval"] = timed(lambda: ev.evaluate_population(same)) / n

        def best_of(genome: np.ndarray) -> float:
            ev.evaluate(genome)  # warm-up: traces / compiles the shape
            best = np.inf
            for _ in range(args.repeats):
                ev.cache.clear()
                best = min(best, timed(lambda: ev.evaluate(genome)))
            return best

        ev = evaluator(route, enc, data, args)
        r["alone_all_ones_s"], r["alone_20pct_s"] = best_of(ones), best_of(g20)
        r["sparsity_speedup"] = r["alone_all_ones_s"] / r["alone_20pct_s"]
        r = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
        out[route] = r
        print(f"[{name}] {route}: {r}", flush=True)
    return out


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table."""
    lines = ["| encoding | route | s/eval cold | s/eval warm | same shape warm (stacked groups) | all-ones alone "
             "| 20% alone | 20% speed-up | max loss diff vs numpy |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, per in results["encodings"].items():
        for route in ROUTES:
            r = per.get(route)
            if r is None:
                continue
            diff = r.get("max_loss_diff_vs_numpy")
            g1 = r.get("same_shape_stacked_warm_s_per_eval")
            same_text = f"{r['same_shape_warm_s_per_eval']:.3f}" + ("" if g1 is None else f" ({g1:.3f})")
            lines.append(f"| {name} | {route} | {r['cold_s_per_eval']:.3f} | {r['warm_s_per_eval']:.3f} | "
                         f"{same_text} | {r['alone_all_ones_s']:.3f} | "
                         f"{r['alone_20pct_s']:.3f} | {r['sparsity_speedup']:.2f}x | "
                         f"{'' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    for field in ("genomes", "epochs", "group_size", "repeats"):
        if getattr(args, field) < 1:
            raise SystemExit(f"error: --{field.replace('_', '-')}={getattr(args, field)}; expected a positive integer")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"error: KERAS_BACKEND={keras.backend.backend()!r}; expected 'tensorflow' for this benchmark")
    began = time.perf_counter()
    load_start = os.getloadavg()
    data = planted_features(1280, 2000, 500, 3, args.seed)
    results: dict[str, Any] = {"encodings": {}}
    for name in args.encodings:
        results["encodings"][name] = bench_encoding(name, data, args)
    import tensorflow as tf

    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__,
                          "keras": keras.__version__, "load_average_start": [round(x, 2) for x in load_start],
                          "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    results["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["seconds"] = round(time.perf_counter() - began, 1)
    print()
    print(markdown(results))
    print(f"\nload average {results['machine']['load_average_start']} -> {results['machine']['load_average_end']}, "
          f"{results['seconds']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
