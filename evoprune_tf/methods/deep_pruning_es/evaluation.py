"""Fitness of filter-pruning genomes: prune the searched suffix, fine-tune it, score it, count its FLOPs.

`FilterEvaluator` is a `evoprune_tf.evaluation.CachedEvaluator`, with the public contract
of `evoprune_tf.evaluation.PopulationEvaluator` (``evaluate`` returns a tuple,
``evaluate_population``, ``map``, ``measure``, a cache keyed by `genome_key`, ``stats()``,
``weights``), for DeepPruningES' filter genomes:

1. The network is cut at the last block boundary before the searched blocks
   (`FilterPruning.cut_layer`, `evoprune_tf.nn.cut.split_model`). The frozen prefix runs
   ONCE per split (train / validation / test) and its activations are kept in memory,
   and on disk when a cache folder and key are given.
2. Per genome, the suffix is pruned physically (`prune_filters`: fewer filters, sliced
   weights), so the cost of a fine-tune follows the genome's sparsity; the pruned
   suffix and the head are fine-tuned on the cached activations for ``train.epochs``
   with the recipe's optimizer (reference: SGD lr 1e-3, momentum 0.9, Nesterov), then
   scored on validation.
3. Objectives: ``error`` (validation), ``flops``, ``params`` and ``latency``, all
   minimised. ``flops`` and ``params`` are fractions of the unpruned searched suffix
   (kernel FLOPs = 2 MACs from `count_flops`), ``latency`` is the suffix's latency
   predicted by a per-layer table measured on this machine
   (`evoprune_tf.report.latency_lut.LatencyTable`, NetAdapt's method) as a fraction of
   the unpruned suffix's, so every objective lies in [0, 1] and hypervolumes with the
   default bounds are comparable across runs; the absolute numbers, for the suffix and
   for the whole network, are in each `FilterEvaluation`.

Fitness is a pure function of (genome, seed, recipe): each fine-tune is seeded from
``derive_seed(seed, "filters", genome key)``. BatchNormalization layers of the suffix keep
their statistics frozen during fine-tunes (the usual Keras transfer-learning practice;
``train_batchnorm=True`` trains them).

Importing this module does not import Keras (the config layer reads `FILTER_OBJECTIVES`).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evoprune_tf.evaluation import CachedEvaluator
from evoprune_tf.rng import isolated_global_rng
from evoprune_tf.train.config import TrainConfig, derive_seed
from evoprune_tf.train.keras_engine import make_optimizer
from evoprune_tf.train.tf_registry import released_custom_gradients

__all__ = [
    "FILTER_OBJECTIVES",
    "DEFAULT_FILTER_OBJECTIVES",
    "FilterEvaluation",
    "FilterEvaluator",
    "validate_filter_objectives",
    "rss_mb",
]

#: Objective name -> attribute of `FilterEvaluation`; every one is minimised.
FILTER_OBJECTIVES: dict[str, str] = {"error": "error", "flops": "flops_fraction", "params": "params_fraction",
                                     "latency": "latency_fraction"}
#: DeepPruningES' objectives.
DEFAULT_FILTER_OBJECTIVES = ("error", "flops")

_SPLITS = ("train", "val", "test")


def validate_filter_objectives(names: Sequence[str]) -> tuple[str, ...]:
    """Check the objectives of a filter-pruning run.

    Args:
        names: Objective names; ``error`` first is the convention the parent selection uses.

    Returns:
        The names as a tuple.

    Raises:
        ValueError: An unknown or repeated name, fewer than two, or no ``error``.
    """
    names = tuple(names)
    bad = [n for n in names if n not in FILTER_OBJECTIVES]
    if bad or len(names) < 2 or len(set(names)) != len(names) or "error" not in names:
        raise ValueError(f"objectives={list(names)}; expected 'error' and at least one of 'flops', 'params', 'latency' "
                         f"(distinct names from {sorted(FILTER_OBJECTIVES)})")
    return names


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux ``/proc``; 0.0 elsewhere).

    Returns:
        The RSS in MiB.
    """
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclasses.dataclass(frozen=True)
class FilterEvaluation:
    """Everything measured about one filter genome.

    Attributes:
        error: Validation error (1 - accuracy).
        accuracy: Validation accuracy.
        loss: Validation cross-entropy.
        flops: Kernel FLOPs (2 MACs) of the pruned searched suffix, head included.
        flops_fraction: ``flops`` over the unpruned suffix's.
        params: Parameters of the pruned suffix.
        params_fraction: ``params`` over the unpruned suffix's.
        network_flops: Kernel FLOPs of the whole pruned network (frozen prefix + suffix).
        network_params: Parameters of the whole pruned network.
        kept_filters: Filters kept in the searched groups (after repairs).
        repairs: Groups that were all-False and got one filter back.
        epochs_run: Fine-tune epochs.
        latency_ms: Predicted latency of the pruned suffix (NaN unless ``latency`` is an objective).
        latency_fraction: ``latency_ms`` over the unpruned suffix's.
    """

    error: float
    accuracy: float
    loss: float
    flops: int
    flops_fraction: float
    params: int
    params_fraction: float
    network_flops: int
    network_params: int
    kept_filters: int
    repairs: int
    epochs_run: int
    latency_ms: float = float("nan")
    latency_fraction: float = float("nan")

    def as_dict(self) -> dict:
        """Plain dict (for CSV / JSON).

        Returns:
            The fields.
        """
        return dataclasses.asdict(self)


class FilterEvaluator(CachedEvaluator):
    """Scores filter genomes by pruning, fine-tuning and validating the searched suffix.

    Args:
        encoding: A `evoprune_tf.methods.deep_pruning_es.encoding.FilterPruning` over ``encoding.model``
            (the whole network: backbone and head, taking preprocessed images).
        splits: ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` with preprocessed
            float images (what ``encoding.model`` takes) and integer labels; ``test`` may
            be empty. Only the prefix activations are kept.
        train_config: The fine-tune recipe (``epochs``, ``batch_size``, ``optimizer``,
            ``learning_rate``, ``momentum``, ``nesterov``).
        seed: Run seed.
        objectives: Names from `FILTER_OBJECTIVES`.
        batch_size: Batch size of the prefix pass and of scoring.
        train_batchnorm: Update BatchNormalization statistics and parameters in fine-tunes.
        cache_dir: Folder of the on-disk activation cache (None: memory only).
        cache_key: What identifies the prefix and the images (backbone, weights, size,
            image digest); the cut layer is added. Needed with ``cache_dir``.
        free_memory: Call `gc.collect` after each fine-tune.
        latency_table: The `evoprune_tf.report.latency_lut.LatencyTable` of the ``latency``
            objective (default with that objective: one stored under ``cache_dir/latency``).
        clip_norm: Global gradient-norm clip of the fine-tune optimizer unless the recipe
            sets a clip (None: no clip). Without it, fine-tuning the unpruned MobileNetV2
            suffix on RPS (SGD lr 1e-3, momentum 0.9, Nesterov, head warmed up) blew up
            within 5 batches and collapsed to chance; with 1.0 it trains smoothly.
    """

    def __init__(
        self,
        encoding: Any,
        splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
        train_config: TrainConfig | None = None,
        *,
        seed: int = 0,
        objectives: Sequence[str] = DEFAULT_FILTER_OBJECTIVES,
        batch_size: int = 64,
        train_batchnorm: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_key: str | None = None,
        free_memory: bool = True,
        clip_norm: float | None = 1.0,
        latency_table: Any = None,
    ) -> None:
        # nn imports Keras, and the config layer imports this module for FILTER_OBJECTIVES.
        from evoprune_tf.nn.cut import split_model
        from evoprune_tf.nn.flops import count_flops

        missing = [s for s in ("train", "val") if s not in splits or len(splits[s][1]) == 0]
        if missing:
            raise ValueError(f"splits {missing} are missing or empty; expected train and validation images")
        self.encoding = encoding
        self.model = encoding.model
        self.train_config = train_config or TrainConfig(epochs=3)
        self.seed = int(seed)
        self.objectives = validate_filter_objectives(objectives)
        self.batch_size = int(batch_size)
        self.train_batchnorm = bool(train_batchnorm)
        self.free_memory = bool(free_memory)
        self.clip_norm = clip_norm
        self.cut_layer = encoding.cut_layer
        if self.cut_layer is None:
            self.prefix, self.suffix = None, self.model
        else:
            self.prefix, self.suffix = split_model(self.model, self.cut_layer)
        self.suffix_cost = count_flops(self.suffix)
        self.prefix_cost = count_flops(self.prefix) if self.prefix is not None else None
        self.prefix_flops = self.prefix_cost.flops if self.prefix_cost else 0
        self.prefix_params = self.prefix_cost.params if self.prefix_cost else 0
        self.cache_dir = pathlib.Path(cache_dir).expanduser() if cache_dir else None
        self.cache_key = cache_key
        self.activations_from_disk = False
        self.prefix_seconds = 0.0
        self.activations = self._activations(splits)
        self.latency_table = latency_table
        if self.latency_table is None and "latency" in self.objectives:
            from evoprune_tf.report.latency_lut import LatencyTable

            self.latency_table = LatencyTable(self.cache_dir / "latency" if self.cache_dir else None)
        self.suffix_latency_ms = self.latency_table.predict_ms(self.suffix) if self.latency_table else float("nan")
        self.chunk_size = 1  # surgery gives each genome its own shapes: one fine-tune at a time
        self.reset_cache()
        self.n_repairs = 0
        self.rss_trace: list[float] = []

    # ---------------------------------------------------------------- activations
    def _activation_file(self) -> pathlib.Path | None:
        if self.cache_dir is None or not self.cache_key:
            return None
        key = hashlib.sha256(f"evoprune_tf.filters/1\0{self.cache_key}\0{self.cut_layer}".encode()).hexdigest()
        return self.cache_dir / f"cut-{self.cut_layer or 'input'}-{key[:24]}.npz"

    def _activations(self, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Prefix activations of every split, from the disk cache when it has them."""
        labels = {s: np.asarray(splits[s][1], dtype=np.int64) if s in splits else np.zeros(0, np.int64)
                  for s in _SPLITS}
        path = self._activation_file()
        if path is not None and path.is_file():
            try:
                with np.load(path) as stored:
                    cached = {s: (stored[f"{s}_x"], labels[s]) for s in _SPLITS}
                if all(len(cached[s][0]) == len(labels[s]) for s in _SPLITS):
                    self.activations_from_disk = True
                    return cached
            except (OSError, KeyError, ValueError):
                pass  # a torn or foreign file: recompute and overwrite it
        began = time.perf_counter()
        out = {}
        for s in _SPLITS:
            x = np.asarray(splits[s][0], dtype=np.float32) if s in splits else None
            if x is None or len(x) == 0:
                shape = tuple(int(d) for d in self.suffix.inputs[0].shape[1:])
                out[s] = (np.zeros((0, *shape), np.float32), labels[s])
            else:
                out[s] = (self._run_prefix(x), labels[s])
        self.prefix_seconds = time.perf_counter() - began
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **{f"{s}_x": out[s][0] for s in _SPLITS})
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
        return out

    def _run_prefix(self, x: np.ndarray) -> np.ndarray:
        if self.prefix is None:
            return x
        return _predict(self.prefix, x, self.batch_size)

    # ---------------------------------------------------------------- DEAP contract
    @property
    def weights(self) -> tuple[float, ...]:
        """DEAP fitness weights matching `evaluate`'s tuples (all objectives minimised).

        Returns:
            ``(-1.0, ...)``.
        """
        return tuple(-1.0 for _ in self.objectives)

    def values(self, evaluation: FilterEvaluation) -> tuple[float, ...]:
        """The fitness tuple of an evaluation.

        Args:
            evaluation: The measurements.

        Returns:
            One value per objective.
        """
        return tuple(float(getattr(evaluation, FILTER_OBJECTIVES[n])) for n in self.objectives)

    def compute(self, keys: Sequence[bytes], genomes: Sequence[np.ndarray]) -> list[FilterEvaluation]:
        """Prune, fine-tune and score genomes (``chunk_size`` is 1: one at a time).

        Physical surgery gives every genome its own layer shapes, so genomes are
        fine-tuned one after the other (no population batching).

        Args:
            keys: The genomes' keys (they seed the fine-tunes).
            genomes: Validated 0/1 genomes.

        Returns:
            One record per genome, in order.
        """
        out = []
        for key, g in zip(keys, genomes):
            with isolated_global_rng():  # surgery builds layers: keep Keras off the search's random stream
                out.append(self._evaluate_one(key, g))
            self.rss_trace.append(round(rss_mb(), 1))
        return out

    def _evaluate_one(self, key: bytes, genes: np.ndarray) -> FilterEvaluation:
        keep, repairs = self.encoding.decode_with_repairs(genes)
        self.n_repairs += repairs
        model = self.fine_tune(keep, epochs=self.train_config.epochs, seed=derive_seed(self.seed, "filters", key))
        accuracy, loss = self.score(model, "val")
        evaluation = self.describe(model, keep, repairs, accuracy, loss, self.train_config.epochs)
        del model
        if self.free_memory:
            gc.collect()
        return evaluation

    # ---------------------------------------------------------------- building blocks
    def fine_tune(self, keep: Mapping[str, np.ndarray], *, epochs: int, seed: int,
                  splits: Sequence[str] = ("train",)) -> Any:
        """A pruned copy of the suffix (and head), fine-tuned on cached activations.

        Args:
            keep: Repaired keep masks (group name -> bool).
            epochs: Fine-tune epochs (0: prune only).
            seed: Seeds weights-independent randomness (batch order, dropout).
            splits: Splits trained on (the final retrain may add ``"val"``).

        Returns:
            The trained, physically pruned suffix model.
        """
        import keras

        from evoprune_tf.nn.surgery import prune_filters  # nn imports Keras: this module must not

        keras.utils.set_random_seed(int(seed) % 2**32)
        model = prune_filters(self.suffix, keep, name=f"{self.suffix.name}_pruned")
        if not self.train_batchnorm:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        if epochs > 0:
            x = np.concatenate([self.activations[s][0] for s in splits])
            y = np.concatenate([self.activations[s][1] for s in splits])
            optimizer = make_optimizer(self.train_config, global_clipnorm=self.clip_norm)
            with released_custom_gradients():  # else each traced step's graph stays in TF's registry
                model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                              jit_compile=False)
                model.fit(x, y, batch_size=self.train_config.batch_size, epochs=int(epochs), shuffle=True,
                          verbose=0)
        return model

    def score(self, model: Any, split: str = "val") -> tuple[float, float]:
        """Accuracy and cross-entropy of a (pruned) suffix on a split's cached activations.

        Args:
            model: A suffix model (cut activations -> class probabilities).
            split: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            ``(accuracy, loss)``; ``(nan, nan)`` for an empty split.
        """
        x, y = self.activations[split]
        if len(y) == 0:
            return float("nan"), float("nan")
        probs = _predict(model, x, self.batch_size, eager=True)
        picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
        return float(np.mean(np.argmax(probs, axis=1) == y)), float(-np.mean(np.log(picked)))

    def describe(self, model: Any, keep: Mapping[str, np.ndarray], repairs: int, accuracy: float, loss: float,
                 epochs: int) -> FilterEvaluation:
        """The `FilterEvaluation` of a pruned suffix.

        Args:
            model: The pruned suffix.
            keep: Its keep masks.
            repairs: Repairs made when decoding.
            accuracy: Its validation accuracy.
            loss: Its validation loss.
            epochs: Epochs it was fine-tuned.

        Returns:
            The record.
        """
        from evoprune_tf.nn.flops import count_flops  # nn imports Keras: this module must not

        cost = count_flops(model)
        latency = self.latency_table.predict_ms(model) if self.latency_table is not None else float("nan")
        return FilterEvaluation(
            error=1.0 - accuracy, accuracy=accuracy, loss=loss,
            flops=int(cost.flops), flops_fraction=cost.flops / max(1, self.suffix_cost.flops),
            params=int(cost.params), params_fraction=cost.params / max(1, self.suffix_cost.params),
            network_flops=int(self.prefix_flops + cost.flops), network_params=int(self.prefix_params + cost.params),
            kept_filters=int(sum(int(np.sum(m)) for m in keep.values())), repairs=int(repairs), epochs_run=int(epochs),
            latency_ms=latency, latency_fraction=latency / self.suffix_latency_ms if self.suffix_latency_ms else latency,
        )

    def compact_model(self, pruned_suffix: Any, *, name: str = "compact") -> Any:
        """The whole deployable network: frozen prefix followed by a pruned suffix.

        Args:
            pruned_suffix: A model from `fine_tune`.
            name: The model's name.

        Returns:
            A functional model taking what ``encoding.model`` takes.
        """
        import keras

        if self.prefix is None:
            return pruned_suffix
        inputs = keras.Input(shape=tuple(self.model.inputs[0].shape[1:]), name="input")
        return keras.Model(inputs, pruned_suffix(self.prefix(inputs, training=False)), name=name)

    def stats(self) -> dict[str, float]:
        """Counters for progress and tracking.

        Returns:
            ``trained``, ``cache_hits``, ``repairs``, ``train_seconds``, ``evals_per_second``,
            ``prefix_seconds``, ``rss_mb``.
        """
        return {**super().stats(), "repairs": self.n_repairs, "prefix_seconds": self.prefix_seconds,
                "rss_mb": rss_mb()}


def _predict(model: Any, x: np.ndarray, batch_size: int, *, eager: bool = False) -> np.ndarray:
    """Outputs of ``model`` on ``x`` in fixed-size batches (inference mode).

    ``eager`` calls the model directly: for a model used once (a fresh pruned suffix)
    that avoids tracing a predict function whose graph would stay in memory.
    """
    import keras

    out = []
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        if eager:
            out.append(keras.ops.convert_to_numpy(model(batch, training=False)))
        else:
            n = len(batch)
            if n < batch_size:  # one traced shape for every batch
                batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
            out.append(np.asarray(model.predict_on_batch(batch))[:n])
    return np.concatenate(out).astype(np.float32)
