"""A user's own trained model as the network to prune: ``backbone.name = "<path>.keras"``.

The model is loaded as saved, its own head included, and pruned whole by DeepPruningES. It
must be functional or Sequential (the coupling analysis reads its layer graph); a subclassed
model or a file Keras cannot load fails in one line before any image is read. Importing this
module is cheap: Keras is imported by `load_model_file` only.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from evoprune_tf.backbones import _first_line

__all__ = ["is_model_file", "load_model_file", "model_file_image_size"]


def is_model_file(name: Any) -> bool:
    """Whether a backbone name is a saved Keras model (a path ending in ``.keras``)."""
    return isinstance(name, (str, os.PathLike)) and str(name).lower().endswith(".keras")


def model_file_image_size(path: str | os.PathLike[str]) -> int | None:
    """The square input side of a saved ``.keras`` model, read from its config (no Keras import).

    Returns:
        The side in pixels, or ``None`` when the config names no square image input.
    """
    import json
    import zipfile

    try:
        with zipfile.ZipFile(pathlib.Path(path).expanduser()) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    found: list[list] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "InputLayer" and isinstance(node.get("config"), dict):
                found.append(node["config"].get("batch_shape") or node["config"].get("batch_input_shape") or [])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    shape = found[0] if found else config.get("config", {}).get("build_input_shape") or []
    if len(shape) == 4 and isinstance(shape[1], int) and shape[1] == shape[2]:
        return int(shape[1])
    return None


def load_model_file(path: str | os.PathLike[str]) -> Any:
    """Load a user's own model from a ``.keras`` file, to be pruned whole (its own head included).

    Args:
        path: A ``.keras`` file written by ``model.save``; custom layers must be registered
            (``keras.saving.register_keras_serializable``) before loading.

    Returns:
        The functional or Sequential ``keras.Model``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: One line: the file cannot be loaded, or it holds a subclassed model
            (no layer graph to analyse).
    """
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"model file '{file}' does not exist; expected a .keras file saved by model.save()")
    import keras

    try:
        model = keras.saving.load_model(file, compile=False)
    except Exception as error:  # noqa: BLE001 - Keras raises ValueError, TypeError, KeyError...
        raise ValueError(f"cannot load model file '{file}' ({type(error).__name__}: {_first_line(error, 200)}); "
                         "expected a .keras file saved by model.save() with its custom layers registered") from None
    from evoprune_tf.nn.coupling.graph import functional_view  # Keras is loaded by now

    if not isinstance(model, keras.Model) or functional_view(model) is None:
        raise ValueError(f"model file '{file}' holds a {type(model).__name__}, a model without a layer graph; "
                         "expected a functional or Sequential model")
    return model
