"""How a population is evaluated: in this process, in spawned processes, or on Ray.

Every runner is a DEAP toolbox ``map`` with the same small interface, pymoo-style:
``map(func, iterable)`` (register it with ``toolbox.register("map", runner.map)``),
``stats()``, ``close()`` and use as a context manager. All of them give the serial
results: only where the training happens changes.

* ``serial`` (`SerialMap`): this process, one batch per population.
* ``processes`` (`ProcessPoolMap`): spawned worker processes on this machine.
* ``ray`` (`RayMap`): long-lived Ray actors on a local or remote cluster, GPU-aware.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only: the config checks import this package cheaply
    from evoprune_tf.evaluation import PopulationEvaluator

from evoprune_tf.runners.serial import SerialMap, evaluates

__all__ = ["RUNNERS", "make_runner", "resolve_runner_name", "SerialMap", "evaluates"]

#: Runner names accepted by `make_runner` (``"auto"``: processes when workers > 1, else serial).
RUNNERS = ("auto", "serial", "processes", "ray")


def resolve_runner_name(name: str, workers: int = 0) -> str:
    """The runner an ``(name, workers)`` pair means.

    Args:
        name: one of `RUNNERS`.
        workers: the config's ``workers``.

    Returns:
        ``"serial"``, ``"processes"`` or ``"ray"``.

    Raises:
        ValueError: an unknown name.
    """
    if name not in RUNNERS:
        raise ValueError(f"unknown runner {name!r}; expected one of {', '.join(RUNNERS)}")
    if name == "auto":
        return "processes" if workers > 1 else "serial"
    return name


def make_runner(
    name: str,
    evaluator: PopulationEvaluator,
    *,
    workers: int = 0,
    address: str | None = None,
    num_gpus: float = 0.0,
    **options: Any,
) -> Any:
    """Build the runner named ``name`` around the run's evaluator.

    Args:
        name: ``"serial"``, ``"processes"``, ``"ray"`` or ``"auto"`` (processes when
            ``workers > 1``, else serial).
        evaluator: the run's evaluator; its cache and counters stay the run's.
        workers: processes or Ray actors; 0 means every core (processes) or every CPU
            of the cluster (Ray).
        address: Ray address (``None``: a local cluster, ``"auto"``, ``"host:port"``).
        num_gpus: GPUs per Ray actor (fractional allowed).
        **options: more keyword arguments of the runner class.

    Returns:
        An object with ``map(func, iterable)``, ``stats()`` and ``close()``.

    Raises:
        ValueError: an unknown runner or bad options.
        ImportError: ``"ray"`` while Ray is not installed (the message names the extra).
    """
    kind = resolve_runner_name(name, workers)
    if kind == "serial":
        return SerialMap(evaluator)
    if kind == "processes":
        # Here, not at the top: they import the evaluator (SciPy), and config checks import this package.
        from evoprune_tf.runners.processes import ProcessPoolMap

        return ProcessPoolMap(evaluator, workers=workers or (os.cpu_count() or 1), **options)
    from evoprune_tf.runners.ray_runner import RayMap

    return RayMap(evaluator, workers, address=address or None, num_gpus=num_gpus, **options)
