"""LiteRT export: `export_litert` (frozen concrete function) against `from_keras_model`, side by side.

Run from a source checkout: ``python benchmarks/litert_export.py`` (``--family``, ``--size``,
``--alpha``, ``--repeats``). For each converter, on one Keras Applications network with
random weights: the seconds of each conversion (first one included: both trace the model
anew each time), the ``.tflite`` size, and the largest difference between the file's
outputs and the Keras model's on 4 random images. Results: docs/latency.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="MobileNetV2", help="a keras.applications class (MobileNetV2)")
    parser.add_argument("--size", type=int, default=32, help="input size in pixels (32)")
    parser.add_argument("--alpha", type=float, default=0.35, help="width multiplier, for the MobileNets (0.35)")
    parser.add_argument("--repeats", type=int, default=3, help="conversions per converter (3)")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from evoprune_tf.report.latency import export_litert, keras_model_outputs, litert_predict

    options = {"alpha": args.alpha} if "MobileNet" in args.family else {}
    model = getattr(keras.applications, args.family)(input_shape=(args.size, args.size, 3), weights=None,
                                                    classes=3, **options)
    x = np.random.default_rng(0).random((4, args.size, args.size, 3)).astype(np.float32)
    reference = keras_model_outputs(model, x)

    def keras_path(path: Path) -> Path:
        with contextlib.redirect_stdout(io.StringIO()):
            path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        return path

    converters = {"export_litert (frozen concrete function)": lambda p: export_litert(model, p),
                  "TFLiteConverter.from_keras_model": keras_path}
    print(f"{args.family} at {args.size} px, {model.count_params():,} parameters, {args.repeats} conversions each")
    print("| converter | seconds per conversion (median, min-max) | .tflite bytes | max abs diff to Keras |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, convert in converters.items():
            seconds = []
            for i in range(args.repeats):
                began = time.perf_counter()
                path = convert(Path(folder) / f"{i}.tflite")
                seconds.append(time.perf_counter() - began)
            diff = float(np.abs(litert_predict(path, x) - reference).max())
            print(f"| {name} | {statistics.median(seconds):.2f} ({min(seconds):.2f}-{max(seconds):.2f}) "
                  f"| {path.stat().st_size:,} | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
