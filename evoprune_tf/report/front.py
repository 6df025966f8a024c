"""The members of a Pareto front and their retrained scores: the first steps of `pareto_report`.

`front_members` keeps the front's valid, distinct members with their search objectives;
`score_members` retrains each of them with the report recipe (`evoprune_tf.report.single.retrain`)
over several seeds and scores it on validation and *test* (accuracy, and the OOD AUROC of
its max-softmax score).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from evoprune_tf.encodings import Encoding, genome_key
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.metrics import accuracy_and_loss, auroc, max_softmax_score
from evoprune_tf.report.single import retrain
from evoprune_tf.train import TrainConfig, TrainedHead

__all__ = [
    "FrontMembers",
    "MemberScores",
    "front_members",
    "score_members",
    "float_or_none",
    "mean_or_none",
    "std_or_none",
    "test_auroc",
]


@dataclasses.dataclass(frozen=True)
class FrontMembers:
    """The distinct valid members of a front, as the report's steps use them.

    Attributes:
        individuals: the DEAP individuals, in the front's order.
        names: objective names (``obj0``, ``obj1``... when the given names do not fit).
        weights: the fitness weights.
        points: ``(n, k)`` fitness values.
        genomes: validated int8 genomes.
        active: active fraction of each genome.
    """

    individuals: list
    names: list[str]
    weights: tuple[float, ...]
    points: np.ndarray
    genomes: list[np.ndarray]
    active: np.ndarray


def front_members(front: Sequence, encoding: Encoding, objective_names: Sequence[str]) -> FrontMembers:
    """The front's valid individuals with distinct genomes, in the front's order.

    Args:
        front: DEAP individuals (those without a valid fitness are skipped).
        encoding: the run's encoding (validates the genomes).
        objective_names: names of the fitness values, in fitness order.

    Returns:
        The `FrontMembers`.

    Raises:
        ValueError: no individual has a valid fitness.
    """
    seen: set[bytes] = set()
    individuals = []
    for ind in front:
        if not ind.fitness.valid:
            continue
        key = genome_key(ind)
        if key not in seen:
            seen.add(key)
            individuals.append(ind)
    if not individuals:
        raise ValueError("the Pareto front holds no individual with a valid fitness; expected a finished search")
    weights = tuple(float(w) for w in individuals[0].fitness.weights)
    names = list(objective_names)
    if len(names) != len(weights):
        names = [f"obj{i}" for i in range(len(weights))]
    genomes = [encoding.validate(ind).astype(np.int8) for ind in individuals]
    return FrontMembers(
        individuals=individuals, names=names, weights=weights,
        points=np.array([ind.fitness.values for ind in individuals], dtype=np.float64),
        genomes=genomes, active=np.array([float(g.mean()) for g in genomes]),
    )


@dataclasses.dataclass(frozen=True)
class MemberScores:
    """The retrained heads of every member and their scores, indexed ``[seed][member]``.

    Attributes:
        heads: the trained heads.
        val: ``(accuracy, loss)`` on validation.
        test_accuracy: accuracy on test (None without a test split).
        test_auroc: OOD AUROC on test (None without OOD features or test split).
    """

    heads: list[list[TrainedHead]]
    val: list[list[tuple[float, float]]]
    test_accuracy: list[list[float | None]]
    test_auroc: list[list[float | None]]

    @property
    def seeds(self) -> int:
        """Number of retrain seeds."""
        return len(self.heads)

    @property
    def val_accuracy(self) -> np.ndarray:
        """Each member's validation accuracy, mean over the seeds."""
        return np.array([np.mean([self.val[s][i][0] for s in range(self.seeds)])
                         for i in range(len(self.heads[0]))])

    def over_seeds(self, member: int) -> dict[str, Any]:
        """One member's test numbers over the seeds: mean/std of accuracy and AUROC, accuracy per seed."""
        acc = [self.test_accuracy[s][member] for s in range(self.seeds)]
        auc = [self.test_auroc[s][member] for s in range(self.seeds)]
        return {
            "test_accuracy": mean_or_none(acc), "test_accuracy_std": std_or_none(acc),
            "test_accuracy_per_seed": acc if acc[0] is not None else [],
            "test_auroc": mean_or_none(auc), "test_auroc_std": std_or_none(auc),
        }


def score_members(
    encoding: Encoding,
    features: FeatureSplits,
    genomes: Sequence[np.ndarray],
    train_config: TrainConfig,
    *,
    seed: int,
    seeds: int,
    ood: np.ndarray | None,
    temperature: float,
) -> MemberScores:
    """Retrain every genome once per seed and score it on validation and test.

    Args:
        encoding: the run's encoding.
        features: the run's features.
        genomes: the members' genomes.
        train_config: the retrain recipe.
        seed: the run seed (each retrain seed derives from it).
        seeds: retrains per genome.
        ood: float32 OOD features for the test AUROC, or None.
        temperature: softmax temperature of the OOD score.

    Returns:
        The `MemberScores`.
    """
    heads = retrain(encoding, features, genomes, train_config, seed=seed, seeds=seeds)
    has_test = len(features.y_test) > 0
    return MemberScores(
        heads=heads,
        val=[[accuracy_and_loss(h.logits(features.x_val), features.y_val) for h in row] for row in heads],
        test_accuracy=[[accuracy_and_loss(h.logits(features.x_test), features.y_test)[0] if has_test else None
                        for h in row] for row in heads],
        test_auroc=[[test_auroc(h, features, ood, temperature) for h in row] for row in heads],
    )


def float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def std_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.std(vals)) if vals else None


def test_auroc(head: TrainedHead, data: FeatureSplits, ood: np.ndarray | None, temperature: float) -> float | None:
    if ood is None or len(data.y_test) == 0:
        return None
    return auroc(max_softmax_score(head.logits(data.x_test), temperature),
                 max_softmax_score(head.logits(ood), temperature))
