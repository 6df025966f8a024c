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
from typing import Any

import numpy as np
from deap import base, creator, tools

import operators
from evoprune_tf.config import OperatorsConfig, with_genome_length

__all__ = ["build_toolbox", "fitness_class", "individual_class", "class_suffix"]


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


def build_toolbox(ops: OperatorsConfig, evaluator: Any) -> base.Toolbox:
    """A toolbox for an evaluator's encoding and objectives.

    Args:
        ops: operator names and options (``operators.available()`` lists them).
        evaluator: a `PopulationEvaluator` (or anything with ``encoding.genome_length``,
            ``weights``, ``evaluate`` and ``map``).

    Returns:
        A `deap.base.Toolbox` with ``individual``, ``population``, ``mate``, ``mutate``,
        ``select``, ``survive`` (environmental selection of NSGA loops), ``evaluate``,
        ``map`` and ``clone``.
    """
    length = evaluator.encoding.genome_length
    individual = individual_class(evaluator.weights)
    toolbox = base.Toolbox()
    init, init_options = operators.resolve(with_genome_length(ops.init, length), "init")
    toolbox.register("individual", init, individual, length, **init_options)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    operators.register_on(toolbox, "mate", "crossover", with_genome_length(ops.mate, length))
    operators.register_on(toolbox, "mutate", "mutation", with_genome_length(ops.mutate, length))
    operators.register_on(toolbox, "select", "selection", with_genome_length(ops.select, length))
    operators.register_on(toolbox, "survive", "selection", with_genome_length(ops.survive, length))
    toolbox.register("evaluate", evaluator.evaluate)
    toolbox.register("map", evaluator.map)
    return toolbox
