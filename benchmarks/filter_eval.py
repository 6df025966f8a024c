"""DeepPruningES benchmark: one evaluation cached, from images, whole network; RSS; latency (issues 11, 24).

Run from a source checkout: ``python benchmarks/filter_eval.py`` (``--quick`` for a smoke run).

Workload (fixed): MobileNetV2 (the shared ImageNet weights when ``$EVOPRUNE_ASSETS`` is set,
else random weights) at ``--size`` px (96) with a 3-class softmax head, 512 train / 128
validation images by default (``--train`` / ``--val``; the shared RPS copy when available,
else synthetic stripes), SGD lr 1e-3 momentum 0.9 Nesterov, batch 32, ``--epochs`` (2),
one genome keeping ~70% of the filters (seeded).

Rows (median of ``--repeats`` timed evaluations, each on a fresh pruned model, after one
untimed warm-up):

* cached: `FilterEvaluator.evaluate` over the last 3 blocks (block_15, block_16, Conv_1),
  the prefix activations computed once beforehand (their one-off cost is reported
  separately): surgery of the suffix + fine-tune + validation on cached activations;
* from images: the same genome applied to the whole network (`prune_filters` on the full
  model), the prefix frozen (its BatchNorm in inference mode), fine-tuned for the same
  epochs on the images, validated on images: every epoch recomputes the backbone;
* whole network: `FilterEvaluator.evaluate` with ``encoding.blocks = "all"`` (every
  prunable group searched, no prefix to cache, the whole pruned network fine-tuned).

Then:

* RSS: ``--rss-evaluations`` (330, the paper's budget) evaluations of distinct random
  genomes by a cached evaluator over the last ``--rss-blocks`` blocks (3: the evaluator
  timed above); the process RSS before, after the first evaluation, its peak, the peak
  growth after the first evaluation against the 200 MB target of issue 24, and the
  growth per evaluation (least-squares slope). ``--rss-only`` skips the timed rows and the
  latency table: ``--rss-only --size 32 --train 32 --val 16 --epochs 1 --rss-blocks 1``
  runs the 330 evaluations in minutes;
* latency: `evoprune_tf.report.latency.latency_table` of the unpruned network and a
  random half-pruned one (half the filters of every prunable group): FLOPs, parameters,
  LiteRT at batch 1 on 1 and 2 threads, Keras at batch 32, and their reductions
  (``--no-litert``: Keras only; LiteRT needs ``pip install 'evoprune-tf[litert]'``).

Target: cached >= 5x faster than from images. Prints markdown tables and writes JSON (``--out``).
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


def _median_seconds(evaluate, genomes) -> float:
    """Median wall time of ``evaluate(genome)`` over ``genomes[1:]`` (the first is an untimed warm-up)."""
    times = []
    for i, genome in enumerate(genomes):
        began = time.perf_counter()
        evaluate(genome)
        if i:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def _from_images(model, encoding, evaluator, recipe, xtr, ytr, xva, yva):
    """The cached evaluator's genome applied to the whole network, prefix frozen, fine-tuned on images."""
    import keras

    from evoprune_tf.train.recipe import make_optimizer
    from evoprune_tf.nn.surgery import prune_filters
    from evoprune_tf.train.tf_registry import released_custom_gradients

    prefix_layers = {layer.name for layer in evaluator.prefix.layers}

    def evaluate(genome: np.ndarray) -> float:
        keras.utils.set_random_seed(1)
        full = prune_filters(model, encoding.decode(genome))
        for layer in full.layers:
            if layer.name in prefix_layers or isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        with released_custom_gradients():  # as the evaluator does: no traced step left in TF's registry
            full.compile(optimizer=make_optimizer(recipe), loss="sparse_categorical_crossentropy", jit_compile=False)
            full.fit(xtr, ytr, batch_size=recipe.batch_size, epochs=recipe.epochs, shuffle=True, verbose=0)
        probs = keras.ops.convert_to_numpy(full(xva, training=False))
        return float(np.mean(np.argmax(probs, 1) == yva))

    return evaluate


#: Issue 24's target: peak RSS growth over the paper's 330 evaluations.
RSS_TARGET_MB = 200.0


def _rss(evaluator, n: int) -> dict:
    """RSS over ``n`` evaluations of distinct random genomes (the evaluator records it after each)."""
    from evoprune_tf.methods.deep_pruning_es.evaluation import rss_mb

    rng = np.random.default_rng(7)
    before, began = rss_mb(), time.perf_counter()
    evaluator.rss_trace.clear()
    for _ in range(n):
        evaluator.evaluate((rng.random(evaluator.encoding.genome_length) < rng.uniform(0.3, 0.95)).astype(np.int8))
    trace = evaluator.rss_trace
    slope = float(np.polyfit(np.arange(len(trace)), trace, 1)[0]) if len(trace) > 1 else 0.0
    return {"evaluations": n, "rss_before_mb": round(before, 1), "rss_first_mb": trace[0], "rss_after_mb": trace[-1],
            "rss_peak_mb": max(trace), "rss_growth_mb": round(max(trace) - trace[0], 1),
            "growth_per_evaluation_mb": round(slope, 2), "seconds": round(time.perf_counter() - began, 1),
            "blocks": evaluator.encoding.blocks, "genome_length": evaluator.encoding.genome_length,
            "target_mb": RSS_TARGET_MB, "within_target": bool(max(trace) - trace[0] < RSS_TARGET_MB),
            "trace_mb": list(trace)}


def _latency(model, *, litert: bool) -> list[dict]:
    """The latency table of the unpruned network and a random half of every prunable group's filters."""
    import tempfile

    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning
    from evoprune_tf.nn.surgery import prune_filters
    from evoprune_tf.report.latency import latency_table

    whole = FilterPruning(model, "all")
    rng = np.random.default_rng(3)
    keep = {}
    for group, mask in whole.decode(np.ones(whole.genome_length, np.int8)).items():
        half = np.zeros(len(mask), bool)
        half[rng.choice(len(mask), max(1, len(mask) // 2), replace=False)] = True
        keep[group] = half
    with tempfile.TemporaryDirectory() as folder:
        return latency_table({"unpruned": model, "random half": prune_filters(model, keep)}, litert=litert,
                             export_dir=folder)


def _print(result: dict, rows: list[dict]) -> None:
    from evoprune_tf.report.latency import latency_markdown

    r = result
    if "cached_seconds" in r:
        print("| workload | prefix once (s) | cached eval (s) | from images (s) | whole network (s) | speed-up |")
        print("|---|---|---|---|---|---|")
        print(f"| MobileNetV2 {r['image_size']}px {r['weights']}, last 3 blocks ({r['genome_length']} filters) vs all "
              f"({r['whole_genome_length']}), {r['train']} train / {r['val']} val ({r['data']}), {r['epochs']} epochs "
              f"| {r['prefix_seconds_once']:.2f} | {r['cached_seconds']:.2f} | {r['from_images_seconds']:.2f} "
              f"| {r['whole_network_seconds']:.2f} | {r['speedup']:.1f}x |")
    m = r["rss"]
    verdict = "within" if m["within_target"] else "ABOVE"
    print(f"\nRSS over {m['evaluations']} cached evaluations (MobileNetV2 {r['image_size']}px {r['weights']}, last "
          f"{m['blocks']} block(s), {m['genome_length']} filters, {r['train']} train / {r['val']} val, {r['epochs']} "
          f"epoch(s)): {m['rss_before_mb']} MB before, {m['rss_first_mb']} MB after the first, peak "
          f"{m['rss_peak_mb']} MB, last {m['rss_after_mb']} MB: peak growth {m['rss_growth_mb']} MB after the first "
          f"({verdict} the {m['target_mb']:.0f} MB target; {m['growth_per_evaluation_mb']} MB per evaluation, "
          f"fitted), {m['seconds']} s\n")
    if rows:
        print(latency_markdown(rows))


def _timed_rows(model, splits, recipe, repeats: int, xtr, ytr, xva, yva) -> dict:
    """Cached (last 3 blocks), from images and whole-network evaluation times of one genome each."""
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning
    from evoprune_tf.methods.deep_pruning_es.evaluation import FilterEvaluator

    encoding = FilterPruning(model, 3)
    began = time.perf_counter()
    evaluator = FilterEvaluator(encoding, splits, recipe, seed=0)
    prefix_seconds = time.perf_counter() - began
    rng = np.random.default_rng(0)
    genomes = [(rng.random(encoding.genome_length) < 0.7).astype(np.int8) for _ in range(repeats + 1)]
    cached = _median_seconds(evaluator.evaluate, genomes)
    full = _median_seconds(_from_images(model, encoding, evaluator, recipe, xtr, ytr, xva, yva), genomes)
    whole_encoding = FilterPruning(model, "all")
    whole_evaluator = FilterEvaluator(whole_encoding, splits, recipe, seed=0)
    whole = _median_seconds(whole_evaluator.evaluate, [(rng.random(whole_encoding.genome_length) < 0.7)
                                                       .astype(np.int8) for _ in range(repeats + 1)])
    return {"genome_length": encoding.genome_length, "whole_genome_length": whole_encoding.genome_length,
            "cut_layer": encoding.cut_layer, "prefix_seconds_once": round(prefix_seconds, 3),
            "cached_seconds": round(cached, 3), "from_images_seconds": round(full, 3),
            "whole_network_seconds": round(whole, 3), "speedup": round(full / cached, 2)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 px, random weights, 96 images, 1 repeat, 3 RSS evals")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=96, help="input side in pixels")
    parser.add_argument("--train", type=int, default=512, help="training images (the full RPS train split: 2016)")
    parser.add_argument("--val", type=int, default=128, help="validation images")
    parser.add_argument("--rss-evaluations", type=int, default=330, help="cached evaluations of the RSS trace")
    parser.add_argument("--rss-blocks", type=int, default=3, help="blocks searched by the RSS trace's evaluator")
    parser.add_argument("--rss-only", action="store_true", help="only the RSS trace (no timed rows, no latency)")
    parser.add_argument("--no-litert", action="store_true", help="latency table without LiteRT (Keras only)")
    parser.add_argument("--out", default="benchmarks/results/filter_eval.json")
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1 or args.size < 32 or args.rss_evaluations < 1 or args.rss_blocks < 1:
        parser.error(f"--train {args.train} / --val {args.val} / --size {args.size} / --rss-blocks {args.rss_blocks} "
                     f"/ --rss-evaluations {args.rss_evaluations}: expected positive counts and a size of at least 32")
    if not args.no_litert and not args.rss_only:
        from evoprune_tf.report.latency import LiteRTNotInstalled, require_litert

        try:
            require_litert("the latency table")  # one line, before any model is built
        except LiteRTNotInstalled as error:
            parser.error(f"{error} (or --no-litert)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from evoprune_tf.methods.deep_pruning_es.run import build_filter_network
    from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning
    from evoprune_tf.methods.deep_pruning_es.evaluation import FilterEvaluator
    from evoprune_tf.train.config import TrainConfig

    size, n_train, n_val = (32, 64, 32) if args.quick else (args.size, args.train, args.val)
    repeats, n_rss = (1, 3) if args.quick else (args.repeats, args.rss_evaluations)
    root = os.environ.get("EVOPRUNE_ASSETS")
    weights_file = (pathlib.Path(root or "") / "weights"
                    / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    weights = str(weights_file) if root and weights_file.is_file() and not args.quick else None
    keras.utils.set_random_seed(0)
    model, module = build_filter_network("mobilenet_v2", weights=weights, image_size=size, n_classes=3)
    xtr, ytr, xva, yva, data_name = _images(n_train, n_val, size)
    preprocess = getattr(keras.applications, module).preprocess_input
    xtr = np.asarray(preprocess(xtr.astype(np.float32)))
    xva = np.asarray(preprocess(xva.astype(np.float32)))
    splits = {"train": (xtr, ytr), "val": (xva, yva)}
    recipe = TrainConfig(epochs=args.epochs, batch_size=32)
    result = {"data": data_name, "weights": "imagenet file" if weights else "random", "image_size": size,
              "train": int(len(ytr)), "val": int(len(yva)), "epochs": recipe.epochs, "repeats": repeats}
    rows: list[dict] = []
    if not args.rss_only:
        result.update(_timed_rows(model, splits, recipe, repeats, xtr, ytr, xva, yva))
    result["rss"] = _rss(FilterEvaluator(FilterPruning(model, args.rss_blocks), splits, recipe, seed=0), n_rss)
    if not args.rss_only:
        rows = _latency(model, litert=not args.no_litert)
        result["latency"] = [{k: v for k, v in r.items() if k != "tflite"} for r in rows]
    _print(result, rows)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
