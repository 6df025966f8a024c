"""One latency helper for every method: Keras latency, LiteRT export and LiteRT latency, and the table.

What is measured, and how (the same for every method's report):

* **Keras** (`keras_latency_ms`): the model's compiled ``predict_on_batch`` on one fixed
  batch (default 32 random samples), called ``warmup`` times untimed (the first call
  traces), then timed ``runs`` times with ``time.perf_counter``; the median in
  milliseconds per call. ``predict_on_batch`` times the network, not Python's
  per-layer dispatch of an eager ``model(x)`` call.
* **LiteRT** (`export_litert`, `litert_latency_ms`): the model's inference call
  (``training=False``) is traced once as a ``tf.function`` with a free batch dimension,
  its variables are frozen into constants, and
  ``tf.lite.TFLiteConverter.from_concrete_functions`` converts that (TensorFlow backend)
  into a ``.tflite`` file. This is the same network as ``from_keras_model`` gives,
  without the SavedModel that path writes first: 4-5 times faster
  (``benchmarks/litert_export.py``). ``ai_edge_litert.interpreter.Interpreter(model_path=...,
  num_threads=t)`` (XNNPACK delegate) then runs it at batch 1: ``warmup`` untimed
  ``invoke()`` calls, then the median of ``runs`` (at least 50) timed ones.
* **The table** (`latency_table`): per named model its FLOPs (``2 x MACs``,
  `evoprune_tf.nn.flops.count_flops` unless given), parameters, LiteRT latency at batch 1
  on 1 and 2 threads, Keras latency at batch 32, and each one's reduction in % against
  the baseline row (``unpruned``).

LiteRT is an optional extra (``pip install 'evoprune-tf[litert]'``): `require_litert`
fails in one line naming it, and `latency_table` with ``litert=False`` leaves the LiteRT
columns out.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoprune_tf.records import write_csv

__all__ = [
    "LITERT_INSTALL",
    "LiteRTNotInstalled",
    "export_litert",
    "keras_latency_ms",
    "keras_model_outputs",
    "latency_markdown",
    "latency_table",
    "litert_available",
    "litert_latency_ms",
    "litert_enabled",
    "litert_predict",
    "report_latency",
    "require_litert",
    "with_reductions",
    "write_latency_table",
]

#: The command that installs the LiteRT extra.
LITERT_INSTALL = "pip install 'evoprune-tf[litert]'"
#: Timed LiteRT runs per (model, threads); the issue asks for at least 50.
LITERT_RUNS = 50
#: Thread counts of the LiteRT columns.
LITERT_THREADS = (1, 2)
#: Batch of the Keras column.
KERAS_BATCH = 32
#: Measured columns whose reduction in % against the baseline is added.
MEASURED = ("flops", "params", "litert_ms_b1_t1", "litert_ms_b1_t2", "keras_ms_b32")


class LiteRTNotInstalled(ImportError):
    """LiteRT was asked for and ``ai-edge-litert`` is not importable."""


def litert_available() -> bool:
    """Whether the LiteRT interpreter (``ai-edge-litert``) can be imported."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def require_litert(what: str = "LiteRT latency") -> None:
    """Fail in one line, naming the extra, when LiteRT is not installed.

    Args:
        what: What asked for LiteRT (starts the message).

    Raises:
        LiteRTNotInstalled: ``ai-edge-litert`` cannot be imported.
    """
    if not litert_available():
        raise LiteRTNotInstalled(f"{what} needs ai-edge-litert, which is not installed: {LITERT_INSTALL}")


def _input_shape(model: Any) -> tuple[int, ...]:
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"model {model.name!r} has input shape {shape}; expected a fully static sample shape")
    return tuple(int(d) for d in shape)


def _random_batch(shape: Sequence[int], batch: int, seed: int, dtype: Any = "float32") -> np.ndarray:
    """Standard-normal floats; zeros for an integer input (token ids: 0 is a valid index of any embedding)."""
    dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    if np.issubdtype(dtype, np.integer):
        return np.zeros((int(batch), *shape), dtype)
    return np.random.default_rng(seed).standard_normal((int(batch), *shape)).astype(dtype)


def _input_dtype(model: Any) -> str:
    return str(getattr(model.inputs[0], "dtype", "float32") or "float32")


def keras_latency_ms(model: Any, x: np.ndarray | None = None, *, batch: int = KERAS_BATCH, runs: int = 20,
                     warmup: int = 2, seed: int = 0) -> float:
    """Median Keras latency of one ``predict_on_batch`` call, in milliseconds.

    Args:
        model: A Keras model.
        x: The batch to time (default: ``batch`` standard-normal samples of the model's input shape).
        batch: Batch size of the random batch (ignored when ``x`` is given).
        runs: Timed calls.
        warmup: Untimed calls first (the first one traces the function).
        seed: Seed of the random batch.

    Returns:
        The median milliseconds per call.
    """
    if x is None:
        x = _random_batch(_input_shape(model), batch, seed, _input_dtype(model))
    for _ in range(max(1, int(warmup))):
        model.predict_on_batch(x)
    times = []
    for _ in range(max(1, int(runs))):
        began = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - began)
    return 1000.0 * float(np.median(times))


def export_litert(model: Any, path: str | Path) -> Path:
    """Convert a Keras model to LiteRT and write the ``.tflite`` file.

    Args:
        model: A Keras model (TensorFlow backend).
        path: The file to write (parents created).

    Returns:
        The path written.

    Raises:
        ValueError: One line when Keras does not run on TensorFlow (the converter needs it).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"LiteRT export needs the TensorFlow backend of Keras; this process runs "
                         f"{keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow or turn report.litert off)")
    import tensorflow as tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every captured variable
        path.write_bytes(_litert_converter(model, tf).convert())
    return path


def _litert_converter(model: Any, tf: Any) -> Any:
    """A converter of the model's frozen inference function (batch left free).

    ``from_keras_model`` writes a whole SavedModel first (most of its 6-11 s on a small
    MobileNet); freezing the traced call gives the same ``.tflite`` 4-5 times faster.
    TensorFlow calls a converter without a ``trackable_obj`` its deprecated path and warns
    on every call (passing the model brings the slow path back): that one warning is
    dropped. Where TensorFlow's freezing helper is missing, ``from_keras_model`` it is.
    """
    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    except ImportError:  # pragma: no cover - a TensorFlow without the helper
        return tf.lite.TFLiteConverter.from_keras_model(model)
    specs = [tf.TensorSpec((None, *tuple(t.shape)[1:]), t.dtype) for t in model.inputs]
    single = len(specs) == 1

    def infer(*inputs: Any) -> Any:
        return model(inputs[0] if single else list(inputs), training=False)

    frozen = convert_variables_to_constants_v2(tf.function(infer).get_concrete_function(*specs))
    with _without_trackable_obj_warning():
        return tf.lite.TFLiteConverter.from_concrete_functions([frozen])


@contextlib.contextmanager
def _without_trackable_obj_warning() -> Any:
    """Drop absl's "Please consider providing the trackable_obj argument" warning, and nothing else."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return "trackable_obj" not in record.getMessage()

    logger = logging.getLogger("absl")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _interpreter(path: str | Path, threads: int) -> Any:
    require_litert()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=int(threads))
    interpreter.allocate_tensors()
    return interpreter


def litert_predict(path: str | Path, x: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Run a ``.tflite`` file on a batch, one sample at a time (its batch-1 signature).

    Args:
        path: The ``.tflite`` file.
        x: Inputs, batch first.
        threads: Interpreter threads.

    Returns:
        The stacked outputs of the first output tensor.
    """
    interpreter = _interpreter(path, threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for sample in np.asarray(x, dtype=inp["dtype"]):
        interpreter.set_tensor(inp["index"], sample[None])
        interpreter.invoke()
        results.append(np.array(interpreter.get_tensor(out["index"])[0]))
    return np.stack(results)


def litert_latency_ms(path: str | Path, *, threads: int = 1, runs: int = LITERT_RUNS, warmup: int = 5,
                      seed: int = 0) -> float:
    """Median LiteRT latency at batch 1, in milliseconds.

    Args:
        path: The ``.tflite`` file.
        threads: Interpreter threads (``num_threads``).
        runs: Timed ``invoke()`` calls.
        warmup: Untimed calls first.
        seed: Seed of the random input.

    Returns:
        The median milliseconds per ``invoke()``.
    """
    interpreter = _interpreter(path, threads)
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], _random_batch(tuple(inp["shape"][1:]), 1, seed, inp["dtype"]))
    for _ in range(max(1, int(warmup))):
        interpreter.invoke()
    times = []
    for _ in range(max(1, int(runs))):
        began = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - began)
    return 1000.0 * float(np.median(times))


def with_reductions(rows: list[dict], baseline: str = "unpruned", keys: Sequence[str] = MEASURED) -> list[dict]:
    """Add ``<key>_reduction_pct`` columns: ``100 * (1 - value / baseline value)``, rounded to 0.01.

    Args:
        rows: Dicts with ``model`` and the measured keys (a key missing from the baseline is skipped).
        baseline: The ``model`` of the reference row.
        keys: The columns to compare.

    Returns:
        The same rows, edited in place.

    Raises:
        ValueError: No row is named ``baseline``.
    """
    base = next((r for r in rows if r["model"] == baseline), None)
    if base is None:
        raise ValueError(f"no row named {baseline!r} among {[r['model'] for r in rows]}; expected the baseline row")
    for key in keys:
        if key not in base:
            continue
        for row in rows:
            row[f"{key}_reduction_pct"] = round(100.0 * (1.0 - row[key] / base[key]), 2) if base[key] else 0.0
    return rows


def _measure(name: str, model: Any, *, flops: float | None, litert: bool, export_dir: Path | None,
             runs: int, keras_runs: int, seed: int) -> dict:
    from evoprune_tf.nn.flops import count_flops

    row: dict[str, Any] = {"model": name,
                           "flops": int(count_flops(model).flops if flops is None else flops),
                           "params": int(model.count_params())}
    if litert:
        path = export_litert(model, Path(export_dir) / f"{name}.tflite")
        for threads in LITERT_THREADS:
            row[f"litert_ms_b1_t{threads}"] = round(litert_latency_ms(path, threads=threads, runs=runs, seed=seed), 4)
        x = _random_batch(_input_shape(model), 4, seed + 1, _input_dtype(model))
        reference = keras_model_outputs(model, x)
        row["litert_max_abs_diff"] = float(np.abs(litert_predict(path, x) - reference).max())
        row["tflite"], row["tflite_bytes"] = str(path), path.stat().st_size
    row[f"keras_ms_b{KERAS_BATCH}"] = round(keras_latency_ms(model, runs=keras_runs, seed=seed), 4)
    return row


def keras_model_outputs(model: Any, x: np.ndarray) -> np.ndarray:
    """The Keras model's first output on ``x`` (inference mode), as NumPy."""
    import keras

    out = model(x, training=False)
    return np.asarray(keras.ops.convert_to_numpy(out[0] if isinstance(out, (list, tuple)) else out))


def latency_table(models: Mapping[str, Any], *, baseline: str = "unpruned", litert: bool = True,
                  export_dir: str | Path | None = None, flops: Mapping[str, float] | None = None,
                  runs: int = LITERT_RUNS, keras_runs: int = 20, seed: int = 0) -> list[dict]:
    """The latency table of named models: FLOPs, parameters, latencies and their reductions.

    Args:
        models: Name -> Keras model, the ``baseline`` among them (any order; rows follow it).
        baseline: The row the reductions are relative to.
        litert: Export each model to ``<export_dir>/<name>.tflite`` and time it with LiteRT
            (batch 1, 1 and 2 threads); LiteRT must be installed (checked first).
        export_dir: Where the ``.tflite`` files go (required with ``litert``).
        flops: Name -> FLOPs to use instead of counting them (e.g. a network count that
            leaves a preprocessing layer out); missing names are counted.
        runs: Timed LiteRT runs per model and thread count.
        keras_runs: Timed Keras calls at batch 32.
        seed: Seed of the random inputs.

    Returns:
        One dict per model: ``model``, ``flops``, ``params``, ``litert_ms_b1_t1``,
        ``litert_ms_b1_t2``, ``litert_max_abs_diff`` (LiteRT vs Keras outputs on 4
        random samples), ``tflite``, ``tflite_bytes`` (with ``litert``), ``keras_ms_b32``,
        and ``<column>_reduction_pct`` for each measured column.

    Raises:
        LiteRTNotInstalled: ``litert`` without ``ai-edge-litert`` (before any model is timed).
        ValueError: ``baseline`` not among the models, or ``litert`` without ``export_dir``.
    """
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(models)}")
    if litert:
        require_litert()
        if export_dir is None:
            raise ValueError("latency_table(litert=True) needs export_dir, the folder of the .tflite files")
    flops = dict(flops or {})
    rows = [_measure(name, model, flops=flops.get(name), litert=litert,
                     export_dir=Path(export_dir) if export_dir is not None else None,
                     runs=runs, keras_runs=keras_runs, seed=seed) for name, model in models.items()]
    return with_reductions(rows, baseline)


_HEADINGS = {"flops": "FLOPs (M)", "params": "params (k)", "litert_ms_b1_t1": "LiteRT b1 1 thread (ms)",
             "litert_ms_b1_t2": "LiteRT b1 2 threads (ms)", "keras_ms_b32": "Keras b32 (ms)"}


def latency_markdown(rows: list[dict]) -> str:
    """The latency table as Markdown: each measured column, then its reduction in %."""
    keys = [k for k in MEASURED if k in rows[0]]
    head = ["model"] + [_HEADINGS[k] for k in keys] + [f"{_HEADINGS[k].split(' (')[0]} -%" for k in keys]
    scale = {"flops": 1e6, "params": 1e3}
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"]] + [f"{r[k] / scale.get(k, 1.0):.2f}" for k in keys]
        cells += [f"{r.get(f'{k}_reduction_pct', 0.0):.1f}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_latency_table(rows: list[dict], folder: str | Path, stem: str = "latency") -> dict[str, Path]:
    """Write the table as ``<stem>.csv`` and ``<stem>.md`` in ``folder``.

    Returns:
        ``{"csv": path, "markdown": path}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"csv": folder / f"{stem}.csv", "markdown": folder / f"{stem}.md"}
    fields = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(files["csv"], fields, [[r.get(k) for k in fields] for r in rows])
    files["markdown"].write_text(latency_markdown(rows))
    return files


def litert_enabled(setting: Any, out: Any = None) -> bool:
    """Resolve a ``report.litert`` setting; one line on ``out`` says why LiteRT is off when it is.

    Args:
        setting: ``"auto"`` (LiteRT when installed and Keras runs on TensorFlow), True
            (required: fails in one line naming the extra) or False.
        out: Stream for the line (default: none printed).

    Returns:
        Whether to export and time LiteRT models.

    Raises:
        LiteRTNotInstalled: ``setting`` is True and ``ai-edge-litert`` is missing.
    """
    import keras

    def say(text: str) -> None:
        if out is not None:
            print(text, file=out)

    if setting is False:
        say("LiteRT export off (report.litert = false): Keras latency only")
        return False
    if setting is True:
        require_litert("report.litert = true")
        return True
    if not litert_available():
        say(f"LiteRT latency skipped: ai-edge-litert is not installed ({LITERT_INSTALL}); Keras latency only")
        return False
    if keras.backend.backend() != "tensorflow":
        say(f"LiteRT latency skipped: its converter needs Keras on TensorFlow, not {keras.backend.backend()!r}")
        return False
    return True


def report_latency(models: Mapping[str, Any], *, setting: Any, folder: str | Path, flops: Mapping[str, float],
                   seed: int = 0, out: Any = None) -> tuple[list[dict], dict[str, Path]]:
    """The latency part of a method's final report: table files and, with LiteRT, the ``.tflite`` files.

    Args:
        models: Name -> deployable Keras model, ``"unpruned"`` among them.
        setting: ``report.litert`` (see `litert_enabled`).
        folder: The report folder: ``latency.csv``, ``latency.md`` and ``litert/<name>.tflite`` go there.
        flops: Name -> the method's FLOPs count of that model (the table's FLOPs column).
        seed: Seed of the random inputs.
        out: Stream for the line saying LiteRT is off, when it is.

    Returns:
        ``(rows, files)``: the `latency_table` rows and ``{"csv", "markdown", "<name>.tflite"...}`` paths.
    """
    litert = litert_enabled(setting, out)
    rows = latency_table(models, litert=litert, export_dir=Path(folder) / "litert", flops=flops, seed=seed)
    files = write_latency_table(rows, folder)
    files.update({f"{r['model']}.tflite": Path(r["tflite"]) for r in rows if "tflite" in r})
    return rows, files
