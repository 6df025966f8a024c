"""Fitness evaluation of genomes: decode, train the compact head, score on validation.

`PopulationEvaluator` knows nothing of DEAP beyond its contracts: ``evaluate(genome)``
returns a tuple, and ``map(func, genomes)`` evaluates a whole population in one batched
call when ``func`` is its own ``evaluate`` (register it as the toolbox's ``map`` and
DEAP's algorithms get batched evaluation for free). Genomes already measured are served
from a cache keyed by the packed genome, with every objective restored.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from evoprune_tf.encodings import Encoding, genome_key
from evoprune_tf.metrics import accuracy_and_loss, auroc, max_softmax_score
from evoprune_tf.objectives import (
    SINGLE_OBJECTIVE,
    Evaluation,
    objective_values,
    objective_weights,
    validate_objectives,
)
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.train import TrainConfig, TrainedHead, make_trainer

__all__ = ["CachedEvaluator", "PopulationEvaluator"]


class CachedEvaluator:
    """The DEAP contract and the genome cache that every evaluator shares.

    A subclass sets ``encoding`` (with ``validate``) and ``chunk_size``, calls
    `reset_cache` in its constructor and implements `values` (a record -> its fitness
    tuple) and `compute` (distinct, uncached genomes -> their records). Everything
    else, the cache keyed by `genome_key`, the counters, ``evaluate``, batched ``map``,
    is here once, so every evaluator counts cache hits and training time the same way.
    """

    encoding: Any
    chunk_size: int = 64

    def reset_cache(self) -> None:
        """Empty the cache and zero the counters (``trained``, ``cache_hits``, ``train_seconds``)."""
        self.cache: dict[bytes, Any] = {}
        self.n_trained = 0
        self.n_cache_hits = 0
        self.train_seconds = 0.0

    def values(self, evaluation: Any) -> tuple[float, ...]:
        """The fitness tuple of a record.

        Args:
            evaluation: a record made by `compute`.

        Returns:
            One value per objective.
        """
        raise NotImplementedError

    def compute(self, keys: Sequence[bytes], genomes: Sequence[np.ndarray]) -> list[Any]:
        """Records of distinct genomes that are not cached (no caching here).

        Args:
            keys: the genomes' `genome_key`.
            genomes: validated genomes, at most ``chunk_size`` of them.

        Returns:
            One record per genome, in order.
        """
        raise NotImplementedError

    def evaluate(self, genome: Sequence[int] | np.ndarray) -> tuple[float, ...]:
        """DEAP ``evaluate``: the fitness tuple of one genome.

        Args:
            genome: a genome of the encoding.

        Returns:
            One value per objective.
        """
        return self.evaluate_population([genome])[0]

    def evaluate_population(self, genomes: Iterable[Sequence[int] | np.ndarray]) -> list[tuple[float, ...]]:
        """Fitness tuples of many genomes, computed as batches (cache hits and repeats skipped).

        Args:
            genomes: genomes of the encoding.

        Returns:
            One fitness tuple per genome, in order.
        """
        return [self.values(e) for e in self.measure(list(genomes))]

    def is_evaluate(self, func: Callable) -> bool:
        """Whether ``func`` is this evaluator's ``evaluate`` (alone or in an argument-less partial).

        ``toolbox.register("evaluate", ev.evaluate)`` wraps the method in such a partial;
        `map` and the runners batch exactly these calls and map anything else serially.

        Args:
            func: the function DEAP hands to ``toolbox.map``.

        Returns:
            True when the call may be batched through this evaluator.
        """
        target = func.func if isinstance(func, functools.partial) and not func.args and not func.keywords else func
        return target == self.evaluate

    def map(self, func: Callable, iterable: Iterable) -> list:
        """A toolbox ``map``: batches calls of this evaluator's ``evaluate``, else maps serially.

        Args:
            func: the function DEAP maps (usually ``toolbox.evaluate``).
            iterable: its arguments.

        Returns:
            The results, in order.
        """
        if self.is_evaluate(func):
            return self.evaluate_population(iterable)
        return list(map(func, iterable))

    def measure(self, genomes: Sequence[Sequence[int] | np.ndarray]) -> list[Any]:
        """Records of genomes, from the cache where possible, the rest by `compute`.

        Args:
            genomes: genomes of the encoding.

        Returns:
            One record per genome, in order.
        """
        keys, missing = self.split_cached(genomes)
        todo = list(missing.items())
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            began = time.perf_counter()
            records = self.compute([k for k, _ in chunk], [g for _, g in chunk])
            for (key, _), record in zip(chunk, records):
                self.cache[key] = record
            self.train_seconds += time.perf_counter() - began
            self.n_trained += len(chunk)
        return [self.cache[k] for k in keys]

    def split_cached(self, genomes: Sequence[Sequence[int] | np.ndarray]) -> tuple[list[bytes], dict[bytes, np.ndarray]]:
        """Validate genomes; return every genome's key and the distinct ones not cached yet.

        Counts a cache hit for every genome already cached or repeated in ``genomes``.

        Args:
            genomes: genomes of the encoding.

        Returns:
            ``(keys, missing)``: one key per genome, and key -> validated genome of the
            distinct genomes to compute.
        """
        genes = [self.encoding.validate(g) for g in genomes]
        keys = [genome_key(g) for g in genes]
        missing: dict[bytes, np.ndarray] = {}
        for key, g in zip(keys, genes):
            if key in self.cache or key in missing:
                self.n_cache_hits += 1
            else:
                missing[key] = g
        return keys, missing

    def lookup(self, genome: Sequence[int] | np.ndarray) -> Any | None:
        """The cached record of a genome, if any.

        Args:
            genome: a genome of the encoding.

        Returns:
            The record or None.
        """
        return self.cache.get(genome_key(self.encoding.validate(genome)))

    def stats(self) -> dict[str, float]:
        """Counters for progress and tracking.

        Returns:
            ``trained``, ``cache_hits``, ``train_seconds``, ``evals_per_second``.
        """
        return {
            "trained": self.n_trained,
            "cache_hits": self.n_cache_hits,
            "train_seconds": self.train_seconds,
            "evals_per_second": self.n_trained / self.train_seconds if self.train_seconds else 0.0,
        }


class PopulationEvaluator(CachedEvaluator):
    """Scores genomes of one encoding on cached features.

    Args:
        encoding: genome <-> head masks.
        data: cached features (train is trained on, validation scored).
        train_config: the head's training recipe during the search.
        seed: run seed (initial weights and batch order derive from it).
        objectives: names from `evoprune_tf.objectives.OBJECTIVES`; the default is the
            lexicographic single-objective fitness (accuracy, loss, active_fraction).
        ood_features: features of out-of-distribution images, needed for ``robustness``.
        temperature: softmax temperature of the OOD score (MO-EvoPruneDeepTL: 1000).
        loss_resolution: the ``loss`` objective is compared rounded to this (0: exact).
        chunk_size: genomes trained per call to the trainer (bounds peak memory).
    """

    def __init__(
        self,
        encoding: Encoding,
        data: FeatureSplits,
        train_config: TrainConfig | None = None,
        *,
        seed: int = 0,
        objectives: Sequence[str] = SINGLE_OBJECTIVE,
        ood_features: np.ndarray | None = None,
        temperature: float = 1000.0,
        chunk_size: int = 64,
        loss_resolution: float = 0.0,
    ) -> None:
        self.encoding = encoding
        self.data = data
        self.train_config = train_config or TrainConfig()
        self.seed = int(seed)
        self.objectives = validate_objectives(objectives)
        if "robustness" in self.objectives and ood_features is None:
            raise ValueError("objective 'robustness' needs OOD features (ood_features / --ood)")
        if ood_features is not None:
            ood_features = np.asarray(ood_features, dtype=np.float32)
            if ood_features.ndim != 2 or ood_features.shape[1] != data.n_features:
                raise ValueError(
                    f"OOD features have shape {ood_features.shape}; expected (n, {data.n_features}) like the dataset"
                )
        self.ood_features = ood_features
        self.temperature = float(temperature)
        self.loss_resolution = float(loss_resolution)
        self.chunk_size = int(chunk_size)
        self.trainer = make_trainer(encoding.spec, data, self.train_config, seed=self.seed)
        self.reset_cache()

    def options(self) -> dict[str, Any]:
        """The keyword options this evaluator was built with (the constructor's, resolved).

        ``type(ev)(ev.encoding, ev.data, ev.train_config, **ev.options())`` builds an
        evaluator with the same fitness and an empty cache: how `EvaluatorRecipe`
        rebuilds it in worker processes and Ray actors. A subclass with more options
        adds them here, so no caller repeats the field list.

        Returns:
            ``seed``, ``objectives``, ``ood_features``, ``temperature``, ``chunk_size``,
            ``loss_resolution``.
        """
        return {
            "seed": self.seed,
            "objectives": self.objectives,
            "ood_features": self.ood_features,
            "temperature": self.temperature,
            "chunk_size": self.chunk_size,
            "loss_resolution": self.loss_resolution,
        }

    @property
    def weights(self) -> tuple[float, ...]:
        """DEAP fitness weights matching `evaluate`'s tuples."""
        return objective_weights(self.objectives)

    def values(self, evaluation: Evaluation) -> tuple[float, ...]:
        """The fitness tuple of an `Evaluation` (``loss`` rounded to ``loss_resolution``).

        Args:
            evaluation: a record of this evaluator.

        Returns:
            One value per objective.
        """
        return objective_values(evaluation, self.objectives, self.loss_resolution)

    def compute(self, keys: Sequence[bytes], genomes: Sequence[np.ndarray]) -> list[Evaluation]:
        """Train the genomes' heads as one population batch and score them on validation.

        Args:
            keys: the genomes' keys (unused: the fitness depends on the genes only).
            genomes: validated genomes.

        Returns:
            One `Evaluation` per genome.
        """
        return [self.score(head, g) for head, g in zip(self.train_heads(genomes), genomes)]

    def train_heads(self, genomes: Sequence[Sequence[int] | np.ndarray]) -> list[TrainedHead]:
        """Train the compact heads of genomes (no caching): for reports and export."""
        return self.trainer.train([self.encoding.decode(g) for g in genomes])

    def score(self, head: TrainedHead, genes: np.ndarray, x_val: np.ndarray | None = None,
              y_val: np.ndarray | None = None) -> Evaluation:
        """Validation metrics (and OOD AUROC when OOD features are set) of a trained head.

        Args:
            head: the trained head.
            genes: its genome.
            x_val: the samples to score on (default: the validation split; a
                resampled fitness passes each partition's validation rows).
            y_val: their labels (default: the validation split's).

        Returns:
            The head's `Evaluation`.
        """
        x_val = self.data.x_val if x_val is None else x_val
        y_val = self.data.y_val if y_val is None else y_val
        logits = head.logits(x_val)
        accuracy, loss = accuracy_and_loss(logits, y_val)
        robustness = None
        if self.ood_features is not None:
            robustness = auroc(
                max_softmax_score(logits, self.temperature),
                max_softmax_score(head.logits(self.ood_features), self.temperature),
            )
        return Evaluation(
            accuracy=accuracy,
            loss=loss,
            active_fraction=float(np.mean(genes)),
            active_parameters=head.masks.active_parameters(self.encoding.spec),
            auroc=robustness,
            epochs_run=head.epochs_run,
        )
