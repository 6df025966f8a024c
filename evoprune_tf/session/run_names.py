"""One short MLflow run name for every kind of run: method and seed first.

``<method>-s<seed>-<dataset>[-<encoding>][-<axis>=<value>...]``, for example
``steady_state-s4-flowers``, ``l1_selection-s4-flowers``,
``random_mask-s0-rps-neuron-active=0.05``, ``deep_pruning_es-s1-synthetic``,
``tascnet-s0-rps``. The method is ``algorithm.name``; the dataset ``data.name``, else
the last part of ``data.source`` (24 characters at most); the encoding only when it is not the method's usual
one (feature selection; filters for DeepPruningES); the ``axis=value`` pairs are a grid
cell's values other than the seed, method, dataset and encoding, each axis by the last
part of its key (a table axis spread into its keys; ``operators.mate.name`` as ``mate``). The UI's run table then sorts and reads the same way in single runs
and in grid cells; the full cell label stays in the tag ``evoprune.grid_label``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from evoprune_tf.records import flat_record

__all__ = ["MAX_RUN_NAME", "run_name", "dataset_label"]

#: Names are cut to this many characters (MLflow's UI truncates long ones anyway).
MAX_RUN_NAME = 100
#: Axes the name already shows (or that say nothing in it).
_SHOWN_AXES = {"seed", "algorithm.name", "data.name", "data.source", "encoding.name", "tracking.run_name"}
_USUAL_ENCODINGS = {"feature_selection", "filters"}


def dataset_label(config: Any) -> str:
    """``data.name``, else the last part of ``data.source`` (``tfds:rock_paper_scissors`` -> ``rock_paper_scissors``)."""
    if config.data.name:
        return config.data.name
    parts = [p for p in re.split(r"[:/\\]+", config.data.source.strip()) if p]
    return parts[-1] if parts else "data"


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text[:24]


def _short(key: str) -> str:
    """An axis by its last key part; ``operators.mate.name`` by ``mate``."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def run_name(config: Any, axes: Mapping[str, Any] | None = None, *, dataset: str = "") -> str:
    """The run's name: ``tracking.run_name`` when set (single runs), else the pattern above.

    Args:
        config: the run's config.
        axes: a grid cell's axis -> value (its own name always follows the pattern).
        dataset: the dataset's name when the caller knows it better than the config
            (TASCNet names its splits).
    """
    if axes is None and config.tracking.run_name:
        return config.tracking.run_name
    parts = [config.algorithm.name, f"s{config.seed}", (dataset or dataset_label(config))[:24]]
    if config.encoding.name not in _USUAL_ENCODINGS and config.algorithm.name != "tascnet":
        parts.append(config.encoding.name.replace("_pruning", ""))
    for key, value in flat_record(axes or {}).items():  # a table axis spread into dotted keys
        if key not in _SHOWN_AXES:
            parts.append(f"{_short(key)}={_value(value)}")
    return "-".join(parts)[:MAX_RUN_NAME]
