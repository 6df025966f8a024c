"""Objectives of a pruned head: accuracy, loss, complexity, OOD robustness.

Each objective has a name, a DEAP weight (+1 maximise, -1 minimise) and reads its
value from an `Evaluation`. Single-objective runs use the lexicographic fitness
``(accuracy, loss, active_fraction)`` with weights ``(+1, -1, -1)``, the loss compared
at a resolution (``objectives.loss_resolution``, 0.02 nats by default): DEAP compares
fitnesses lexicographically, so validation loss breaks ties of accuracy (which saturates
at 1.0 on the shared RPS copy), and genomes whose losses round alike are told apart by
fewer active bits.

Why a resolution: on the shared RPS features validation loss falls monotonically with
density (0.050 at 20% of the features, 0.011 at 100%, 10 epochs), so exact loss always
prefers the densest genome (a run ended at 98% active), while the reference order
``(accuracy, active_fraction, loss)`` drives genomes to the sparsest that still scores
1.0 on validation, which generalised worst to the other hands of the test split (33%
active: test 0.738 vs 0.799 unpruned; 9% at 30 epochs: 0.693 vs 0.828). Rounding the
loss to 0.02 kept 36-48% of the features at -3.2 to +5.0 test points (README).
"""

from __future__ import annotations

import dataclasses

__all__ = ["Evaluation", "OBJECTIVES", "SINGLE_OBJECTIVE", "objective_weights", "objective_values", "validate_objectives"]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything measured about one genome; every objective is derived from it.

    Attributes:
        accuracy: validation accuracy.
        loss: validation cross-entropy.
        active_fraction: fraction of genes on.
        active_parameters: parameters of the compact head.
        auroc: OOD-detection AUROC on validation vs OOD features (None when not measured).
        epochs_run: epochs trained.
    """

    accuracy: float
    loss: float
    active_fraction: float
    active_parameters: int
    auroc: float | None = None
    epochs_run: int = 0

    def as_dict(self) -> dict:
        """Plain dict (for CSV / JSON)."""
        return dataclasses.asdict(self)


#: name -> (weight, attribute of `Evaluation`)
OBJECTIVES: dict[str, tuple[float, str]] = {
    "accuracy": (1.0, "accuracy"),
    "loss": (-1.0, "loss"),
    "active_fraction": (-1.0, "active_fraction"),
    "robustness": (1.0, "auroc"),
}

SINGLE_OBJECTIVE = ("accuracy", "loss", "active_fraction")


def validate_objectives(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check objective names; returns them as a tuple.

    Raises:
        ValueError: an unknown or repeated name, or an empty list.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"objectives={list(names)}; expected distinct names from {sorted(OBJECTIVES)}")
    return names


def objective_weights(names: tuple[str, ...]) -> tuple[float, ...]:
    """DEAP fitness weights for the objectives."""
    return tuple(OBJECTIVES[n][0] for n in names)


def objective_values(evaluation: Evaluation, names: tuple[str, ...], loss_resolution: float = 0.0) -> tuple[float, ...]:
    """The fitness tuple of an evaluation.

    Args:
        evaluation: the measurements.
        names: objectives in fitness order.
        loss_resolution: the ``loss`` objective is rounded to a multiple of this (0: exact),
            so that smaller differences are ties and the next objective decides.
    """
    values = []
    for name in names:
        value = getattr(evaluation, OBJECTIVES[name][1])
        if value is None:
            raise ValueError(f"objective {name!r} was not measured (robustness needs OOD features)")
        if name == "loss" and loss_resolution > 0:
            value = round(value / loss_resolution) * loss_resolution
        values.append(float(value))
    return tuple(values)
