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

__all__ = ["build_toolbox", "fitness_class", "individual_class", "class_suffix", "DEFAULT_OPERATORS",
           "CARDINALITY_OPERATORS", "with_genome_length", "check_cardinality"]

#: The reference operators of EvoPruneDeepTL, by registry name and options.
DEFAULT_OPERATORS: dict[str, Any] = {
    "init": "random_density",
    "select": {"name": "hamming_farthest", "candidates": 3},
    "mate": {"name": "uniform", "indpb": 0.5},
    "mutate": {"name": "flip_one", "indpb": 0.07},
    "survive": "nsga2",
}

#: The defaults of a fixed-budget run (``active`` set): count-keeping operators
#: (`operators.cardinality`) in place of the reference's initialiser, crossover and mutation.
CARDINALITY_OPERATORS: dict[str, Any] = {
    "init": "random_k",
    "mate": {"name": "uniform_k", "indpb": 0.5},
    "mutate": {"name": "swap_one", "indpb": 1.0},
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


def build_toolbox(evaluator: Any, operators_: Mapping[str, Any] | None = None, *, active: int | float | None = None,
                  **overrides: Any) -> base.Toolbox:
    """A toolbox for an evaluator's encoding and objectives.

    Args:
        evaluator: a `PopulationEvaluator` (or anything with ``encoding.genome_length``,
            ``weights``, ``evaluate`` and ``map``).
        operators_: operator specs per toolbox alias (``init``, ``mate``, ``mutate``,
            ``select``, ``survive``): a registry name, a ``{"name": ..., option: ...}``
            dict or a callable (``operators.available()`` lists the names). Missing
            aliases take `DEFAULT_OPERATORS`; an option ``"1/L"`` becomes one over the
            genome length.
        active: a fixed budget: every genome has exactly this many genes on (a count,
            or a float fraction in ``(0, 1]`` of the genes). Missing aliases then take
            `CARDINALITY_OPERATORS` and the initialiser gets the count as ``k``; the
            initialiser, crossover and mutation must keep the count.
        **overrides: the same specs as keywords (``mate="two_point"``).

    Returns:
        A `deap.base.Toolbox` with ``individual``, ``population``, ``mate``, ``mutate``,
        ``select``, ``survive`` (environmental selection of NSGA loops), ``evaluate``,
        ``map`` and ``clone``.

    Raises:
        ValueError: an unknown alias, an operator spec `operators.resolve` refuses, a
            budget outside ``(0, genome length]``, or (with a budget) an operator that
            does not keep the count.
    """
    defaults = DEFAULT_OPERATORS if active is None else {**DEFAULT_OPERATORS, **CARDINALITY_OPERATORS}
    specs = {**defaults, **(operators_ or {}), **overrides}
    unknown = sorted(set(specs) - set(DEFAULT_OPERATORS))
    if unknown:
        raise ValueError(f"toolbox aliases {unknown}; expected some of {sorted(DEFAULT_OPERATORS)}")
    length = evaluator.encoding.genome_length
    individual = individual_class(evaluator.weights)
    toolbox = base.Toolbox()
    init, init_options = operators.resolve(with_genome_length(specs["init"], length), "init")
    check_cardinality(specs, budget=active is not None)
    if active is not None:
        init_options["k"] = operators.cardinality.count_of(active, length, "encoding.active")
    toolbox.register("individual", init, individual, length, **init_options)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    for alias, kind in _KINDS.items():
        operators.register_on(toolbox, alias, kind, with_genome_length(specs[alias], length))
    toolbox.register("evaluate", evaluator.evaluate)
    toolbox.register("map", evaluator.map)
    return toolbox


def check_cardinality(specs: Mapping[str, Any], *, budget: bool) -> None:
    """Raises a one-line ValueError when operators and a fixed budget do not match.

    Without a budget no count-keeping operator may be used (``random_k`` has no count,
    the others would keep whatever count the initialiser drew); with one, the
    initialiser, crossover and mutation must all keep the count.

    Args:
        specs: operator specs per toolbox alias (``init``, ``mate``, ``mutate``...).
        budget: whether ``encoding.active`` is set.
    """
    for alias, kind in (("init", "init"), ("mate", "crossover"), ("mutate", "mutation")):
        if alias not in specs:
            continue
        keeps = operators.is_cardinality(specs[alias], kind)
        spec = specs[alias]
        name = spec.get("name") if isinstance(spec, Mapping) else getattr(spec, "__name__", spec)
        if keeps and not budget:
            raise ValueError(f"operators.{alias}={name!r} is a cardinality (count-keeping) operator but "
                             "encoding.active is not set; expected encoding.active = a count or fraction of genes")
        if budget and not keeps:
            known = ", ".join(n for n in operators.available(kind) if operators.is_cardinality(n, kind))
            raise ValueError(f"operators.{alias}={name!r} does not keep the count of encoding.active; "
                             f"expected a count-keeping {kind} operator ({known})")
