"""Inputs every image method reads the same way: input size, backbone weights, images, operators.

``config`` is the run's `Any`.
"""

from __future__ import annotations

from typing import Any, Mapping

from evoprune_tf.backbones import backbone_info
from evoprune_tf.data import load_images
from evoprune_tf.data.synthetic import synthetic_images
from evoprune_tf.model_files import is_model_file, model_file_image_size

__all__ = ["head_tags", "head_title", "image_size", "load_run_images", "operator_specs", "weights_arg"]

def image_size(config: Any) -> int:
    """The input size of the backbone: ``data.image_size``, else the backbone's default (a model file's input)."""
    if config.data.image_size:
        return config.data.image_size
    if is_model_file(config.backbone.name):
        size = model_file_image_size(config.backbone.name)
        if size is None:
            raise ValueError(f"backbone.name={config.backbone.name!r}: its input is not a square image; "
                             "expected data.image_size to be set")
        return size
    return backbone_info(config.backbone.name).default_size


def weights_arg(config: Any) -> str | None:
    """``backbone.weights`` as `build_backbone` takes it (``None`` for random weights)."""
    weights = config.backbone.weights
    return None if weights.lower() in ("none", "") else weights


def load_run_images(source: str, config: Any, name: str | None = None, max_images: int = 0):
    """Images of a source (folder, ``.npz``, ``tfds:NAME``, ``builtin:synthetic``) split as the config says."""
    size = image_size(config)
    if source.startswith("builtin:"):
        if source != "builtin:synthetic":
            raise ValueError(f"unknown built-in dataset {source!r}; expected 'builtin:synthetic'")
        return synthetic_images(image_size=size, seed=config.seed)
    d = config.data
    per_class = d.max_per_class or None
    return load_images(
        source, image_size=size, val_fraction=d.val_fraction, test_fraction=d.test_fraction, seed=config.seed,
        skip_bad_images=d.skip_bad_images, max_per_class=per_class, name=name, progress=config.progress,
    )



def operator_specs(ops: Any) -> dict[str, Any]:
    """The operator specs of a config's ``[operators]``, per toolbox alias, for `evoprune_tf.search.toolbox.build_toolbox`."""
    return {alias: getattr(ops, alias) for alias in ("init", "mate", "mutate", "select", "survive")}


def _operator_spec(spec: Any) -> str:
    if isinstance(spec, Mapping):
        options = ",".join(f"{k}={v}" for k, v in spec.items() if k != "name")
        return f"{spec.get('name', '?')}({options})" if options else str(spec.get("name", "?"))
    return str(spec)


def head_tags(config: Any) -> dict[str, str]:
    """The head methods' MLflow tags besides the session's: encoding and operators."""
    aliases = ["init", "select", "mate", "mutate"] + (["survive"] if config.multi_objective else [])
    return {
        "evoprune.encoding": config.encoding.name,
        "evoprune.operators": " ".join(f"{a}={_operator_spec(getattr(config.operators, a))}" for a in aliases),
    }


def head_title(config: Any) -> str:
    """The title of a run's plots: ``<name>: <algorithm> / <encoding> (seed N)``."""
    return f"{config.name}: {config.algorithm.name} / {config.encoding.name} (seed {config.seed})"
