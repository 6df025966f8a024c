"""Genetic operators for binary pruning masks, with DEAP's contracts, and a name registry.

Four kinds: ``crossover`` (``mate``), ``mutation`` (``mutate``), ``selection``
(``select``) and ``init`` (``individual``). Every operator is a plain module-level
function with DEAP's signature, so it goes straight onto a ``deap.base.Toolbox``, works
on NumPy ``int8`` individuals (without the slice aliasing of ``deap.tools``' crossovers)
and on lists of 0/1, and draws its randomness from Python's `random` module (seed it to
reproduce a run).

Swapping an operator is one registration. In code::

    import operators
    toolbox.register("mate", operators.get("crossover", "two_point"))
    toolbox.register("mutate", operators.get("mutation", "flip_bit"), indpb=0.001)
    toolbox.register("select", operators.get("selection", "selTournament"), tournsize=3)  # DEAP's own
    operators.register_on(toolbox, "individual", "init", "random_density", creator.Individual, 2048)

or in a config, where each operator is a name or a table of a name and its options::

    mate = {name = "uniform", indpb = 0.5}
    mutate = {name = "flip_one", indpb = 0.07}
    select = "hamming_farthest"

which the engine passes to ``operators.register_on(toolbox, "mate", "crossover", spec)``;
bad options (an unknown name, a probability outside [0, 1]) fail when the config is
read. Your own operator joins the registry with a decorator::

    @operators.register("crossover")
    def block_swap(ind1, ind2, width=16):
        ...
        return ind1, ind2
"""

from . import crossover, init, mutation, selection  # their decorators register the built-in operators
from .registry import KINDS, PROBABILITY_OPTIONS, available, get, is_cardinality, register, register_on, resolve
from . import integer  # registers the integer/categorical-genome operators (TASCNet stage 1)
from . import cardinality  # registers the count-keeping operators (fixed-budget search, encoding.active)

__all__ = [
    "KINDS",
    "PROBABILITY_OPTIONS",
    "available",
    "get",
    "register",
    "register_on",
    "resolve",
    "is_cardinality",
    "crossover",
    "mutation",
    "selection",
    "init",
    "cardinality",
]
