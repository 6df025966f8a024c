"""Filter-pruning benchmark: one DeepPruningES evaluation with the prefix cache vs from images (issue 11).

Run from a source checkout: ``python benchmarks/filter_eval.py`` (``--quick`` for a smoke run).

Workload (fixed): MobileNetV2 (the shared ImageNet weights when ``$EVOPRUNE_ASSETS`` is set,
else random weights) at 96 px with a 3-class softmax head, the last 3 blocks searched
(block_15, block_16, Conv_1: 3520 filters), 512 train / 128 validation images by default
(``--train`` / ``--val``; the shared RPS copy when available, else synthetic stripes), SGD lr 1e-3 momentum 0.9 Nesterov,
batch 32, 2 epochs, one genome keeping ~70% of the filters (seeded).

Rows (median of ``--repeats`` timed evaluations, each on a fresh pruned model, after one
untimed warm-up):

* cached: `FilterEvaluator.evaluate`, the prefix activations computed once beforehand
  (their one-off cost is reported separately): surgery of the suffix + fine-tune +
  validation on cached activations;
* from images: the same genome applied to the whole network (`prune_filters` on the full
  model), the prefix frozen (its BatchNorm in inference mode), fine-tuned for the same
  epochs on the images, validated on images: every epoch recomputes the backbone.

Target: cached >= 5x faster. Prints a markdown row and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np


def _images(n_train: int, n_val: int, size: int):
    from evoprune_tf.data.synthetic import synthetic_images

    root = os.environ.get("EVOPRUNE_ASSETS")
    source = pathlib.Path(root) / "datasets" / "rps_28px" if root else None
    if source is not None and source.is_dir():
        from evoprune_tf.data import load_images

        images, name = load_images(str(source), image_size=size, seed=0, progress=False), "rps_28px"
    else:
        images, name = synthetic_images(image_size=size, per_class=(n_train + n_val) // 2, seed=0), "synthetic"
    return (images.train_images[:n_train], images.train_labels[:n_train],
            images.val_images[:n_val], images.val_labels[:n_val], name)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 px, random weights, 128 images, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train", type=int, default=512, help="training images (the full RPS train split: 2016)")
    parser.add_argument("--val", type=int, default=128, help="validation images")
    parser.add_argument("--out", default="benchmarks/results/filter_eval.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from evoprune_tf.methods.deep_pruning_es.run import build_filter_network
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning
    from evoprune_tf.methods.deep_pruning_es.evaluation import FilterEvaluator, make_optimizer
    from evoprune_tf.nn.surgery import prune_filters
    from evoprune_tf.train.config import TrainConfig

    if args.train < 1 or args.val < 1:
        parser.error(f"--train {args.train} / --val {args.val}: expected positive image counts")
    size, n_train, n_val = (32, 96, 32) if args.quick else (96, args.train, args.val)
    repeats = 1 if args.quick else args.repeats
    root = os.environ.get("EVOPRUNE_ASSETS")
    weights_file = pathlib.Path(root or "") / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    weights = str(weights_file) if root and weights_file.is_file() and not args.quick else None
    keras.utils.set_random_seed(0)
    model, module = build_filter_network("mobilenet_v2", weights=weights, image_size=size, n_classes=3)
    xtr, ytr, xva, yva, data_name = _images(n_train, n_val, size)
    preprocess = getattr(keras.applications, module).preprocess_input
    xtr = np.asarray(preprocess(xtr.astype(np.float32)))
    xva = np.asarray(preprocess(xva.astype(np.float32)))
    encoding = FilterPruning(model, 3)
    recipe = TrainConfig(epochs=args.epochs, batch_size=32)
    began = time.perf_counter()
    evaluator = FilterEvaluator(encoding, {"train": (xtr, ytr), "val": (xva, yva)}, recipe, seed=0)
    prefix_seconds = time.perf_counter() - began
    rng = np.random.default_rng(0)
    genomes = [(rng.random(encoding.genome_length) < 0.7).astype(np.int8) for _ in range(repeats + 1)]

    cached = []
    for i, genome in enumerate(genomes):
        began = time.perf_counter()
        evaluator.evaluate(genome)
        if i:  # the first one is the warm-up
            cached.append(time.perf_counter() - began)

    prefix_layers = {layer.name for layer in evaluator.prefix.layers}

    def from_images(genome: np.ndarray) -> float:
        keep = encoding.decode(genome)
        keras.utils.set_random_seed(1)
        full = prune_filters(model, keep)
        for layer in full.layers:
            if layer.name in prefix_layers or isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        full.compile(optimizer=make_optimizer(recipe), loss="sparse_categorical_crossentropy", jit_compile=False)
        full.fit(xtr, ytr, batch_size=recipe.batch_size, epochs=recipe.epochs, shuffle=True, verbose=0)
        probs = keras.ops.convert_to_numpy(full(xva, training=False))
        return float(np.mean(np.argmax(probs, 1) == yva))

    full_times = []
    for i, genome in enumerate(genomes):
        began = time.perf_counter()
        from_images(genome)
        if i:
            full_times.append(time.perf_counter() - began)
    c, f = statistics.median(cached), statistics.median(full_times)
    result = {
        "data": data_name, "weights": "imagenet file" if weights else "random", "image_size": size,
        "train": int(len(ytr)), "val": int(len(yva)), "epochs": recipe.epochs, "genome_length": encoding.genome_length,
        "cut_layer": encoding.cut_layer, "prefix_seconds_once": round(prefix_seconds, 3),
        "cached_seconds": round(c, 3), "from_images_seconds": round(f, 3), "speedup": round(f / c, 2),
        "repeats": repeats,
    }
    print("| workload | prefix once (s) | cached eval (s) | from images (s) | speed-up |")
    print("|---|---|---|---|---|")
    print(f"| MobileNetV2 {size}px {result['weights']}, last 3 blocks, {len(ytr)} train / {len(yva)} val "
          f"({data_name}), {recipe.epochs} epochs | {prefix_seconds:.2f} | {c:.2f} | {f:.2f} | {f / c:.1f}x |")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
