"""The serial runner: a toolbox ``map`` that evaluates in this process.

It is the reference the other runners must match: `SerialMap.map` hands a population to
the evaluator's own batched ``map``, so ``runner = "serial"`` behaves exactly like a
toolbox that never had a runner. It exists so that every runner has the same small
interface (``map``, ``close``, ``stats``, context manager) and the application can
build any of them with `evoprune_tf.runners.make_runner`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evoprune_tf.evaluation import PopulationEvaluator


__all__ = ["SerialMap", "evaluates"]


def evaluates(func: Callable, evaluator: PopulationEvaluator) -> bool:
    """Whether ``func`` is ``evaluator.evaluate`` (alone or in an argument-less partial).

    Args:
        func: the function DEAP hands to ``toolbox.map``.
        evaluator: the run's evaluator.

    Returns:
        True when a runner may batch the call through the evaluator.
    """
    return evaluator.is_evaluate(func)


class SerialMap:
    """A DEAP toolbox ``map`` that evaluates the population in this process, as one batch.

    Args:
        evaluator: the run's evaluator (its cache and counters are the run's).
    """

    name = "serial"

    def __init__(self, evaluator: PopulationEvaluator) -> None:
        self.evaluator = evaluator
        self.workers = 1

    def map(self, func: Callable, iterable: Iterable) -> list:
        """``toolbox.map``: the evaluator's batched map (anything else maps serially).

        Args:
            func: the mapped function (usually ``toolbox.evaluate``).
            iterable: the individuals.

        Returns:
            ``func``'s results in input order.
        """
        return self.evaluator.map(func, iterable)

    def stats(self) -> dict[str, Any]:
        """Counters of this runner (none beyond the evaluator's own).

        Returns:
            ``{"runner": "serial", "workers": 1}``.
        """
        return {"runner": self.name, "workers": self.workers}

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> "SerialMap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
