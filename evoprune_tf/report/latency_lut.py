"""Predicted latency from a per-layer lookup table measured once on this machine (NetAdapt's method).

NetAdapt (Yang et al., 2018) predicts a network's latency as the sum of its layers'
latencies, each read from a table measured once on the target device per layer and
width. `LatencyTable` does that for Keras models:

* **What is summed.** Every layer that does the arithmetic: convolutions (1-D/2-D/3-D,
  transposed), depthwise and separable convolutions and ``Dense`` layers, found through
  nested models. Element-wise layers (batch norm, activations, adds) are left out: the
  LiteRT converter fuses batch norm and activations into the convolutions, and adds are
  cheap next to them. `spearman` on the final models says how well the sum ranks them.
* **The key** of a layer is its class, its input's spatial shape, its input and output
  channel counts *rounded up to a width bucket*, and the configuration that changes its
  cost (kernel, strides, padding, dilation, groups, depth multiplier, bias). Buckets are
  four per octave (4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ...): a pruned width is charged as
  the next bucket, at most 25% above it, so a search touches few distinct keys.
* **How a key is measured.** A one-layer model with random weights at the bucketed
  widths, timed like the report times whole models (`evoprune_tf.report.latency`): with
  the LiteRT interpreter at batch 1 on ``threads`` threads when ``ai-edge-litert`` is
  installed and Keras runs on TensorFlow, else Keras ``predict_on_batch`` at batch 1.
  The table says which (``backend``).
* **Stored** as JSON in ``<folder>/<machine>.json``, where the machine name hashes the
  CPU model, the core count, the backend and the thread count, so a table is reused by
  every later run on the same machine and never by another machine. Keys are measured
  lazily, the first time a model needs them, and written at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COSTLY_LAYERS", "LatencyTable", "bucket", "layer_key", "spearman"]

#: Layer classes whose latency the table sums (everything else is treated as free).
COSTLY_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                 "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "Dense")
#: Configuration entries that change a layer's cost (the rest, e.g. initialisers, do not).
_COST_CONFIG = ("kernel_size", "strides", "padding", "dilation_rate", "groups", "depth_multiplier", "use_bias")
_FORMAT = 1


def bucket(channels: int) -> int:
    """The smallest width bucket at least ``channels``: 1, 2, 3, then four per octave (4, 5, 6, 7, 8, 10, ...).

    Args:
        channels: A channel count (at least 1).

    Returns:
        The bucketed count.

    Raises:
        ValueError: ``channels`` below 1.
    """
    c = int(channels)
    if c < 1:
        raise ValueError(f"channels={channels!r}; expected a positive channel count")
    if c <= 4:
        return c
    step = 1 << (c.bit_length() - 3)  # four buckets per octave: [4, 5, 6, 7] * step
    return -(-c // step) * step


def _costly_layers(model: Any) -> Iterator[Any]:
    """The costly layers of ``model``, nested models walked through, each layer once."""
    seen: set[int] = set()

    def walk(m: Any) -> Iterator[Any]:
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if hasattr(layer, "layers") and type(layer).__name__ not in COSTLY_LAYERS:
                yield from walk(layer)
            elif type(layer).__name__ in COSTLY_LAYERS:
                yield layer

    yield from walk(model)


def layer_key(layer: Any) -> str:
    """The table key of a costly layer (see the module docstring), as a string.

    Args:
        layer: A built Keras layer of a class in `COSTLY_LAYERS`.

    Returns:
        ``"<class>|<spatial>|<in bucket>|<out bucket>|<cost config>"``.
    """
    shape = tuple(int(d) if d is not None else 0 for d in layer.input.shape[1:])
    out = int(layer.output.shape[-1])
    spatial, cin = shape[:-1], shape[-1]
    config = layer.get_config()
    cost = {k: config[k] for k in _COST_CONFIG if k in config}
    grouped = int(config.get("groups", 1) or 1) > 1
    cin_b, out_b = (cin, out) if grouped else (bucket(cin), bucket(out))
    return "|".join([type(layer).__name__, "x".join(map(str, spatial)), str(cin_b), str(out_b),
                     json.dumps(cost, sort_keys=True, default=list)])


def _one_layer_model(layer: Any, key: str) -> Any:
    """A model of one fresh layer like ``layer``, at the widths of ``key``."""
    import keras

    _, spatial, cin, out, _ = key.split("|", 4)
    config = dict(layer.get_config())
    config.pop("name", None)
    if "filters" in config:
        config["filters"] = int(out)
    elif "units" in config:
        config["units"] = int(out)
    dims = tuple(int(d) for d in spatial.split("x") if d) if spatial else ()
    inputs = keras.Input(shape=(*dims, int(cin)))
    return keras.Model(inputs, type(layer).from_config(config)(inputs))


def _machine_name(backend: str, threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = f"{cpu}|{os.cpu_count()}|{platform.system()}|{backend}|{threads}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LatencyTable:
    """Per-layer latencies measured once on this machine; a model's predicted latency is their sum.

    Args:
        folder: Where the table's JSON file lives (None: memory only).
        threads: LiteRT interpreter threads.
        runs: Timed runs per key (the median is kept).
        backend: ``"auto"`` (LiteRT when it can run, else Keras), ``"litert"`` or ``"keras"``.

    Attributes:
        entries: Key -> milliseconds.
        measured: Keys measured by this object (not read from the file).
        backend: ``"litert"`` or ``"keras"``: what timed the entries.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, threads: int = 1, runs: int = 30,
                 backend: str = "auto") -> None:
        from evoprune_tf.report.latency import litert_enabled

        if backend not in ("auto", "litert", "keras"):
            raise ValueError(f"backend={backend!r}; expected 'auto', 'litert' or 'keras'")
        if int(threads) < 1 or int(runs) < 1:
            raise ValueError(f"threads={threads!r}, runs={runs!r}; expected positive integers")
        if backend == "auto":
            backend = "litert" if litert_enabled("auto") else "keras"
        elif backend == "litert":
            litert_enabled(True)
        self.backend, self.threads, self.runs = backend, int(threads), int(runs)
        self.path = Path(folder) / f"{_machine_name(backend, self.threads)}.json" if folder else None
        self.entries: dict[str, float] = {}
        self.measured: list[str] = []
        if self.path is not None and self.path.is_file():
            try:
                stored = json.loads(self.path.read_text())
                if stored.get("format") == _FORMAT and stored.get("backend") == backend:
                    self.entries = {str(k): float(v) for k, v in stored["entries"].items()}
            except (OSError, ValueError, KeyError, AttributeError):
                pass  # a torn or foreign file: measure again and overwrite it

    def layer_ms(self, model: Any) -> dict[str, float]:
        """Each costly layer's predicted latency (measuring the keys the table lacks).

        Args:
            model: A built Keras model (nested models are walked through).

        Returns:
            Layer name -> milliseconds.
        """
        keys = {layer.name: (layer, layer_key(layer)) for layer in _costly_layers(model)}
        missing = {key: layer for layer, key in keys.values() if key not in self.entries}
        for key, layer in missing.items():
            self.entries[key] = self._measure(layer, key)
            self.measured.append(key)
        if missing:
            self.save()
        return {name: self.entries[key] for name, (_, key) in keys.items()}

    def predict_ms(self, model: Any) -> float:
        """A model's predicted latency: the sum of its costly layers' table entries.

        Args:
            model: A built Keras model.

        Returns:
            Milliseconds.
        """
        return float(sum(self.layer_ms(model).values()))

    def _measure(self, layer: Any, key: str) -> float:
        from evoprune_tf.report.latency import export_litert, keras_latency_ms, litert_latency_ms

        single = _one_layer_model(layer, key)
        if self.backend == "keras":
            return keras_latency_ms(single, batch=1, runs=self.runs, warmup=2)
        with tempfile.TemporaryDirectory() as folder:
            path = export_litert(single, Path(folder) / "layer.tflite")
            return litert_latency_ms(path, threads=self.threads, runs=self.runs, warmup=3)

    def save(self) -> None:
        """Write the table atomically (nothing when it has no folder)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": _FORMAT, "backend": self.backend, "threads": self.threads,
                                   "entries": self.entries}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def spearman(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Spearman's rank correlation of predicted and measured latencies (NaN with fewer than 3 pairs).

    Args:
        predicted: Predicted latencies.
        measured: Measured latencies of the same models.

    Returns:
        The coefficient in [-1, 1], or NaN.
    """
    from scipy.stats import spearmanr

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    keep = np.isfinite(p) & np.isfinite(m)
    if keep.sum() < 3 or np.ptp(p[keep]) == 0 or np.ptp(m[keep]) == 0:
        return float("nan")
    return float(spearmanr(p[keep], m[keep]).statistic)
