"""Resampled fitness: k-fold cross-validation or repeated validation splits of train+validation.

A single validation split of a few hundred images rewards lucky masks (the winner's
curse): the best of 200 masks scores high on validation partly by chance. Averaging a
genome's score over several train/validation partitions of the *same* train+validation
images lowers that noise, at the cost of training one head per partition. The test
split is never part of any partition; it stays for the final report.

`ResampledEvaluator` is a `PopulationEvaluator` whose ``compute`` trains every genome
once per partition and averages accuracy, loss and AUROC. By default the P genomes x K
partitions go to one trainer, built once over the pooled train+validation features, as
*one* call: each head carries its own training and validation rows
(`evoprune_tf.train.plan.RowSplit`), draws the mini-batches a trainer on its partition
would draw, and heads of equal shape and partition size train as one population group
(one vmapped program on JAX). ``batched=False`` keeps the per-partition loop (one
`PopulationEvaluator` per partition); both give the same fitness (bit for bit on the
NumPy engine and the TensorFlow route, to float32 rounding under JAX's vmap).
Everything else (cache, DEAP contract, ``map``, counters) is the parent's, so
toolboxes, loops, checkpoints and reports use it unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.objectives import Evaluation
from evoprune_tf.train import derive_seed, make_trainer
from evoprune_tf.train.plan import RowSplit

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
        batched: train every partition's heads in one trainer call (default); False
            trains partition by partition through `members` (the reference the batched
            path is tested and benchmarked against).
        **kwargs: the other `PopulationEvaluator` options (seed, objectives, OOD, ...).
    """

    def __init__(self, encoding, data: FeatureSplits, train_config=None, *, method: Resampling = "cv",
                 folds: int = 5, repeats: int = 5, val_fraction: float = 0.2, partition_seed: int | None = None,
                 batched: bool = True, **kwargs) -> None:
        super().__init__(encoding, data, train_config, **kwargs)
        labels = np.concatenate([data.y_train, data.y_val])
        self.method = method
        self.folds, self.repeats, self.val_fraction = int(folds), int(repeats), float(val_fraction)
        self.partition_seed = self.seed if partition_seed is None else int(partition_seed)
        self.batched = bool(batched)
        self.parts = partitions(labels, method, folds=self.folds, repeats=self.repeats,
                                val_fraction=self.val_fraction, seed=self.partition_seed)
        self._plain = super().options()  # the members score one partition each, without resampling
        self._members: list[PopulationEvaluator] | None = None
        self._pooled_trainer = None
        self._pooled_heads = 0
        pooled_x = np.concatenate([data.x_train, data.x_val])
        # The pooled trainer's train split is train+validation; its own validation split is
        # unused (every head brings its rows), the original one fills the slot.
        self._pooled = FeatureSplits(pooled_x, labels, data.x_val, data.y_val, data.x_test, data.y_test,
                                     class_names=data.class_names, name=f"{data.name}[pooled]", scaling=data.scaling)
        self._rows = [RowSplit(tr, va) for tr, va in self.parts]
        self._val_sets = [(pooled_x[va], labels[va]) for _, va in self.parts]

    @property
    def members(self) -> list[PopulationEvaluator]:
        """One plain `PopulationEvaluator` per partition (built on first use): the ``batched=False`` loop."""
        if self._members is None:
            self._members = [PopulationEvaluator(self.encoding, split, self.train_config, **self._plain)
                             for split in partition_splits(self.data, self.parts)]
        return self._members

    @property
    def pooled_trainer(self):
        """The trainer over train+validation that trains every partition's heads in one call (built on first use)."""
        if self._pooled_trainer is None:
            self._pooled_trainer = make_trainer(self.encoding.spec, self._pooled, self.train_config, seed=self.seed)
        return self._pooled_trainer

    def options(self) -> dict[str, Any]:
        """`PopulationEvaluator.options` plus the resampling options.

        Returns:
            The parent's options and ``method``, ``folds``, ``repeats``, ``val_fraction``,
            the resolved ``partition_seed`` and ``batched``: they rebuild the same
            partitions and fitness.
        """
        return {**super().options(), "method": self.method, "folds": self.folds, "repeats": self.repeats,
                "val_fraction": self.val_fraction, "partition_seed": self.partition_seed, "batched": self.batched}

    def compute(self, keys: Sequence[bytes], genomes: Sequence[np.ndarray]) -> list[Evaluation]:
        """Mean `Evaluation` over the partitions of each genome.

        Batched (default): genomes x partitions go to the pooled trainer as one call;
        else each partition's genomes are one batch of its member evaluator.

        Args:
            keys: the genomes' keys.
            genomes: validated genomes.

        Returns:
            One averaged `Evaluation` per genome.
        """
        if self.batched:
            per_member = self._measure_pooled(genomes)
        else:
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

    def _measure_pooled(self, genomes: Sequence[np.ndarray]) -> list[list[Evaluation]]:
        """Per partition, the `Evaluation` of every genome, all heads trained by the pooled trainer.

        At most ``chunk_size`` heads per trainer call (genomes x partitions): the trained
        heads of a call are held until they are scored, so this bounds peak memory as
        ``chunk_size`` does for the per-partition loop.
        """
        k = len(self.parts)
        per_member: list[list[Evaluation]] = [[] for _ in range(k)]
        step = max(1, self.chunk_size // k)
        for start in range(0, len(genomes), step):
            chunk = genomes[start : start + step]
            masks = [self.encoding.decode(g) for g in chunk]
            heads = self.pooled_trainer.train([m for m in masks for _ in range(k)],
                                              [r for _ in masks for r in self._rows])
            self._pooled_heads += len(heads)
            for i, genes in enumerate(chunk):
                for j, (x_val, y_val) in enumerate(self._val_sets):
                    per_member[j].append(self.score(heads[i * k + j], genes, x_val, y_val))
        return per_member

    def stats(self) -> dict[str, float]:
        """The parent's counters plus ``heads_trained`` (genomes x partitions)."""
        looped = sum(m.n_trained for m in self._members) if self._members is not None else 0
        return {**super().stats(), "heads_trained": self._pooled_heads + looped}
