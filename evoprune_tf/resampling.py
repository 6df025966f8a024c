"""Resampled fitness: k-fold cross-validation or repeated validation splits of train+validation.

A single validation split of a few hundred images rewards lucky masks (the winner's
curse): the best of 200 masks scores high on validation partly by chance. Averaging a
genome's score over several train/validation partitions of the *same* train+validation
images lowers that noise, at the cost of training one head per partition. The test
split is never part of any partition; it stays for the final report.

`ResampledEvaluator` is a `PopulationEvaluator` whose ``compute`` trains every genome
once per partition (each partition's genomes as one population batch) and averages
accuracy, loss and AUROC. Everything else (cache, DEAP contract, ``map``, counters)
is the parent's, so toolboxes, loops, checkpoints and reports use it unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.objectives import Evaluation
from evoprune_tf.train import derive_seed

__all__ = ["Resampling", "partitions", "partition_splits", "ResampledEvaluator"]

Resampling = Literal["holdout", "cv", "repeated"]


def _stratified_folds(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold index in ``[0, k)`` per sample, each class dealt round-robin after a shuffle."""
    fold = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold[members] = (np.arange(len(members)) + rng.integers(k)) % k
    return fold


def partitions(labels: np.ndarray, method: Resampling, *, folds: int = 5, repeats: int = 5,
               val_fraction: float = 0.2, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/validation index pairs over ``labels`` (the concatenated train+validation labels).

    Args:
        labels: integer labels of the pooled train+validation samples.
        method: ``"cv"`` (stratified ``folds``-fold cross-validation: every sample is
            validated once) or ``"repeated"`` (``repeats`` stratified random splits with
            ``val_fraction`` of each class in validation).
        folds: k of k-fold cross-validation (at least 2).
        repeats: number of repeated splits (at least 1).
        val_fraction: validation share of each class in a repeated split.
        seed: drives the partitions (the same seed gives the same partitions).

    Raises:
        ValueError: a method other than cv/repeated, too few folds or repeats, or a class
            too small for the folds.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(derive_seed(seed, "partitions", method))
    if method == "cv":
        if folds < 2:
            raise ValueError(f"objectives.folds={folds}; expected at least 2 for cross-validation")
        smallest = int(np.bincount(labels).min())
        if smallest < folds:
            raise ValueError(f"objectives.folds={folds}; the smallest class has only {smallest} train+val samples")
        fold = _stratified_folds(labels, folds, rng)
        return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(folds)]
    if method == "repeated":
        if repeats < 1:
            raise ValueError(f"objectives.repeats={repeats}; expected a positive integer")
        out = []
        for _ in range(repeats):
            val = []
            for cls in np.unique(labels):
                members = rng.permutation(np.flatnonzero(labels == cls))
                val.append(members[: max(1, int(round(val_fraction * len(members))))])
            val_idx = np.sort(np.concatenate(val))
            out.append((np.setdiff1d(np.arange(len(labels)), val_idx), val_idx))
        return out
    raise ValueError(f"objectives.resampling={method!r}; expected 'holdout', 'cv' or 'repeated'")


def partition_splits(data: FeatureSplits, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[FeatureSplits]:
    """One `FeatureSplits` per partition of train+validation; test is the original test split."""
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    return [
        FeatureSplits(x[tr], y[tr], x[va], y[va], data.x_test, data.y_test, class_names=data.class_names,
                      name=f"{data.name}[{i}]", scaling=data.scaling)
        for i, (tr, va) in enumerate(parts)
    ]


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


class ResampledEvaluator(PopulationEvaluator):
    """A `PopulationEvaluator` whose fitness is the mean over train/validation partitions.

    Args:
        encoding, data, train_config: as for `PopulationEvaluator`; ``data``'s own
            train split is what `train_heads` (reports, baselines) trains on.
        method: ``"cv"`` or ``"repeated"`` (see `partitions`).
        folds, repeats, val_fraction: see `partitions`.
        partition_seed: seed of the partitions (default: ``seed``); a different seed gives
            partitions the search never saw (used to re-score a hall of fame).
        **kwargs: the other `PopulationEvaluator` options (seed, objectives, OOD, ...).
    """

    def __init__(self, encoding, data: FeatureSplits, train_config=None, *, method: Resampling = "cv",
                 folds: int = 5, repeats: int = 5, val_fraction: float = 0.2, partition_seed: int | None = None,
                 **kwargs) -> None:
        super().__init__(encoding, data, train_config, **kwargs)
        labels = np.concatenate([data.y_train, data.y_val])
        self.method = method
        self.folds, self.repeats, self.val_fraction = int(folds), int(repeats), float(val_fraction)
        self.partition_seed = self.seed if partition_seed is None else int(partition_seed)
        self.parts = partitions(labels, method, folds=self.folds, repeats=self.repeats,
                                val_fraction=self.val_fraction, seed=self.partition_seed)
        plain = super().options()  # the members score one partition each, without resampling
        self.members = [PopulationEvaluator(encoding, split, self.train_config, **plain)
                        for split in partition_splits(data, self.parts)]

    def options(self) -> dict[str, Any]:
        """`PopulationEvaluator.options` plus the resampling options.

        Returns:
            The parent's options and ``method``, ``folds``, ``repeats``, ``val_fraction``,
            the resolved ``partition_seed``: they rebuild the same partitions and fitness.
        """
        return {**super().options(), "method": self.method, "folds": self.folds, "repeats": self.repeats,
                "val_fraction": self.val_fraction, "partition_seed": self.partition_seed}

    def compute(self, keys: Sequence[bytes], genomes: Sequence[np.ndarray]) -> list[Evaluation]:
        """Mean `Evaluation` over the partitions of each genome (each partition one batch).

        Args:
            keys: the genomes' keys.
            genomes: validated genomes.

        Returns:
            One averaged `Evaluation` per genome.
        """
        per_member = [member.measure(genomes) for member in self.members]
        out = []
        for i in range(len(genomes)):
            runs = [evaluations[i] for evaluations in per_member]
            out.append(Evaluation(
                accuracy=float(np.mean([e.accuracy for e in runs])),
                loss=float(np.mean([e.loss for e in runs])),
                active_fraction=runs[0].active_fraction,
                active_parameters=runs[0].active_parameters,
                auroc=_mean([e.auroc for e in runs]),
                epochs_run=int(round(np.mean([e.epochs_run for e in runs]))),
            ))
        return out

    def stats(self) -> dict[str, float]:
        """The parent's counters plus ``heads_trained`` (genomes x partitions)."""
        return {**super().stats(), "heads_trained": sum(m.n_trained for m in self.members)}
