"""Fitness-evaluation benchmark: naive Keras per individual vs our evaluator (issue 4).

Run from a source checkout (``python benchmarks/fitness.py`` or ``evoprune bench``).

Workload (fixed, so numbers compare across machines and commits):

* features: 1280 wide (MobileNetV2's pooled width), 2000 train / 500 validation
  samples, 3 classes. By default random Gaussian features with a planted class signal
  in 64 of the columns (seeded); ``--features rps`` uses the shared Rock-Paper-Scissors
  images through MobileNetV2 with the shared ImageNet weights at 96 px
  (``$EVOPRUNE_ASSETS``; first 2000 train / 500 validation samples, cached on disk).
* head: 1280 -> 512 (ReLU, no bias) -> 3 (softmax), SGD lr 1e-3, momentum 0.9,
  Nesterov, batch 32, a fixed budget of 5 epochs (``--epochs``), no early stopping.
* genomes: 30 (``--genomes``) per encoding, densities evenly spread over 0.1..1.0 (the
  last one is the unpruned all-ones genome), for ``feature_selection`` and
  ``neuron_pruning``.

Measured in one run, per encoding:

(a) naive baseline: a fresh Keras model per individual (``build_masked_head`` + masks +
    ``compile(SGD nesterov)`` + ``fit`` + ``evaluate``, on the current Keras backend),
    on an evenly spread subset of the genomes (``--naive-genomes``, default 5), after
    one untimed warm-up model; reported per evaluation. Its cost does not depend on
    the density (it multiplies by zeros).
(b) our evaluator, one individual at a time (``PopulationEvaluator.evaluate``, NumPy
    engine, the search defaults);
(c) our evaluator over the whole population at once (``evaluate_population``): NumPy
    with group_size 1 (the search default), NumPy with group_size 30 / bucket 64, and,
    when JAX is importable, the JAX engine with bucket 64 and group_size 1 or 30
    (cold: a new evaluator, including compilation; warm: the same evaluator with its
    fitness cache emptied, as in every later generation of a search, where compiled
    shapes are kept: by the trainer on TensorFlow, for the process on JAX);
(d) the machine's float32 GEMM rate, measured in the same run (at its start and at its
    end; the best of both counts, since the machine is shared): 2-D matmuls of the
    head's shape (32x1280 @ 1280x512) and 2048^3, with NumPy at the BLAS thread count
    used for the evaluator and at the library default, and with XLA (jitted
    ``jnp.dot``); the best 2048^3 rate is the reference (``--quick``: 1024^3, an
    eighth of the work);
(e) the all-ones genome and a 20%-density genome trained alone (best of 5 after a
    warm-up), NumPy engine and JAX engine (bucket 64): their ratio is the "cost follows
    sparsity" speed-up (target >= 2.5x);
(f) peak RSS growth over 500 evaluations of distinct genomes (``--rss-evals``), after a
    warm-up that trains every padded width once: the NumPy engine and the Keras engine on
    each backend of ``--rss-backends`` (TensorFlow and JAX; ``--quick``: TensorFlow), each
    in a clean subprocess with ``KERAS_BACKEND`` set, ``--rss-epochs`` epochs per
    evaluation (default 1 to keep it short); the RSS, peak RSS and live compiled programs
    every 50 evaluations go to the JSON, one markdown line per engine and backend;
(g) with ``--backends``: the naive Keras head fit and MobileNetV2 feature extraction
    (256 images at 96 px, ``weights=None``) on TensorFlow vs JAX (subprocesses with
    ``KERAS_BACKEND`` set).

Effective GFLOP/s = `training_flops` of the *active* head (forward, weight and input
gradients of the kept units only) / wall time, also as a fraction of the measured GEMM
rate (the best large-GEMM rate of the run, a conservative reference).

BLAS threads: our NumPy engine runs one small GEMM after another (32-row batches); with
OpenBLAS' default thread count on a loaded 2-core machine those GEMMs can become ~100x
slower (threads wait on each other), so the benchmark limits NumPy's BLAS to
``--blas-threads`` (default 1; 0 keeps the library default) with threadpoolctl and
also records one all-ones evaluation at the default thread count. Keras/TensorFlow and
XLA keep their own thread pools.

Output: a table on stdout (markdown, ready for the README) and a JSON file (default
``benchmarks/results/fitness.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fitness.json"
ENCODINGS = ("feature_selection", "neuron_pruning")
#: Keras backends the memory test can run the Keras engine on.
RSS_BACKENDS = ("tensorflow", "jax")
#: Today's fastest engine before it was removed (the hand-derived JAX engine, bucket 64, group 1,
#: warm), measured with this workload on this 2-core machine (load average ~4.5) in evaluations/s.
HAND_JAX_EVALS_PER_SECOND = {"feature_selection": 30 / 14.90, "neuron_pruning": 30 / 12.13}
WEIGHTS_FILE = "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


# --------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/fitness.py",
        description="Fitness-evaluation benchmark: naive Keras model per individual vs our evaluator "
        "(one at a time, whole population, NumPy and JAX engines), GEMM rate, sparsity speed-up, "
        "memory over 500 evaluations, Keras backends.",
        epilog="Workload: 1280 features, 2000 train / 500 val, 3 classes, head 512, batch 32, "
        "30 genomes with densities 0.1..1.0. See the module docstring for details.",
    )
    p.add_argument("--features", choices=("random", "rps"), default="random",
                   help="random planted features (default) or the shared RPS MobileNetV2 features ($EVOPRUNE_ASSETS)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per evaluation (default 5; --quick 1)")
    p.add_argument("--genomes", type=int, default=None, help="genomes per encoding (default 30; --quick 4)")
    p.add_argument("--naive-genomes", type=int, default=None,
                   help="genomes timed with the naive Keras baseline (default 5; --quick 1)")
    p.add_argument("--rss-evals", type=int, default=None, help="evaluations of the memory test (default 500)")
    p.add_argument("--rss-epochs", type=int, default=1, help="epochs per evaluation in the memory test (default 1)")
    p.add_argument("--rss-backends", nargs="*", choices=RSS_BACKENDS, default=None,
                   help="Keras backends of the Keras-engine memory test, each in its own subprocess with "
                   "KERAS_BACKEND set (default: tensorflow and jax; --quick: tensorflow; none: NumPy engine only)")
    p.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS))
    p.add_argument("--blas-threads", type=int, default=1,
                   help="NumPy BLAS threads for our evaluator (default 1; 0 = library default)")
    p.add_argument("--bucket", type=int, default=64, help="bucket of the grouped runs (default 64)")
    p.add_argument("--group-size", type=int, default=30, help="group_size of the grouped runs (default 30)")
    p.add_argument("--no-jax", action="store_true", help="skip the JAX engine")
    p.add_argument("--no-naive", action="store_true", help="skip the naive Keras baseline")
    p.add_argument("--backends", action="store_true",
                   help="also time the naive head fit and MobileNetV2 extraction on TensorFlow vs JAX (slower)")
    p.add_argument("--rss-only", action="store_true",
                   help="run only the memory test (f): no timing tables, no GEMM rates")
    p.add_argument("--quick", action="store_true",
                   help="a small smoke run (400/100 samples, 1 epoch, 4 genomes, 40 memory evaluations, "
                   "short GEMM timing on 1024^3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    p.add_argument("--_worker", nargs=2, metavar=("KIND", "ARGS_JSON"), help=argparse.SUPPRESS)
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    quick = args.quick
    args.n_train, args.n_val = (400, 100) if quick else (2000, 500)
    defaults = {"epochs": (1, 5), "genomes": (4, 30), "naive_genomes": (1, 5), "rss_evals": (40, 500)}
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.n_features, args.n_classes, args.hidden, args.batch_size = 1280, 3, 512, 32
    if args.naive_genomes < 0:
        raise SystemExit(f"error: --naive-genomes={args.naive_genomes}; expected 0 (skip) or more")
    if args.rss_backends is None:  # JAX's warm-up compiles ~20 programs: too slow for the smoke run
        args.rss_backends = ["tensorflow"] if quick else list(RSS_BACKENDS)
    for name in ("epochs", "genomes", "rss_evals", "rss_epochs", "bucket", "group_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')}={getattr(args, name)}; expected a positive integer")
    return args


# --------------------------------------------------------------------------- workload


def planted_features(n_features: int, n_train: int, n_val: int, n_classes: int, seed: int):
    """Gaussian features; 64 columns carry class-dependent means."""
    try:
        from evoprune_tf.features.splits import FeatureSplits
    except ImportError:  # an older checkout on PYTHONPATH (`engine_ab.py --old`)
        from evoprune_tf.splits import FeatureSplits

    rng = np.random.default_rng(seed)
    informative = rng.choice(n_features, 64, replace=False)
    centers = rng.normal(0.0, 1.0, size=(n_classes, 64)).astype(np.float32)

    def split(n: int):
        y = rng.integers(0, n_classes, size=n)
        x = rng.normal(0.0, 1.0, size=(n, n_features)).astype(np.float32)
        x[:, informative] += centers[y]
        return x, y.astype(np.int64)

    (xt, yt), (xv, yv) = split(n_train), split(n_val)
    return FeatureSplits(xt, yt, xv, yv, xv[:0], yv[:0], tuple(f"c{i}" for i in range(n_classes)), name="planted")


def rps_features(n_train: int, n_val: int):
    """The shared RPS images through MobileNetV2 (shared ImageNet weights) at 96 px."""
    from evoprune_tf.features.extract import load_features
    from evoprune_tf.features.splits import FeatureSplits

    root = os.environ.get("EVOPRUNE_ASSETS")
    if not root or not (Path(root) / "MANIFEST.txt").is_file():
        raise SystemExit("error: --features rps needs EVOPRUNE_ASSETS pointing at the shared assets (MANIFEST.txt)")
    weights = Path(root) / WEIGHTS_FILE
    f = load_features(Path(root) / "datasets" / "rps_28px", backbone="mobilenet_v2", weights=str(weights),
                      image_size=96, val_fraction=0.2, seed=0, progress=False)
    if len(f.y_train) < n_train or len(f.y_val) < n_val:
        raise SystemExit(f"error: RPS features have {len(f.y_train)} train / {len(f.y_val)} val samples; "
                         f"need {n_train} / {n_val}")
    return FeatureSplits(f.x_train[:n_train], f.y_train[:n_train], f.x_val[:n_val], f.y_val[:n_val],
                         f.x_test[:0], f.y_test[:0], f.class_names, name="rps_mobilenet_v2_96px")


def spread_genomes(length: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` genomes with exactly round(d * length) ones, d evenly spread over 0.1..1.0."""
    rng = np.random.default_rng(seed)
    genomes = []
    for density in np.linspace(0.1, 1.0, count):
        g = np.zeros(length, np.int8)
        g[rng.choice(length, max(1, int(round(density * length))), replace=False)] = 1
        genomes.append(g)
    return genomes


def density_genome(length: int, density: float, seed: int) -> np.ndarray:
    g = np.zeros(length, np.int8)
    g[np.random.default_rng(seed).choice(length, int(round(density * length)), replace=False)] = 1
    return g


# --------------------------------------------------------------------------- measuring


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit NumPy's BLAS threads (threadpoolctl); None or 0 leaves them alone."""
    if not n:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn / mlflow
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def default_blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return None
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def gemm_gflops(m: int, k: int, n: int, *, min_seconds: float = 0.25, rounds: int = 5) -> float:
    """Best float32 GEMM rate of ``(m,k) @ (k,n)`` in GFLOP/s (best of `rounds`)."""
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    a @ b
    began = time.perf_counter()
    a @ b
    once = max(time.perf_counter() - began, 1e-6)
    reps = max(1, int(min_seconds / once))
    best = np.inf
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - began) / reps)
    return 2.0 * m * k * n / best / 1e9


def rss_mb() -> float:
    """Current resident set size in MB (Linux; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size in MB of this process image.

    Linux: ``VmHWM`` (``ru_maxrss`` would carry the parent's peak over fork + exec).
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def entry(seconds: float, evaluations: int, flops: float, ref_gflops: float, naive_spe: float | None,
          **extra: Any) -> dict:
    spe = seconds / evaluations
    gflops = flops / seconds / 1e9
    out = {
        "seconds": round(seconds, 4),
        "evaluations": evaluations,
        "seconds_per_eval": round(spe, 5),
        "evals_per_second": round(evaluations / seconds, 3),
        "gflops": round(gflops, 2),
        "gemm_fraction": round(gflops / ref_gflops, 3),
        "speedup_vs_naive": None if naive_spe is None else round(naive_spe / spe, 2),
    }
    out.update(extra)
    return out


# --------------------------------------------------------------------------- naive Keras


def naive_evaluate(encoding, data, genome: np.ndarray, epochs: int, batch_size: int, seed: int) -> float:
    """The reference way: a fresh masked Keras model, compiled and fitted, per individual."""
    import keras

    from evoprune_tf.nn.layers import build_masked_head

    spec = encoding.spec
    model = build_masked_head(spec.n_features, spec.n_classes, spec.hidden, use_bias=spec.use_bias,
                              kernel_masks=encoding.kernel_masks(genome), seed=seed)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    _, accuracy = model.evaluate(data.x_val, data.y_val, batch_size=256, verbose=0)
    return float(accuracy)


def bench_naive(encoding, data, genomes, args) -> dict:
    import keras

    warm = (data.x_train[:256], data.y_train[:256])
    from evoprune_tf.features.splits import FeatureSplits

    small = FeatureSplits(*warm, data.x_val[:64], data.y_val[:64], data.x_val[:0], data.y_val[:0], data.class_names)
    naive_evaluate(encoding, small, genomes[-1], 1, args.batch_size, args.seed)  # imports, first-call set-up
    rss_before = rss_mb()
    times = [timed(lambda g=g: naive_evaluate(encoding, data, g, args.epochs, args.batch_size, args.seed))
             for g in genomes]
    return {
        "backend": keras.backend.backend(),
        "genomes": len(genomes),
        "densities": [round(float(np.mean(g)), 3) for g in genomes],
        "seconds_each": [round(t, 3) for t in times],
        "seconds_per_eval": float(np.mean(times)),
        "rss_growth_mb_per_model": round((rss_mb() - rss_before) / len(genomes), 1),
    }


def bench_reused(encoding, data, genomes, args) -> float:
    """The strongest plain-Keras baseline: one compiled model reused through ``set_mask``.

    Per genome: assign the masks, reset the weights to the initial ones and the
    optimizer variables to zeros, ``fit``, ``evaluate``. Returns seconds per evaluation
    (after one untimed warm-up genome).
    """
    import keras

    from evoprune_tf.nn.layers import build_masked_head, set_head_masks

    spec = encoding.spec
    model = build_masked_head(spec.n_features, spec.n_classes, spec.hidden, use_bias=spec.use_bias, seed=args.seed)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    initial = model.get_weights()
    model.optimizer.build(model.trainable_variables)
    opt_initial = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]

    def evaluate(genome: np.ndarray) -> float:
        model.set_weights(initial)
        set_head_masks(model, encoding.kernel_masks(genome))
        for var, value in zip(model.optimizer.variables, opt_initial):
            var.assign(value)
        model.fit(data.x_train, data.y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0)
        return float(model.evaluate(data.x_val, data.y_val, batch_size=256, verbose=0)[1])

    evaluate(genomes[-1])
    times = [timed(lambda g=g: evaluate(g)) for g in genomes]
    return float(np.mean(times))


def worker_keras(p: dict) -> dict:
    """The Keras engine on this process' backend: whole population (cold, then warm), one at a time, alone."""
    from evoprune_tf.encodings import HeadSpec, make_encoding
    from evoprune_tf.evaluation import PopulationEvaluator
    from evoprune_tf.train import TrainConfig

    data = load_saved(p["features"])
    enc = make_encoding(p["encoding"], HeadSpec(data.n_features, data.n_classes, (p["hidden"],)))
    genomes = spread_genomes(enc.genome_length, p["genomes"], p["seed"])
    cfg = TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], bucket=p["bucket"])

    def new() -> PopulationEvaluator:
        return PopulationEvaluator(enc, data, cfg, seed=p["seed"])

    ev = new()
    cold = timed(lambda: ev.evaluate_population(genomes))
    ev.cache.clear()  # a later generation: the same evaluator, shapes compiled, fitness cache empty
    warm = timed(lambda: ev.evaluate_population(genomes))
    fitness = [[e.accuracy, e.loss] for e in (ev.lookup(g) for g in genomes)]
    ev.cache.clear()
    one = timed(lambda: [ev.evaluate(g) for g in genomes])
    ones, g20 = genomes[-1], density_genome(enc.genome_length, 0.2, p["seed"] + 1)

    def best_of(genome: np.ndarray, repeats: int = 5) -> float:
        ev.evaluate(genome)
        best = np.inf
        for _ in range(repeats):
            ev.cache.clear()
            best = min(best, timed(lambda: ev.evaluate(genome)))
        return best

    return {"population_seconds": warm, "cold_seconds": cold, "one_at_a_time_seconds": one,
            "alone": [best_of(ones), best_of(g20)], "fitness": fitness}


# --------------------------------------------------------------------------- our evaluator


def bench_encoding(name: str, data, args, ref_gflops: float, jax_ok: bool, default_threads: int | None) -> dict:
    from evoprune_tf.encodings import HeadSpec, make_encoding
    from evoprune_tf.evaluation import PopulationEvaluator
    import keras

    from evoprune_tf.train import TrainConfig, training_flops

    spec = HeadSpec(args.n_features, args.n_classes, (args.hidden,))
    enc = make_encoding(name, spec)
    genomes = spread_genomes(enc.genome_length, args.genomes, args.seed)
    n_train = len(data.y_train)
    flops = [training_flops(enc.decode(g), n_train, args.epochs) for g in genomes]
    total_flops = float(sum(flops))
    out: dict[str, Any] = {
        "genome_length": enc.genome_length,
        "mean_density": round(float(np.mean([g.mean() for g in genomes])), 4),
        "population_gflop": round(total_flops / 1e9, 3),
    }
    print(f"[{name}] {len(genomes)} genomes, mean density {out['mean_density']:.2f}", flush=True)

    def config(**kw: Any) -> TrainConfig:
        return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, **kw)

    def new(cfg: TrainConfig) -> PopulationEvaluator:
        return PopulationEvaluator(enc, data, cfg, seed=args.seed)

    g, b = args.group_size, args.bucket
    backend = keras.backend.backend()
    variants = [("numpy_group1", config(engine="numpy")),
                (f"numpy_group{g}_bucket{b}", config(bucket=b, group_size=g, engine="numpy")),
                (f"keras_{backend}", config(bucket=b))]
    alone_configs = {"numpy": config(engine="numpy"), f"keras_{backend}": config(bucket=b)}
    ones, g20 = genomes[-1], density_genome(enc.genome_length, 0.2, args.seed + 1)
    f_ones = training_flops(enc.decode(ones), n_train, args.epochs)
    f_20 = training_flops(enc.decode(g20), n_train, args.epochs)

    with blas_threads(args.blas_threads):
        ev = new(config(engine="numpy"))
        t_one = timed(lambda: [ev.evaluate(x) for x in genomes])
        reference = [ev.lookup(x) for x in genomes]
        print(f"  one at a time (numpy): {t_one:.2f} s", flush=True)
        ev = new(config(bucket=b))
        ev.evaluate_population(genomes)  # compile every shape once (as in later generations)
        ev.cache.clear()
        t_one_keras = timed(lambda: [ev.evaluate(x) for x in genomes])
        print(f"  one at a time (keras, {backend}): {t_one_keras:.2f} s", flush=True)

        populations: dict[str, tuple[float, dict]] = {}
        for label, cfg in variants:
            ev = new(cfg)
            seconds = timed(lambda: ev.evaluate_population(genomes))
            extra: dict[str, Any] = {"groups": len({ev.trainer.plan(enc.decode(x)).key for x in genomes})}
            if cfg.engine != "numpy":
                extra["cold_seconds"] = round(seconds, 3)  # includes compilation
                found = [ev.lookup(x) for x in genomes]
                extra["max_accuracy_diff_vs_numpy"] = float(max(abs(p.accuracy - q.accuracy)
                                                                for p, q in zip(reference, found)))
                extra["max_loss_diff_vs_numpy"] = float(max(abs(p.loss - q.loss) for p, q in zip(reference, found)))
                ev.cache.clear()  # a later generation: the same evaluator, shapes compiled, fitness cache empty
                seconds = timed(lambda: ev.evaluate_population(genomes))
            populations[label] = (seconds, extra)
            print(f"  population {label}: {seconds:.2f} s"
                  + (f" (cold {extra['cold_seconds']:.2f} s)" if "cold_seconds" in extra else ""), flush=True)

        alone: dict[str, dict] = {}
        for engine, cfg in alone_configs.items():
            ev = new(cfg)

            def best_of(genome: np.ndarray, repeats: int = 5) -> float:
                ev.evaluate(genome)  # warm-up (compiles the shape on jax)
                best = np.inf
                for _ in range(repeats):
                    ev.cache.clear()
                    best = min(best, timed(lambda: ev.evaluate(genome)))
                return best

            t_ones, t_20 = best_of(ones), best_of(g20)
            alone[engine] = {"config": {"bucket": cfg.bucket, "group_size": cfg.group_size},
                             "times": (t_ones, t_20)}
            print(f"  alone ({engine}): all-ones {t_ones:.3f} s, 20% {t_20:.3f} s: {t_ones / t_20:.2f}x", flush=True)

    other = None
    if jax_ok and backend != "jax" and getattr(args, "features_path", None):
        print("  keras engine on jax (subprocess) ...", flush=True)
        other = run_worker("keras", {"features": args.features_path, "encoding": name, "hidden": args.hidden,
                                     "batch_size": args.batch_size, "epochs": args.epochs, "genomes": args.genomes,
                                     "seed": args.seed, "bucket": b},
                           env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")})
        if "error" not in other:
            found = other["fitness"]
            other["max_accuracy_diff_vs_numpy"] = float(max(abs(p.accuracy - q[0]) for p, q in zip(reference, found)))
            other["max_loss_diff_vs_numpy"] = float(max(abs(p.loss - q[1]) for p, q in zip(reference, found)))
        print(f"  keras on jax: {other}" if "error" in other else
              f"  keras on jax: population {other['population_seconds']:.2f} s (cold {other['cold_seconds']:.2f} s), "
              f"one at a time {other['one_at_a_time_seconds']:.2f} s", flush=True)

    default_probe = None
    if not args.quick and args.blas_threads and default_threads and default_threads != args.blas_threads \
            and name == args.encodings[0]:
        ev = new(config(engine="numpy"))
        with blas_threads(default_threads):
            default_probe = timed(lambda: ev.evaluate(ones))
        print(f"  all-ones at the default {default_threads} BLAS threads (numpy): {default_probe:.2f} s", flush=True)

    naive = None
    if not args.no_naive and args.naive_genomes > 0:
        picks = np.unique(np.linspace(0, len(genomes) - 1, min(args.naive_genomes, len(genomes))).round().astype(int))
        naive = bench_naive(enc, data, [genomes[i] for i in picks], args)
        reused = bench_reused(enc, data, [genomes[i] for i in picks], args)
        naive["reused_model_seconds_per_eval"] = reused
        print(f"  reused compiled Keras model ({backend}): {reused:.2f} s per evaluation", flush=True)
        naive["gflops_effective"] = round(
            float(np.mean([flops[i] for i in picks])) / naive["seconds_per_eval"] / 1e9, 3)
        naive["gemm_fraction"] = round(naive["gflops_effective"] / ref_gflops, 4)
        print(f"  naive Keras ({naive['backend']}): {naive['seconds_per_eval']:.2f} s per evaluation", flush=True)
    naive_spe = None if naive is None else naive["seconds_per_eval"]
    n = len(genomes)
    out["naive"] = naive
    out["one_at_a_time"] = entry(t_one, n, total_flops, ref_gflops, naive_spe, engine="numpy")
    out["one_at_a_time_keras"] = entry(t_one_keras, n, total_flops, ref_gflops, naive_spe, engine=f"keras_{backend}")
    if other is not None and "error" not in other:
        out["one_at_a_time_keras_jax"] = entry(other["one_at_a_time_seconds"], n, total_flops, ref_gflops, naive_spe,
                                               engine="keras_jax")
    out["population"] = {
        label: entry(seconds, n, total_flops, ref_gflops, naive_spe, **extra)
        for label, (seconds, extra) in populations.items()
    }
    out["alone"] = {}
    for engine, r in alone.items():
        t_ones, t_20 = r["times"]
        out["alone"][engine] = {
            "config": r["config"],
            "all_ones": entry(t_ones, 1, f_ones, ref_gflops, naive_spe, density=1.0),
            "density_20": entry(t_20, 1, f_20, ref_gflops, naive_spe, density=round(float(g20.mean()), 4)),
            "sparsity_speedup": round(t_ones / t_20, 2),
        }
    if other is not None and "error" not in other:
        out["population"]["keras_jax"] = entry(
            other["population_seconds"], n, total_flops, ref_gflops, naive_spe, cold_seconds=other["cold_seconds"],
            max_accuracy_diff_vs_numpy=other["max_accuracy_diff_vs_numpy"],
            max_loss_diff_vs_numpy=other["max_loss_diff_vs_numpy"])
        t_ones, t_20 = other["alone"]
        out["alone"]["keras_jax"] = {
            "config": {"bucket": b, "group_size": 0},
            "all_ones": entry(t_ones, 1, f_ones, ref_gflops, naive_spe, density=1.0),
            "density_20": entry(t_20, 1, f_20, ref_gflops, naive_spe, density=round(float(g20.mean()), 4)),
            "sparsity_speedup": round(t_ones / t_20, 2),
        }
    elif other is not None:
        out["keras_jax_error"] = other["error"]
    if default_probe is not None:
        out["alone"]["numpy"]["all_ones_default_blas_threads"] = entry(
            default_probe, 1, f_ones, ref_gflops, naive_spe, blas_threads=default_threads)
    return out


# --------------------------------------------------------------------------- subprocess workers


def run_worker(kind: str, payload: dict, env: dict | None = None, timeout: float = 900) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", kind, json.dumps(payload)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"worker {kind} exited {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def save_features(data, folder: Path) -> Path:
    path = folder / "features.npz"
    np.savez(path, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
             class_names=np.asarray(data.class_names))
    return path


def load_saved(path: str):
    from evoprune_tf.features.splits import FeatureSplits

    with np.load(path) as z:
        return FeatureSplits(z["x_train"], z["y_train"], z["x_val"], z["y_val"], z["x_val"][:0], z["y_val"][:0],
                             tuple(str(c) for c in z["class_names"]))


def worker_rss(p: dict) -> dict:
    """Peak RSS growth over `evals` evaluations of distinct genomes (NumPy engine, or the Keras engine on this
    process' Keras backend), with the RSS, the peak RSS and the live compiled programs every 50 evaluations."""
    from evoprune_tf.encodings import HeadSpec, make_encoding
    from evoprune_tf.evaluation import PopulationEvaluator
    from evoprune_tf.train import TrainConfig

    data = load_saved(p["features"])
    enc = make_encoding(p["encoding"], HeadSpec(data.n_features, data.n_classes, (p["hidden"],)))
    rng = np.random.default_rng(p["seed"] + 7)
    with blas_threads(p["blas_threads"]):
        options = {"engine": "numpy"} if p["engine"] == "numpy" else {"bucket": p["bucket"]}
        ev = PopulationEvaluator(enc, data, TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], **options),
                                 seed=p["seed"])
        def batch(k: int) -> list[np.ndarray]:
            return [(rng.random(enc.genome_length) < rng.uniform(0.1, 1.0)).astype(np.int8) for _ in range(k)]

        # warm-up: one genome per density step of 5% (with bucket 64 over 1280 genes, every
        # padded width once, each at group size 1), first-touch buffers, BLAS and allocator
        # arenas. Programs for other group sizes (JAX) are compiled during the measured
        # evaluations and count towards the growth, as they do in a search.
        ev.evaluate_population([density_genome(enc.genome_length, d, p["seed"] + i)
                                for i, d in enumerate([*np.linspace(0.05, 1.0, 20), 0.97])])
        keras_engine = p["engine"] != "numpy"  # the NumPy engine never imports Keras: neither may the probe
        peak0, cur0 = peak_rss_mb(), rss_mb()
        programs0 = compiled_programs() if keras_engine else None
        began = time.perf_counter()
        trace, peaks, programs, times, done = [], [], [], [], 0
        while done < p["evals"]:
            k = min(50, p["evals"] - done)
            ev.evaluate_population(batch(k))
            done += k
            trace.append(round(rss_mb(), 1))
            peaks.append(round(peak_rss_mb(), 1))
            programs.append(compiled_programs() if keras_engine else None)
            times.append(round(time.perf_counter() - began, 2))
        seconds = time.perf_counter() - began
    keras = sys.modules.get("keras")
    return {
        "engine": p["engine"], "backend": keras.backend.backend() if keras_engine and keras else None,
        "evaluations": done, "distinct_trained": ev.n_trained - 21, "epochs": p["epochs"],
        "peak_rss_before_mb": round(peak0, 1), "peak_rss_after_mb": round(peak_rss_mb(), 1),
        "peak_rss_growth_mb": round(peak_rss_mb() - peak0, 1),
        "rss_before_mb": round(cur0, 1), "rss_growth_mb": round(trace[-1] - cur0, 1),
        "rss_growth_after_first_50_mb": round(trace[-1] - trace[0], 1),
        "rss_trace_mb_every_50": trace, "peak_rss_trace_mb_every_50": peaks,
        "compiled_programs_before": programs0, "compiled_programs_every_50": programs,
        "seconds_every_50": times, "seconds": round(seconds, 2),
    }


def compiled_programs() -> int | None:
    """Compiled programs the Keras engine holds in this process (JAX: XLA executables of its jitted
    functions; TensorFlow: compact models), or None when it cannot tell."""
    import keras

    from evoprune_tf.train import keras_engine

    counter = getattr(keras_engine, "compiled_program_count", None)
    if counter is None or keras.backend.backend() != "jax":
        return None
    return int(counter())


def rss_line(label: str, rss: dict) -> str:
    """One markdown line of a memory-test result."""
    engine, _, backend = label.partition("_")
    what = f"{engine} engine" + (f", {backend} backend" if backend else "")
    if "error" in rss:
        return f"Memory ({what}): {rss['error']}"
    programs = rss.get("compiled_programs_every_50") or []
    live = "" if not programs or programs[-1] is None else \
        f"; compiled programs {rss['compiled_programs_before']} -> {programs[-1]}"
    return (f"Memory ({what}): peak RSS growth over {rss['evaluations']} evaluations of distinct genomes "
            f"({rss['epochs']} epoch each) **{rss['peak_rss_growth_mb']:.1f} MB**; RSS {rss['rss_before_mb']:.0f} MB "
            f"-> {rss['rss_trace_mb_every_50'][-1]:.0f} MB (every 50: "
            f"{', '.join(f'{v:.0f}' for v in rss['rss_trace_mb_every_50'])}){live}; {rss['seconds']:.0f} s.")


def worker_backend(p: dict) -> dict:
    """Naive head fit and MobileNetV2 extraction on the Keras backend of this process."""
    began = time.perf_counter()
    import keras

    out: dict[str, Any] = {"backend": keras.backend.backend(), "import_seconds": round(time.perf_counter() - began, 2)}
    from evoprune_tf.encodings import HeadSpec, make_encoding

    data = load_saved(p["features"])
    enc = make_encoding("feature_selection", HeadSpec(data.n_features, data.n_classes, (p["hidden"],)))
    genomes = spread_genomes(enc.genome_length, 3, p["seed"])
    naive_evaluate(enc, data, genomes[0], 1, p["batch_size"], p["seed"])  # warm-up
    times = [timed(lambda g=g: naive_evaluate(enc, data, g, p["epochs"], p["batch_size"], p["seed"]))
             for g in genomes[1:]]
    out["head_fit_seconds_per_eval"] = round(float(np.mean(times)), 3)

    from evoprune_tf.backbones import build_backbone

    model = build_backbone("mobilenet_v2", weights=None, image_size=96)
    images = np.random.default_rng(0).integers(0, 256, size=(p["images"], 96, 96, 3)).astype(np.float32)
    first = timed(lambda: model.predict_on_batch(images[:64]))
    out["extract_first_batch_seconds"] = round(first, 3)
    out["extract_seconds"] = round(timed(lambda: [model.predict_on_batch(images[i:i + 64])
                                                  for i in range(0, len(images), 64)]), 3)
    out["extract_images"] = p["images"]
    return out


# --------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(result: dict) -> str:
    w = result["workload"]
    m = result["machine"]
    machine = (f"Machine: {m['cpu_count']} CPUs ({m['processor']}), shared: load average (1/5/15 min) "
               f"{m['load_average_before']} before, {m['load_average_after']} after; {result['seconds']:.0f} s in all.")
    if not result["encodings"]:  # --rss-only
        return "\n".join([*(rss_line(label, rss) for label, rss in (result.get("rss") or {}).items()), machine,
                          f"Command: `{result['command']}`"])
    rows = ["| encoding | evaluator | evals | s / eval | evals / s | x naive | eff. GFLOP/s | % GEMM |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in result["encodings"].items():
        def row(label: str, e: dict | None) -> None:
            if e is None:
                return
            pct = None if e.get("gemm_fraction") is None else 100 * e["gemm_fraction"]
            rows.append(f"| {name} | {label} | {e['evaluations']} | {e['seconds_per_eval']:.3f} | "
                        f"{e['evals_per_second']:.2f} | {fmt(e.get('speedup_vs_naive'), 1)} | "
                        f"{fmt(e.get('gflops'), 1)} | {fmt(pct, 0)} |")

        nv = r.get("naive")
        if nv:
            rows.append(f"| {name} | naive: fresh Keras model + fit ({nv['backend']}) | {nv['genomes']} | "
                        f"{nv['seconds_per_eval']:.3f} | {1 / nv['seconds_per_eval']:.2f} | 1.0 | "
                        f"{nv['gflops_effective']:.1f} | {100 * nv['gemm_fraction']:.0f} |")
        if nv and nv.get("reused_model_seconds_per_eval"):
            t = nv["reused_model_seconds_per_eval"]
            rows.append(f"| {name} | plain Keras: one compiled model reused via set_mask ({nv['backend']}) | "
                        f"{nv['genomes']} | {t:.3f} | {1 / t:.2f} | {nv['seconds_per_eval'] / t:.1f} | - | - |")
        row("ours, one at a time (numpy)", r["one_at_a_time"])
        row(f"ours, one at a time ({r['one_at_a_time_keras']['engine'].replace('_', ' on ')})", r["one_at_a_time_keras"])
        if "one_at_a_time_keras_jax" in r:
            row("ours, one at a time (keras on jax)", r["one_at_a_time_keras_jax"])
        for label, e in r["population"].items():
            pretty = label.replace("_group", ", group ").replace("_bucket", ", bucket ")
            row(f"ours, population ({pretty}{', warm' if 'cold_seconds' in e else ''})", e)
            if "cold_seconds" in e:
                f = e["seconds"] / e["cold_seconds"]
                cold = dict(e, seconds_per_eval=e["cold_seconds"] / e["evaluations"],
                            evals_per_second=e["evaluations"] / e["cold_seconds"], gflops=e["gflops"] * f,
                            gemm_fraction=e["gemm_fraction"] * f,
                            speedup_vs_naive=None if e["speedup_vs_naive"] is None else e["speedup_vs_naive"] * f)
                row(f"ours, population ({pretty}, cold: incl. compilation)", cold)
        for engine, a in r["alone"].items():
            cfg = a["config"]
            how = f"{engine}" + (f", bucket {cfg['bucket']}" if cfg["bucket"] > 1 else "")
            row(f"all-ones genome alone ({how})", a["all_ones"])
            if "all_ones_default_blas_threads" in a:
                e = a["all_ones_default_blas_threads"]
                row(f"all-ones genome alone ({how}, default {e['blas_threads']} BLAS threads)", e)
            row(f"20% genome alone ({how}): **{a['sparsity_speedup']:.2f}x** faster than all-ones", a["density_20"])
    g = result["gemm"]
    rates = "; ".join(f"{label} {v['head_shape']:.0f} / {v['large']:.0f}" for label, v in g["rates"].items())
    large = large_gemm_size(w.get("quick", False))
    lines = [
        f"Workload: {w['n_features']} {w['features']} features, {w['n_train']} train / {w['n_val']} val, "
        f"{w['n_classes']} classes, head {w['hidden'][0]} hidden, {w['epochs']} epochs, batch {w['batch_size']}, "
        f"{w['genomes']} genomes with densities 0.1..1.0 (mean {next(iter(result['encodings'].values()))['mean_density']:.2f}); "
        f"NumPy BLAS threads {w['blas_threads']}. Naive = the mean over {w['naive_genomes']} of the genomes.",
        "",
        *rows,
        "",
        f"Float32 GEMM measured in the same run (best of a sample at the start and one at the end), GFLOP/s "
        f"(32x1280 @ 1280x512 / {large}^3): {rates}. "
        f"% GEMM is relative to the best {large}^3 rate, {g['reference_gflops']:.0f} GFLOP/s ({g['reference']}).",
    ]
    for label, rss in (result.get("rss") or {}).items():
        lines.append(rss_line(label, rss))
    b = result.get("backends")
    if b:
        parts = []
        for backend, r in b.items():
            if "error" in r:
                parts.append(f"{backend}: {r['error']}")
            else:
                parts.append(f"{backend}: naive head fit {r['head_fit_seconds_per_eval']:.2f} s/eval, "
                             f"MobileNetV2 extraction of {r['extract_images']} images at 96 px {r['extract_seconds']:.2f} s "
                             f"(first batch of 64, incl. tracing, {r['extract_first_batch_seconds']:.2f} s)")
        lines.append("Keras backends: " + "; ".join(parts) + ".")
    lines.append(machine)
    lines.append(f"Command: `{result['command']}`")
    return "\n".join(lines)


def targets(result: dict) -> dict:
    """The targets of issue 4, as measured (value and whether it is met)."""
    out: dict[str, Any] = {}

    def check(value: float | None, ok: Callable[[float], bool]) -> dict | None:
        return None if value is None else {"value": value, "met": bool(ok(value))}

    for name, r in result["encodings"].items():
        pops = {k: v["speedup_vs_naive"] for k, v in r["population"].items() if v["speedup_vs_naive"]}
        best = max(pops, key=pops.get) if pops else None
        out[name] = {
            "speedup_vs_naive >= 5 (default path: numpy, group 1)": check(pops.get("numpy_group1"), lambda v: v >= 5),
            "speedup_vs_naive >= 5 (best population path)": None if best is None else
            {"path": best, **check(pops[best], lambda v: v >= 5)},
            "all_ones_gemm_fraction >= 0.5": {
                e: {f"vs {label} ({rate['large']:.0f} GFLOP/s)":
                    check(round(a["all_ones"]["gflops"] / rate["large"], 3), lambda v: v >= 0.5)
                    for label, rate in result["gemm"]["rates"].items()}
                for e, a in r["alone"].items()},
            "sparsity_speedup_20pct >= 2.5": {e: check(a["sparsity_speedup"], lambda v: v >= 2.5)
                                              for e, a in r["alone"].items()},
        }
        keras_pops = {k: v["evals_per_second"] for k, v in r["population"].items() if k.startswith("keras")}
        if keras_pops and not result["workload"]["quick"]:
            best_k = max(keras_pops, key=keras_pops.get)
            ref = HAND_JAX_EVALS_PER_SECOND.get(name)
            out[name]["keras population >= 0.8x hand JAX engine"] = {
                "path": best_k, **check(round(keras_pops[best_k] / ref, 2), lambda v: v >= 0.8)}
            reused = (r.get("naive") or {}).get("reused_model_seconds_per_eval")
            if reused:
                out[name]["keras population >= 3x reused compiled model"] = {
                    "path": best_k, **check(round(keras_pops[best_k] * reused, 2), lambda v: v >= 3)}
    out["peak_rss_growth_mb < 100"] = {e: check(v.get("peak_rss_growth_mb"), lambda x: x < 100)
                                       for e, v in (result.get("rss") or {}).items()}
    return out


def measure_gemm(args: argparse.Namespace, default_threads: int | None, jax_ok: bool) -> dict:
    """Float32 GEMM rates of NumPy (at our and at the default BLAS thread count) and XLA."""
    large = large_gemm_size(args.quick)
    shapes = {"head_shape": (32, args.n_features, args.hidden), "large": (large, large, large)}
    rates: dict[str, dict] = {}
    timing = {"min_seconds": 0.02, "rounds": 2} if args.quick else {"min_seconds": 0.2, "rounds": 5}
    with blas_threads(args.blas_threads):
        label = f"numpy {args.blas_threads or default_threads} thread(s)"
        rates[label] = {k: round(gemm_gflops(*s, **timing), 2) for k, s in shapes.items()}
    if args.blas_threads and default_threads and default_threads != args.blas_threads:
        rates[f"numpy {default_threads} threads (default)"] = {
            k: round(gemm_gflops(*s, **timing), 2) for k, s in shapes.items()}
    if jax_ok:
        rates["jax/XLA"] = {k: round(jax_gemm_gflops(*s, **timing), 2) for k, s in shapes.items()}
    return rates


def large_gemm_size(quick: bool) -> int:
    """The side of the square reference GEMM: 2048, or 1024 for the ``--quick`` smoke run."""
    return 1024 if quick else 2048


def best_rates(samples: list[dict], default_threads: int | None) -> dict:
    """Per library and shape, the best of the samples (the machine is shared: load comes and goes)."""
    rates = {label: {shape: max(s[label][shape] for s in samples) for shape in samples[0][label]}
             for label in samples[0]}
    reference = max(rates, key=lambda k: rates[k]["large"])
    return {"rates": rates, "samples": samples, "reference": reference,
            "reference_gflops": rates[reference]["large"], "default_blas_threads": default_threads}


def jax_gemm_gflops(m: int, k: int, n: int, rounds: int = 5, min_seconds: float = 0.25) -> float:
    """Best float32 GEMM rate of XLA (jitted ``jnp.dot`` at full float32 precision)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.random((m, k), dtype=np.float32))
    b = jnp.asarray(rng.random((k, n), dtype=np.float32))
    dot = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
    dot(a, b).block_until_ready()
    once = max(timed(lambda: dot(a, b).block_until_ready()), 1e-6)
    reps = max(1, int(min_seconds / once))
    best = np.inf
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(reps):
            r = dot(a, b)
        r.block_until_ready()
        best = min(best, (time.perf_counter() - began) / reps)
    return 2.0 * m * k * n / best / 1e9


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `evoprune bench -- --quick ...`
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    if args._worker:
        kind, payload = args._worker[0], json.loads(args._worker[1])
        workers = {"rss": worker_rss, "keras": worker_keras, "backend": worker_backend}
        result = workers[kind](payload)
        print(json.dumps(result))
        return 0
    args = resolve(args)
    began = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    command = "python benchmarks/fitness.py" + ("" if not argv else " " + shlex.join(argv))
    print(f"Fitness benchmark; load average {load_before}; {command}", flush=True)

    import importlib.util

    jax_ok = not args.no_jax and importlib.util.find_spec("jax") is not None
    data = (rps_features(args.n_train, args.n_val) if args.features == "rps"
            else planted_features(args.n_features, args.n_train, args.n_val, args.n_classes, args.seed))
    default_threads = default_blas_threads()
    feature_folder = tempfile.TemporaryDirectory(prefix="evoprune-bench-")
    args.features_path = str(save_features(data, Path(feature_folder.name)))

    gemm = None if args.rss_only else best_rates([measure_gemm(args, default_threads, jax_ok)], default_threads)
    if gemm is not None:
        print(f"GEMM (GFLOP/s): {gemm['rates']}", flush=True)

    result: dict[str, Any] = {
        "command": command,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "workload": {
            "features": args.features, "n_features": data.n_features, "n_train": len(data.y_train),
            "n_val": len(data.y_val), "n_classes": data.n_classes, "hidden": [args.hidden], "epochs": args.epochs,
            "batch_size": args.batch_size, "genomes": args.genomes, "density_range": [0.1, 1.0],
            "naive_genomes": 0 if args.no_naive else args.naive_genomes, "bucket": args.bucket,
            "group_size": args.group_size, "blas_threads": args.blas_threads or default_threads, "quick": args.quick,
        },
        "gemm": gemm,
        "encodings": {},
    }
    if not args.rss_only:
        for name in args.encodings:
            result["encodings"][name] = bench_encoding(name, data, args, gemm["reference_gflops"], jax_ok,
                                                       default_threads)

        print("GEMM again (the best of both samples is the reference) ...", flush=True)
        gemm = best_rates([gemm["samples"][0], measure_gemm(args, default_threads, jax_ok)], default_threads)
        result["gemm"] = gemm
        _apply_reference(result["encodings"], gemm["reference_gflops"])

    with tempfile.TemporaryDirectory(prefix="evoprune-bench-") as folder:
        path = save_features(data, Path(folder))
        common = {"features": str(path), "hidden": args.hidden, "batch_size": args.batch_size, "seed": args.seed}
        result["rss"] = {}
        # One clean subprocess per engine and Keras backend (KERAS_BACKEND set), so that
        # neither backend's start-up nor the parent's own compilations count.
        runs = [("numpy", "numpy", None)] + [(f"keras_{b}", "keras", b) for b in args.rss_backends]
        for label, engine, backend in runs:
            if backend == "jax" and importlib.util.find_spec("jax") is None:
                result["rss"][label] = {"error": "jax is not installed (pip install 'evoprune-tf[jax]')"}
                continue
            print(f"memory: {args.rss_evals} evaluations in a subprocess ({label}) ...", flush=True)
            env = None if backend is None else {"KERAS_BACKEND": backend,
                                                "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
            result["rss"][label] = run_worker("rss", {
                **common, "encoding": args.encodings[0], "evals": args.rss_evals, "epochs": args.rss_epochs,
                "blas_threads": args.blas_threads, "engine": engine, "bucket": args.bucket}, env=env)
        if args.backends:
            result["backends"] = {}
            for backend in ("tensorflow", "jax"):
                print(f"backend {backend} ...", flush=True)
                result["backends"][backend] = run_worker(
                    "backend", {**common, "epochs": args.epochs, "images": 256},
                    env={"KERAS_BACKEND": backend, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")})

    keras = sys.modules.get("keras")
    result["machine"] = {
        "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
        "keras": _version("keras"), "jax": _version("jax") if jax_ok else None,
        "keras_backend": keras.backend.backend() if keras else os.environ.get("KERAS_BACKEND", "tensorflow"),
        "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    feature_folder.cleanup()
    result["seconds"] = round(time.perf_counter() - began, 1)
    result["targets"] = targets(result)
    table = markdown(result)
    result["markdown"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    print()
    print(table)
    print()
    print("Targets: " + json.dumps(result["targets"]))
    print(f"JSON: {args.out}")
    return 0


def _apply_reference(tree: Any, ref_gflops: float) -> None:
    """Recompute every ``gemm_fraction`` in ``tree`` against the final reference rate."""
    if isinstance(tree, dict):
        if "gemm_fraction" in tree:
            rate = tree.get("gflops", tree.get("gflops_effective"))
            if rate is not None:
                tree["gemm_fraction"] = round(rate / ref_gflops, 4)
        for value in tree.values():
            _apply_reference(value, ref_gflops)


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    code = main()
    if code:
        raise SystemExit(code)
