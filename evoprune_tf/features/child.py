"""Backbone features extracted in a child process on Keras' TensorFlow backend.

Keras picks its backend once per process, when it is first imported. Heads train about
twice as fast on JAX here, but MobileNetV2 extracts features about seven times slower
on JAX than on TensorFlow. So a process running on JAX (or any backend but TensorFlow)
hands a feature-cache miss to ``python -m evoprune_tf.features.child JOB.json`` with
``KERAS_BACKEND=tensorflow``: the parent writes the distinct images to a temporary
``.npz``, the child builds the backbone, runs it and writes the very cache entry that
in-process extraction would write (same key, same file, same checksum), and the parent
reads it back (`evoprune_tf.features.extract.extract_features_with_info`).

The child continues the parent's Python and NumPy random streams (before or after its
own ``import keras``, which draws from them, as the parent would have), so a random-init
backbone (``weights=None``) draws the same initial weights as in-process extraction on
TensorFlow would. It reports progress on its stdout as ``progress N`` lines (the parent
drives its own progress bar), input errors as one ``error TYPE MESSAGE`` line, and is
told to stop when its parent dies (Linux).

This module does not import Keras at import time: `process_backend` and
`backend_installed` are safe to call before the backend is chosen.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "ChildExtractionError",
    "backend_installed",
    "process_backend",
    "extract_in_child",
    "main",
]

#: Exceptions a child reports as input errors; the parent raises them again as they are.
_INPUT_ERRORS = {"ValueError": ValueError, "FileNotFoundError": FileNotFoundError, "RuntimeError": RuntimeError}


class ChildExtractionError(RuntimeError):
    """The child process failed for a reason other than bad input (crash, broken install)."""


class _NotOnTensorFlow(Exception):
    """The child's Keras is not on TensorFlow (not an input error: the parent falls back)."""


def backend_installed(name: str) -> bool:
    """Whether Keras' ``name`` backend can be imported, found without importing it.

    Args:
        name: ``"tensorflow"``, ``"jax"`` or ``"torch"``.

    Returns:
        True when the package is on the path (an import hook that refuses it counts as absent).
    """
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, or a half-imported module
        return False


def process_backend() -> str:
    """The Keras backend of this process: the one it runs on, or will run on once Keras is imported.

    Keras' own order, without importing Keras: the loaded Keras' backend; else
    ``KERAS_BACKEND``; else the ``backend`` of ``$KERAS_HOME/keras.json`` (default
    ``~/.keras/keras.json``); else ``"tensorflow"``.

    Returns:
        The backend name.
    """
    if "keras" in sys.modules:
        try:
            return str(sys.modules["keras"].backend.backend())
        except AttributeError:  # Keras is being imported right now
            pass
    env = os.environ.get("KERAS_BACKEND", "").strip()
    if env:
        return env
    home = pathlib.Path(os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))))
    try:
        configured = json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        configured = None
    return str(configured) if configured else "tensorflow"


def _rng_state() -> dict[str, Any]:
    """Python's and NumPy's global random states as JSON-able values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def extract_in_child(
    unique: np.ndarray,
    digests: Sequence[str],
    *,
    fields: Mapping[str, Any],
    key: str,
    weights: str | os.PathLike[str] | None,
    batch_size: int,
    path: pathlib.Path,
    progress: bool = True,
) -> float:
    """Extract the features of ``unique`` in a TensorFlow child process into the cache file ``path``.

    Args:
        unique: the distinct images, one per digest, in cache-table order.
        digests: their digests (`evoprune_tf.features.extract` computes them).
        fields: the cache key fields (backbone, options, weights identity, size, ...).
        key: the cache key.
        weights: ``"imagenet"``, a weights file or ``None``, as given to the extraction.
        batch_size: images per backbone call.
        path: the cache file to write (its folder is created).
        progress: show a progress bar over the images.

    Returns:
        The child's wall time in seconds.

    Raises:
        ValueError, FileNotFoundError, RuntimeError: an input error the child reported
            (unknown option, weights file of another architecture, ImageNet weights that
            cannot be downloaded), with the child's one-line message.
        ChildExtractionError: the child failed otherwise (its last stderr lines are in
            the message).
    """
    from evoprune_tf.progress import stage_progress  # a bar on a terminal, one line per stage in a log

    started = time.perf_counter()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if weights is not None and not (isinstance(weights, str) and weights == "imagenet"):
        weights = str(pathlib.Path(weights).expanduser().absolute())  # the child may resolve paths elsewhere
    with tempfile.TemporaryDirectory(prefix="evoprune-extract-") as scratch:
        images_file = pathlib.Path(scratch) / "images.npz"
        np.savez(images_file, images=np.ascontiguousarray(unique), digests=np.asarray(list(digests), dtype="<U64"))
        job = {
            "images": str(images_file), "fields": dict(fields), "key": key, "weights": weights,
            "batch_size": int(batch_size), "path": str(path.absolute()), "rng": _rng_state(),
            "parent_pid": os.getpid(), "keras_imported": "keras" in sys.modules,
        }
        job_file = pathlib.Path(scratch) / "job.json"
        job_file.write_text(json.dumps(job))
        env = _child_env()
        error_line = None
        with open(pathlib.Path(scratch) / "stderr.txt", "w+") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "evoprune_tf.features.child", str(job_file)],
                stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=True,
            )
            try:
                with stage_progress(len(unique), f"{fields['backbone']} features (TensorFlow)", enabled=progress,
                                    leave=True) as bar:
                    for line in process.stdout or ():
                        kind, _, rest = line.rstrip("\n").partition(" ")
                        if kind == "progress":
                            bar.update(int(rest))
                        elif kind == "error":
                            error_line = rest
                code = process.wait()
            finally:
                if process.poll() is None:  # interrupted (Ctrl-C, SIGTERM): no orphan left running
                    process.kill()
                    process.wait()
            stderr.seek(0)
            tail = [line for line in stderr.read().splitlines() if line.strip()][-5:]
    _raise_for_failure(error_line, code, path, tail)
    return time.perf_counter() - started


def _raise_for_failure(error_line: str | None, code: int, path: pathlib.Path, tail: Sequence[str]) -> None:
    """Raise the child's reported input error as it was, or `ChildExtractionError` for any other failure."""
    if error_line is not None:
        name, _, message = error_line.partition(" ")
        if name in _INPUT_ERRORS:
            raise _INPUT_ERRORS[name](message)
        raise ChildExtractionError(f"feature extraction child failed ({name}: {message})")
    if code != 0 or not path.is_file():
        raise ChildExtractionError(
            f"feature extraction child exited with status {code}" + (f": {' | '.join(tail)}" if tail else "")
        )


def _child_env() -> dict[str, str]:
    """This process's environment with Keras on TensorFlow and this package importable."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    # The child imports this package as the parent did, installed or not.
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # share a GPU with the parent's JAX
    return env


class _ProgressLines:
    """What `run_backbone` calls ``bar.update(n)`` on: one ``progress N`` line on stdout per batch."""

    def update(self, n: int) -> None:
        print(f"progress {n}", flush=True)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to stop this process when its parent dies (``PR_SET_PDEATHSIG``); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """The child: ``python -m evoprune_tf.features.child JOB.json`` (run by `extract_in_child`).

    Args:
        argv: ``[JOB.json]`` (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when the cache file is written, 2 after an error (reported
        on stdout as ``error TYPE MESSAGE``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("error ValueError expected one argument, the job file", flush=True)
        return 2
    try:
        job = json.loads(pathlib.Path(args[0]).read_text())
        _die_with_parent(int(job["parent_pid"]))
        if not job["keras_imported"]:  # in-process extraction would import Keras first, from this state
            _set_rng_state(job["rng"])
        import keras

        if keras.backend.backend() != "tensorflow":
            raise _NotOnTensorFlow(f"the child runs Keras on {keras.backend.backend()}; expected tensorflow")
        from evoprune_tf import backbones
        from evoprune_tf.features.cache import write_cache
        from evoprune_tf.features.forward import run_backbone

        with np.load(job["images"], allow_pickle=False) as archive:
            images, digests = archive["images"], archive["digests"]
        fields = job["fields"]
        if job["keras_imported"]:  # the parent's Keras import has drawn already
            _set_rng_state(job["rng"])
        model = backbones.build_backbone(fields["backbone"], weights=job["weights"], image_size=fields["image_size"],
                                         **fields["options"])
        batch = max(1, min(int(job["batch_size"]), len(images)))
        table = run_backbone(model, images, batch, _ProgressLines())
        write_cache(pathlib.Path(job["path"]), digests, table, fields, job["key"])
    except Exception as error:  # noqa: BLE001 - reported to the parent in one line, which decides
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error {type(error).__name__} {message}", flush=True)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover - run by extract_in_child
    sys.exit(main())
