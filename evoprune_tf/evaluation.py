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
from typing import Callable, Iterable, Sequence

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

__all__ = ["PopulationEvaluator"]


class PopulationEvaluator:
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
        self.cache: dict[bytes, Evaluation] = {}
        self.n_trained = 0
        self.n_cache_hits = 0
        self.train_seconds = 0.0

    @property
    def weights(self) -> tuple[float, ...]:
        """DEAP fitness weights matching `evaluate`'s tuples."""
        return objective_weights(self.objectives)

    def evaluate(self, genome: Sequence[int] | np.ndarray) -> tuple[float, ...]:
        """DEAP ``evaluate``: the fitness tuple of one genome."""
        return self.evaluate_population([genome])[0]

    def evaluate_population(self, genomes: Iterable[Sequence[int] | np.ndarray]) -> list[tuple[float, ...]]:
        """Fitness tuples of many genomes, trained as one batch (cache hits skipped)."""
        return [objective_values(e, self.objectives, self.loss_resolution) for e in self.measure(list(genomes))]

    def map(self, func: Callable, iterable: Iterable) -> list:
        """A toolbox ``map``: batches calls of this evaluator's ``evaluate``, else maps serially."""
        target = func.func if isinstance(func, functools.partial) and not func.args and not func.keywords else func
        if target == self.evaluate:
            return self.evaluate_population(iterable)
        return list(map(func, iterable))

    def measure(self, genomes: Sequence[Sequence[int] | np.ndarray]) -> list[Evaluation]:
        """`Evaluation` records of genomes, from the cache where possible."""
        keys, missing = self.split_cached(genomes)
        todo = list(missing.items())
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            began = time.perf_counter()
            heads = self.train_heads([g for _, g in chunk])
            for (key, g), head in zip(chunk, heads):
                self.cache[key] = self.score(head, g)
            self.train_seconds += time.perf_counter() - began
            self.n_trained += len(chunk)
        return [self.cache[k] for k in keys]

    def split_cached(self, genomes: Sequence[Sequence[int] | np.ndarray]) -> tuple[list[bytes], dict[bytes, np.ndarray]]:
        """Validate genomes; return every genome's key and the distinct ones not cached yet.

        Counts a cache hit for every genome already cached or repeated in ``genomes``.
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

    def train_heads(self, genomes: Sequence[Sequence[int] | np.ndarray]) -> list[TrainedHead]:
        """Train the compact heads of genomes (no caching): for reports and export."""
        return self.trainer.train([self.encoding.decode(g) for g in genomes])

    def score(self, head: TrainedHead, genes: np.ndarray) -> Evaluation:
        """Validation metrics (and OOD AUROC when OOD features are set) of a trained head."""
        logits = head.logits(self.data.x_val)
        accuracy, loss = accuracy_and_loss(logits, self.data.y_val)
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

    def lookup(self, genome: Sequence[int] | np.ndarray) -> Evaluation | None:
        """The cached evaluation of a genome, if any."""
        return self.cache.get(genome_key(self.encoding.validate(genome)))

    def stats(self) -> dict[str, float]:
        """Counters for progress and tracking."""
        return {
            "trained": self.n_trained,
            "cache_hits": self.n_cache_hits,
            "train_seconds": self.train_seconds,
            "evals_per_second": self.n_trained / self.train_seconds if self.train_seconds else 0.0,
        }
