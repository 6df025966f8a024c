"""Interleaved A/B of whole-population fitness evaluation: the Keras engine vs an older checkout.

One process measures one engine on the workload of ``benchmarks/fitness.py`` (1280
planted features, 2000 train / 500 val, 3 classes, head 1280 -> 512 -> 3, 5 epochs,
batch 32, bucket 64, 12 genomes with densities spread over 0.1..1.0, every genome a new
compact shape): a cold population (including compilation), then the best of 3 warm ones
(the same evaluator with its fitness cache emptied, as in a later generation). Run it
alternately for each engine, so that every engine sees the same machine load::

    git worktree add /tmp/old 7d62836          # the deleted hand-derived JAX engine
    for i in 1 2; do
      PYTHONPATH=/tmp/old python benchmarks/engine_ab.py --old
      KERAS_BACKEND=jax python benchmarks/engine_ab.py
      KERAS_BACKEND=tensorflow python benchmarks/engine_ab.py
    done

``--old`` runs the checkout on ``PYTHONPATH`` through its own API (``TrainConfig(engine=
"jax", group_size=30)``, its fastest setting for feature selection). Prints one JSON
line per encoding.

On a GPU (JAX, no TensorFlow), the issue's 30- and 300-genome rows::

    KERAS_BACKEND=jax python benchmarks/engine_ab.py --genomes 30 --group-size 30
    KERAS_BACKEND=jax python benchmarks/engine_ab.py --genomes 300 --group-size 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", action="store_true", help="the checkout on PYTHONPATH is 7d62836 (its own API)")
    parser.add_argument("--genomes", type=int, default=12, help="genomes per encoding (default 12)")
    parser.add_argument("--repeats", type=int, default=3, help="warm repeats, best kept (default 3)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per evaluation (default 5)")
    parser.add_argument("--group-size", type=int, default=0,
                        help="train.group_size of the Keras engine (default 0: the engine's choice)")
    args = parser.parse_args(argv)
    if args.group_size < 0:
        parser.error(f"--group-size={args.group_size}; expected 0 or a positive integer")
    for flag in ("genomes", "repeats", "epochs"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}={getattr(args, flag)}; expected a positive integer")

    from fitness import planted_features, spread_genomes

    from evoprune_tf.encodings import HeadSpec, make_encoding
    from evoprune_tf.evaluation import PopulationEvaluator

    if args.old:
        from evoprune_tf.training import TrainConfig

        options = {"engine": "jax", "group_size": 30}
        label = "hand-derived JAX engine (--old)"
    else:
        import keras

        from evoprune_tf.train import TrainConfig

        options = {"group_size": args.group_size}
        label = f"keras engine on {keras.backend.backend()}"
    data = planted_features(1280, 2000, 500, 3, 0)
    spec = HeadSpec(1280, 3, (512,))
    for name in ("feature_selection", "neuron_pruning"):
        enc = make_encoding(name, spec)
        genomes = spread_genomes(enc.genome_length, args.genomes, 0)
        ev = PopulationEvaluator(enc, data, TrainConfig(epochs=args.epochs, batch_size=32, bucket=64, **options), seed=0)
        start = time.perf_counter()
        ev.evaluate_population(genomes)
        cold = time.perf_counter() - start
        warm = np.inf
        for _ in range(args.repeats):
            ev.cache.clear()
            start = time.perf_counter()
            ev.evaluate_population(genomes)
            warm = min(warm, time.perf_counter() - start)
        losses = [ev.lookup(g).loss for g in genomes]
        print(json.dumps({"engine": label, "encoding": name, "cold_s_per_eval": round(cold / len(genomes), 3),
                          "warm_s_per_eval": round(warm / len(genomes), 3),
                          "warm_evals_per_s": round(len(genomes) / warm, 2), "first_loss": losses[0],
                          "load_average": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
