"""The DEAP toolbox of a run: individuals, population and operators registered by name.

`build_toolbox` returns a plain `deap.base.Toolbox` with ``individual``, ``population``,
``mate``, ``mutate``, ``select``, ``survive``, ``evaluate`` and ``map``: hand it to
`deap.algorithms.eaSimple` or to our loops alike, and swap an operator with one
``toolbox.register`` call.

Individuals are NumPy ``int8`` arrays subclassed by `deap.creator`. Fitness and
individual classes are created here at import time for every weight signature of up
to four objectives, so they pickle into spawned worker processes (which re-import this
module) and `creator.create` is never called twice for a name.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np
from deap import base, creator, tools

import operators

__all__ = ["build_toolbox", "fitness_class", "individual_class", "class_suffix", "DEFAULT_OPERATORS", "with_genome_length"]

#: The reference operators of EvoPruneDeepTL, by registry name and options.
DEFAULT_OPERATORS: dict[str, Any] = {
    "init": "random_density",
    "select": {"name": "hamming_farthest", "candidates": 3},
    "mate": {"name": "uniform", "indpb": 0.5},
    "mutate": {"name": "flip_one", "indpb": 0.07},
    "survive": "nsga2",
}

#: Toolbox alias -> operator kind in the registry.
_KINDS = {"mate": "crossover", "mutate": "mutation", "select": "selection", "survive": "selection"}


def with_genome_length(spec: Any, genome_length: int) -> Any:
    """Replace the option value ``"1/L"`` (one over the genome length) by its number."""
    if isinstance(spec, Mapping):
        return {k: (1.0 / genome_length if v == "1/L" else v) for k, v in spec.items()}
    return spec


def class_suffix(weights: tuple[float, ...]) -> str:
    """Name suffix of a weight signature, e.g. ``(1, -1, -1)`` -> ``"MaxMinMin"``."""
    return "".join("Max" if w > 0 else "Min" for w in weights)


def _ensure_classes(weights: tuple[float, ...]) -> tuple[type, type]:
    suffix = class_suffix(weights)
    fit_name, ind_name = f"Fitness{suffix}", f"Individual{suffix}"
    if not hasattr(creator, fit_name):
        creator.create(fit_name, base.Fitness, weights=tuple(float(w) for w in weights))
    if not hasattr(creator, ind_name):
        creator.create(ind_name, np.ndarray, fitness=getattr(creator, fit_name))
    return getattr(creator, fit_name), getattr(creator, ind_name)


for _n in range(1, 5):
    for _signs in itertools.product((1.0, -1.0), repeat=_n):
        _ensure_classes(_signs)


def fitness_class(weights: tuple[float, ...]) -> type:
    """The `deap.creator` fitness class for these weights (signs only: +1 max, -1 min)."""
    return _ensure_classes(tuple(1.0 if w > 0 else -1.0 for w in weights))[0]


def individual_class(weights: tuple[float, ...]) -> type:
    """The NumPy individual class whose fitness has these weights."""
    return _ensure_classes(tuple(1.0 if w > 0 else -1.0 for w in weights))[1]


def build_toolbox(evaluator: Any, operators_: Mapping[str, Any] | None = None, **overrides: Any) -> base.Toolbox:
    """A toolbox for an evaluator's encoding and objectives.

    Args:
        evaluator: a `PopulationEvaluator` (or anything with ``encoding.genome_length``,
            ``weights``, ``evaluate`` and ``map``).
        operators_: operator specs per toolbox alias (``init``, ``mate``, ``mutate``,
            ``select``, ``survive``): a registry name, a ``{"name": ..., option: ...}``
            dict or a callable (``operators.available()`` lists the names). Missing
            aliases take `DEFAULT_OPERATORS`; an option ``"1/L"`` becomes one over the
            genome length.
        **overrides: the same specs as keywords (``mate="two_point"``).

    Returns:
        A `deap.base.Toolbox` with ``individual``, ``population``, ``mate``, ``mutate``,
        ``select``, ``survive`` (environmental selection of NSGA loops), ``evaluate``,
        ``map`` and ``clone``.

    Raises:
        ValueError: an unknown alias, or an operator spec `operators.resolve` refuses.
    """
    specs = {**DEFAULT_OPERATORS, **(operators_ or {}), **overrides}
    unknown = sorted(set(specs) - set(DEFAULT_OPERATORS))
    if unknown:
        raise ValueError(f"toolbox aliases {unknown}; expected some of {sorted(DEFAULT_OPERATORS)}")
    length = evaluator.encoding.genome_length
    individual = individual_class(evaluator.weights)
    toolbox = base.Toolbox()
    init, init_options = operators.resolve(with_genome_length(specs["init"], length), "init")
    toolbox.register("individual", init, individual, length, **init_options)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    for alias, kind in _KINDS.items():
        operators.register_on(toolbox, alias, kind, with_genome_length(specs[alias], length))
    toolbox.register("evaluate", evaluator.evaluate)
    toolbox.register("map", evaluator.map)
    return toolbox
