"""The Keras backend of a run: which one, and why (chosen at the edge, before Keras is imported).

Keras' backend is process-wide and fixed when Keras is first imported. `choose_backend`
decides from the method, ``train.backend`` and ``train.engine`` (``KERAS_BACKEND`` set by
the user wins; an already imported Keras keeps its backend) and changes nothing;
`apply_backend` sets ``KERAS_BACKEND`` for this process and the workers it spawns.
Measured on 2 CPU cores (README "Speed"): with compiled shapes reused, heads train as
fast on TensorFlow as on JAX or faster, and compile faster; MobileNetV2 features and
convolution fine-tuning are several times faster on TensorFlow. So ``auto`` takes
TensorFlow wherever it is installed and JAX where it is not (a GPU machine with JAX
only); ``train.backend = "jax"`` puts heads on JAX explicitly.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Mapping

from evoprune_tf.features.child import backend_installed, process_backend
from evoprune_tf.train.config import BACKENDS

__all__ = ["BackendChoice", "apply_backend", "choose_backend", "fine_tunes_convolutions"]

#: What installs each backend, for the one-line error of an explicit choice.
_BACKEND_INSTALL = {"jax": 'pip install "evoprune-tf[jax]"', "tensorflow": "pip install tensorflow (the core install)"}
_BACKEND_TITLE = {"jax": "JAX", "tensorflow": "TensorFlow"}
#: The choice `use_backend` made in this process (it set ``KERAS_BACKEND`` to it).
_APPLIED: "BackendChoice | None" = None


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """The Keras backend of a run and why.

    Attributes:
        backend: the backend the run uses (``"tensorflow"``, ``"jax"``, ...).
        reason: why, in a few words (the environment, ``train.backend``, the auto rule,
            or Keras already imported).
        wanted: what ``train.backend`` alone would pick; differs from ``backend`` when
            ``KERAS_BACKEND`` or an earlier import decided.
        decided_by: ``"environment"`` (``KERAS_BACKEND`` set by the user), ``"keras"``
            (Keras already imported) or ``"config"`` (``train.backend``: `use_backend`
            sets ``KERAS_BACKEND`` to it).
    """

    backend: str
    reason: str
    wanted: str
    decided_by: str = "config"

    @property
    def line(self) -> str:
        """One line for the run's output: ``Keras backend: jax (why)``."""
        return f"Keras backend: {self.backend} ({self.reason})"


def fine_tunes_convolutions(method: str) -> bool:
    """True when the method ``algorithm.name`` selects fine-tunes convolutions inside the backbone.

    Those (DeepPruningES, TASCNet: `evoprune_tf.methods.Method.fine_tunes_convolutions`)
    run faster on TensorFlow here; every other method trains heads on cached features.
    An unknown name is False (validation reports it).
    """
    from evoprune_tf.methods import get_method

    try:
        return get_method(method).fine_tunes_convolutions
    except ValueError:
        return False


def _wanted_backend(method: str, requested: str, engine: str, installed: Any) -> tuple[str, str]:
    """What ``train.backend`` picks for a method, and why (an explicit missing backend is a ValueError)."""
    if requested not in BACKENDS:
        raise ValueError(f"train.backend={requested!r}; expected 'auto', 'tensorflow' or 'jax'")
    if requested != "auto":
        if not installed(requested):
            raise ValueError(f"train.backend={requested!r} but {_BACKEND_TITLE[requested]} is not installed; "
                             f"expected it installed: {_BACKEND_INSTALL[requested]}")
        return requested, f"train.backend={requested!r}"
    if installed("tensorflow") or not installed("jax"):
        if fine_tunes_convolutions(method):
            return "tensorflow", f"auto: {method} fine-tunes convolutions, faster on TensorFlow"
        if engine == "numpy":  # heads train in NumPy: Keras only extracts features and exports
            return "tensorflow", "auto: the NumPy engine trains the heads; TensorFlow extracts features fastest"
        return "tensorflow", ("auto: on CPU heads train as fast on TensorFlow as on JAX or faster, and features "
                              "extract faster; train.backend='jax' for a GPU with JAX")
    if fine_tunes_convolutions(method):
        return "jax", f"auto: {method} runs on JAX because TensorFlow is not installed"
    return "jax", "auto: TensorFlow is not installed; features are extracted on JAX"


def choose_backend(
    method: str,
    requested: str = "auto",
    engine: str = "keras",
    *,
    environ: Mapping[str, str] | None = None,
    loaded: str | None = None,
    installed: Any = None,
) -> BackendChoice:
    """Which Keras backend a run uses, and why; changes nothing.

    In order: ``KERAS_BACKEND`` set in the environment wins (the user chose); Keras
    already imported keeps its backend (it is fixed per process); else ``train.backend``:
    ``"tensorflow"`` or ``"jax"`` as asked, ``"auto"`` TensorFlow for every method when
    it is installed (the reason names why for the method), JAX when only JAX is.

    Args:
        method: ``algorithm.name``.
        requested: ``train.backend``.
        engine: ``train.engine``.
        environ: the environment (default ``os.environ``).
        loaded: the backend of an already imported Keras (default: looked up; ``""``
            means not imported).
        installed: ``installed(name) -> bool`` (default: the package can be found).

    Returns:
        The `BackendChoice`.

    Raises:
        ValueError: an unknown ``requested`` value, or an explicit backend that is not
            installed while ``KERAS_BACKEND`` is unset (one line naming what installs it).
    """
    environ = os.environ if environ is None else environ
    installed = backend_installed if installed is None else installed
    if loaded is None:
        loaded = process_backend() if "keras" in sys.modules else ""
    env = str(environ.get("KERAS_BACKEND", "")).strip()
    ours = _APPLIED is not None and env == _APPLIED.backend
    if env and not ours:
        wanted = requested if requested in BACKENDS and requested != "auto" else env
        note = f"; train.backend={requested!r} not applied" if wanted != env else ""
        return BackendChoice(loaded or env, f"KERAS_BACKEND={env} is set in the environment{note}", wanted,
                             "environment")
    wanted, why = _wanted_backend(method, requested, engine, installed)
    if loaded:
        if loaded == wanted:
            return BackendChoice(loaded, why + (", as an earlier run in this process chose" if ours else ""),
                                 wanted, "keras")
        return BackendChoice(loaded, f"Keras was already imported on {loaded} and keeps it in this process; "
                                     f"{why} means {wanted}: set KERAS_BACKEND={wanted} before Keras is first "
                                     "imported to use it", wanted, "keras")
    return BackendChoice(wanted, why, wanted)


def apply_backend(choice: BackendChoice) -> BackendChoice:
    """Make a `BackendChoice` decided by the config this process's backend, if Keras is not imported yet.

    Sets ``KERAS_BACKEND`` (read by Keras' first import, inherited by spawned workers
    and forwarded to Ray workers). A choice decided by the environment or by an
    imported Keras changes nothing.

    Args:
        choice: from `choose_backend`.

    Returns:
        ``choice``.
    """
    global _APPLIED
    if choice.decided_by == "config" and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = choice.backend
        _APPLIED = choice
    return choice
