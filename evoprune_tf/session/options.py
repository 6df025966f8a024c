"""What the MLflow run of any method is named, tagged and given as params; seeding.

``config`` is the run's `ExperimentConfig`; methods add their own tags
(`evoprune_tf.methods.Method.tags`).
"""

from __future__ import annotations

import random
import sys
from typing import Any, Mapping

import numpy as np

from evoprune_tf.session.run_names import run_name as _pattern_name
from evoprune_tf.features.child import process_backend

__all__ = ["flatten", "run_name", "run_tags", "seed_everything", "tracker_options"]


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's global RNGs, and Keras' when Keras is loaded."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "keras" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed % 2**32)
        keras.utils.set_random_seed(seed % 2**32)


def flatten(config: Any) -> dict[str, str]:
    """``section.key -> str(value)`` for MLflow params (values cut to MLflow's 6000 chars)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and not (prefix.startswith("operators.") and prefix.count(".") == 1):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = str(value)[:6000]

    walk("", config.to_dict())
    return flat


def run_tags(config: Any, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The MLflow tags that group and compare runs: algorithm, dataset, backbone, seed, Keras backend.

    ``evoprune.keras_backend`` is the Keras backend the run actually uses (after
    ``train.backend`` and ``KERAS_BACKEND`` were resolved; ``train.backend`` itself is a
    param). ``extra`` (the method's tags) is added and wins.
    """
    return {
        "evoprune.algorithm": config.algorithm.name,
        "evoprune.dataset": config.data.name or config.data.source,
        "evoprune.backbone": config.backbone.name,
        "evoprune.seed": str(config.seed),
        "evoprune.keras_backend": process_backend(),
        **dict(extra or {}),
    }


def run_name(config: Any, *, dataset: str = "") -> str:
    """The MLflow run name: ``tracking.run_name``, else ``<method>-s<seed>-<dataset>...`` (`run_names`)."""
    return _pattern_name(config, dataset=dataset)


def tracker_options(config: Any, *, tags: Mapping[str, str] | None = None, name: str | None = None,
                    title: str | None = None) -> dict[str, Any]:
    """Keyword arguments of `evoprune_tf.tracking.MLflowTracker` for a config's run.

    Names, tags and the title go through ``config.redact`` (no secret in the store).

    Args:
        config: the run's config.
        tags: the method's tags (added to `run_tags`).
        name: the run name (default `run_name`).
        title: the title of the run's plots (default ``<name>: <algorithm> (seed N)``).
    """
    c = config
    # Params, tags and names are what others see in the store: no secret goes there (`ExperimentConfig.redact`).
    return dict(
        uri=c.tracking.uri, experiment=c.tracking.experiment, run_name=c.redact(name or run_name(c)),
        params=flatten(c), tags={k: c.redact(v) for k, v in run_tags(c, tags).items()},
        title=c.redact(title or f"{c.name}: {c.algorithm.name} (seed {c.seed})"),
    )
