"""Does the per-layer latency table rank pruned networks by their measured LiteRT latency, better than FLOPs do?

Run from a source checkout: ``python benchmarks/latency_lut.py`` (``--quick`` for a smoke run).

Workload: MobileNetV2 (``--alpha``, random weights: latency does not depend on them) at
``--size`` px with a 5-class head; ``--models`` compact networks, each pruned physically
(`prune_filters`) with a random keep fraction per prunable group, drawn uniformly in
[0.1, 1] (so FLOPs and latency can disagree about which layers were cut), plus the
unpruned one. For each network:

* predicted: `evoprune_tf.report.latency_lut.LatencyTable.predict_ms` (the table is
  measured on first use and stored in ``--table``; its one-off cost is printed);
* measured: LiteRT at batch 1 on 1 thread, median of ``--runs`` runs
  (`evoprune_tf.report.latency.litert_latency_ms`; Keras ``predict_on_batch`` at batch 1
  when LiteRT is not installed);
* FLOPs: `count_flops` (2 x MACs), the proxy every pruning paper reports.

Prints Spearman's rank correlation of predicted vs measured and of FLOPs vs measured, and
the median absolute error of the prediction in %, and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _networks(alpha: float, size: int, count: int, seed: int):
    import keras
    import numpy as np

    from evoprune_tf.nn.coupling import filter_groups
    from evoprune_tf.nn.surgery import prune_filters

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3), alpha=alpha, classes=5)
    groups = [g for g in filter_groups(model) if g.prunable]
    rng = np.random.default_rng(seed)
    yield "unpruned", model
    for i in range(count):
        keep = {}
        for g in groups:
            n = g.size
            kept = max(1, int(round(rng.uniform(0.1, 1.0) * n)))
            mask = np.zeros(n, bool)
            mask[rng.choice(n, kept, replace=False)] = True
            keep[g.name] = mask
        yield f"random{i}", prune_filters(model, keep)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", default=str(Path(tempfile.gettempdir()) / "evoprune-latency-table"))
    parser.add_argument("--out", default="")
    parser.add_argument("--quick", action="store_true", help="3 models, 96 px, alpha 0.35, 20 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.alpha, args.runs = 3, 0.35, 20

    import numpy as np

    from evoprune_tf.nn.flops import count_flops
    from evoprune_tf.report.latency import export_litert, keras_latency_ms, litert_enabled, litert_latency_ms
    from evoprune_tf.report.latency_lut import LatencyTable, spearman

    table = LatencyTable(args.table, runs=30)
    litert = litert_enabled("auto")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, net in _networks(args.alpha, args.size, args.models, args.seed):
            began = time.perf_counter()
            predicted = table.predict_ms(net)
            table_seconds = time.perf_counter() - began
            if litert:
                measured = litert_latency_ms(export_litert(net, Path(folder) / f"{name}.tflite"), threads=1,
                                             runs=args.runs, warmup=5)
            else:
                measured = keras_latency_ms(net, batch=1, runs=args.runs)
            rows.append({"model": name, "flops": count_flops(net).flops, "predicted_ms": predicted,
                         "measured_ms": measured, "table_seconds": table_seconds})
            print(f"{name}: FLOPs {rows[-1]['flops'] / 1e6:.1f} M, predicted {predicted:.3f} ms, "
                  f"measured {measured:.3f} ms (table {table_seconds:.1f} s)", flush=True)
    p = [r["predicted_ms"] for r in rows]
    m = [r["measured_ms"] for r in rows]
    f = [r["flops"] for r in rows]
    error = np.median(np.abs(np.asarray(p) - np.asarray(m)) / np.asarray(m)) * 100
    result = {"settings": vars(args), "backend": table.backend, "measured_with": "litert" if litert else "keras",
              "table_keys": len(table.entries), "spearman_predicted": spearman(p, m), "spearman_flops": spearman(f, m),
              "median_abs_error_pct": float(error), "rows": rows}
    print(f"\n| proxy | Spearman with measured ({result['measured_with']} b1 1 thread) |\n|---|---|\n"
          f"| latency table ({table.backend}, {len(table.entries)} keys) | {result['spearman_predicted']:.3f} |\n"
          f"| FLOPs | {result['spearman_flops']:.3f} |\n\nmedian |predicted - measured| / measured: {error:.1f}%")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
