"""A quiet start: no TensorFlow absl / cuInit lines, no telemetry, no MLflow table-creation logs.

`quiet_startup` runs when ``evoprune_tf`` is imported (the library) and again at the
start of every command (the CLI, the experiment scripts, the demo); it only sets what
the user has not set (``os.environ.setdefault``) and is idempotent. TensorFlow's own
messages that are not known start-up noise still reach stderr (`quiet_tensorflow`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["quiet_startup", "quiet_tensorflow"]


#: TensorFlow start-up lines that tell a CPU user nothing (written by C++ straight to fd 2).
_TF_NOISE = (
    "All log messages before absl::InitializeLog",
    "oneDNN custom operations are on",
    "cudart_stub.cc",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation_placer.cc",
    "TF-TRT Warning",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


def quiet_startup() -> None:
    """No telemetry, and no start-up noise from TensorFlow or a new MLflow store on the terminal.

    Idempotent; environment variables the user set are kept.

    A new SQLite store logs its table creation at INFO on stderr, which would break the
    one-line error contract of bad input; MLflow's own warnings still show.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NoRetracingWarning) for f in tf_logger.filters):
        tf_logger.addFilter(_NoRetracingWarning())
    quiet_tensorflow()


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning.

    Every filter-pruning genome is a new, smaller model, so its first ``predict`` traces
    by design; the warning says nothing a user can act on. Other TensorFlow warnings pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up noise (absl, cuInit, oneDNN lines) off the terminal.

    ``TF_CPP_MIN_LOG_LEVEL`` does not reach what TensorFlow's C++ writes before its
    logging is initialised. So the first ``import tensorflow`` (and ``import keras``)
    runs with file descriptor 2 captured, including, without an NVIDIA driver, the
    device scan that logs the cuInit error;
    afterwards every captured line that is not known noise is written back to stderr,
    so real errors still show. Does nothing when TensorFlow is already imported.
    """
    if "keras" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


class _QuietTensorFlowFinder:
    """Import hook: the imports of the ``tensorflow`` and ``keras`` packages run with fd 2 filtered."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in ("tensorflow", "keras"):  # keras' import loads more of TensorFlow's libraries
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader:
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        import tempfile

        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
                if module.__name__ == "tensorflow" and not Path("/proc/driver/nvidia").exists():
                    # The device scan (and its cuInit error without a driver) happens once,
                    # here, inside the capture, instead of at the first operation.
                    module.config.list_physical_devices("GPU")
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                kept = [line for line in captured.read().decode(errors="replace").splitlines()
                        if line.strip() and not any(noise in line for noise in _TF_NOISE)]
                if kept:
                    print("\n".join(kept), file=sys.stderr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)
