"""Process-pool fitness evaluation: a toolbox ``map`` that trains heads in worker processes.

`ProcessPoolMap` wraps a `concurrent.futures.ProcessPoolExecutor` started with the
``spawn`` method (TensorFlow is not fork-safe, and a forked child would inherit whatever
the parent loaded). Each worker rebuilds the run's evaluator *once*, in the pool
initializer, from its `EvaluatorRecipe` (the evaluator's class, encoding, feature arrays,
training recipe and `options`: seed, objectives, OOD features, resampling...); tasks carry
only genomes, and answers only `Evaluation` records. The parent keeps the one fitness
cache (`WorkerMap`, shared with the Ray runner): genomes it already knows never leave
the process, the answers are stored in the parent evaluator's cache (so checkpoints
hold them and its counters move), and the result order is the input order.

A genome's fitness is a pure function of (genome, seed, config) and does not depend on
the batch it is trained in (see `evoprune_tf.train.numpy_engine`), so a run with ``workers=2``
ends exactly like the serial run. With the default Keras engine every worker imports
Keras and its backend when it first trains (TensorFlow: about 8 CPU-seconds per worker,
at every pool start-up); with ``TrainConfig(engine="numpy")`` workers import NumPy, SciPy
and the NumPy trainer only, never TensorFlow or Keras (`worker_reports` says what each
one loaded).

Typical use (`evoprune_tf.methods.head.run.run_head` does this when ``config.workers > 1``)::

    pool = ProcessPoolMap(evaluator, workers=2)
    toolbox.register("map", pool.map)
    try:
        ...  # any loop that evaluates through toolbox.map
    finally:
        pool.close()
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from evoprune_tf.encodings import Encoding
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.objectives import Evaluation
from evoprune_tf.train import TrainConfig

__all__ = ["ProcessPoolMap", "EvaluatorRecipe", "WorkerMap", "limit_blas_threads"]


@dataclasses.dataclass(frozen=True)
class EvaluatorRecipe:
    """What rebuilds an evaluator in another process: its class and constructor arguments.

    The options come from the evaluator's own ``options()``, so a subclass with more
    options (`evoprune_tf.resampling.ResampledEvaluator`: method, folds, repeats,
    partition seed) is rebuilt with them, and the workers compute the parent's fitness.

    Attributes:
        evaluator_class: the class of the original evaluator.
        encoding: genome <-> head masks.
        features: the cached feature splits (plain NumPy arrays).
        train_config: the head's training recipe.
        options: the keyword options of ``evaluator_class`` (its ``options()``).
    """

    evaluator_class: type[PopulationEvaluator]
    encoding: Encoding
    features: FeatureSplits
    train_config: TrainConfig
    options: Mapping[str, Any]

    @classmethod
    def from_evaluator(cls, evaluator: PopulationEvaluator) -> "EvaluatorRecipe":
        """The recipe of an existing evaluator.

        Args:
            evaluator: a `PopulationEvaluator` or a subclass of it.

        Returns:
            A picklable recipe whose `build` gives an evaluator with the same fitness.
        """
        return cls(type(evaluator), evaluator.encoding, evaluator.data, evaluator.train_config, evaluator.options())

    def build(self) -> PopulationEvaluator:
        """A fresh evaluator (empty cache) equal to the original.

        Returns:
            An instance of ``evaluator_class``.
        """
        return self.evaluator_class(self.encoding, self.features, self.train_config, **self.options)


# ----------------------------------------------------------------- worker side

_worker_evaluator: PopulationEvaluator | None = None
_worker_builds = 0


def _init_worker(recipe: EvaluatorRecipe, blas_threads: int) -> None:
    """Pool initializer: build this worker's evaluator once, for every task it will run."""
    global _worker_evaluator, _worker_builds
    # Ctrl-C goes to the whole process group: the parent handles it (checkpoint, MLflow
    # status, pool shutdown); a worker printing its own traceback would only add noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    limit_blas_threads(blas_threads)
    _worker_evaluator = recipe.build()
    _worker_builds += 1


def _exit_with_parent() -> None:
    """End this worker when the parent dies, even by SIGKILL.

    Workers wait on a queue whose write end they hold themselves, so they would never
    see the parent go: without this watch a killed run leaves its workers behind.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:  # pragma: no cover - always set for spawned workers
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="evoprune-parent-watch", daemon=True).start()


def limit_blas_threads(threads: int) -> None:
    """Keep ``workers x BLAS threads`` within the cores (optional: needs threadpoolctl).

    Args:
        threads: BLAS threads this process may use (at least 1).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - an optional nicety, not a requirement
        return
    threadpool_limits(limits=max(1, int(threads)), user_api="blas")


def _measure_chunk(genomes: list[np.ndarray]) -> tuple[list[Evaluation], dict[str, Any]]:
    """Worker task: `Evaluation` records of a chunk of genomes, plus who computed them."""
    if _worker_evaluator is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("worker evaluator missing; expected the pool initializer to build it")
    began = time.perf_counter()
    evaluations = _worker_evaluator.measure(genomes)
    return evaluations, {
        "pid": os.getpid(),
        "builds": _worker_builds,
        "seconds": time.perf_counter() - began,
        "tensorflow": "tensorflow" in sys.modules,
        "keras": "keras" in sys.modules,
    }


# ----------------------------------------------------------------- parent side


def split_batches(todo: list, n: int) -> list[list]:
    """``todo`` cut into at most ``n`` contiguous batches of near-equal size (none empty).

    Args:
        todo: the items, in order.
        n: the number of workers.

    Returns:
        The batches, in order.
    """
    bounds = np.linspace(0, len(todo), min(n, len(todo)) + 1).round().astype(int)
    return [todo[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class WorkerMap:
    """The parent side of a runner whose evaluations happen in other processes.

    The parent keeps the one fitness cache: ``map`` sends only the genomes the
    evaluator has not measured (`CachedEvaluator.split_cached`), a subclass's
    ``_compute_batches`` has them measured elsewhere and hands every answer to
    ``_record``, and the counters move here once per call, as the serial run's do.

    Attributes:
        evaluator: the run's evaluator; its cache and counters are the run's.
        workers: number of worker processes or actors.
        worker_reports: per worker pid, its newest report plus ``tasks`` and ``genomes``
            served.
    """

    name = "workers"
    evaluator: PopulationEvaluator
    workers: int
    worker_reports: dict[int, dict[str, Any]]

    def map(self, func: Callable, iterable: Iterable) -> list:
        """``toolbox.map``: evaluator calls go to the workers, anything else maps serially.

        Genomes already in the parent's cache (or repeated in ``iterable``) are not sent;
        the others are split into one batch per worker, and their records join the cache.

        Args:
            func: the mapped function (usually ``toolbox.evaluate``).
            iterable: the individuals.

        Returns:
            The fitness tuples (or ``func``'s results) in input order.
        """
        evaluator = self.evaluator
        if not evaluator.is_evaluate(func):
            return list(map(func, iterable))
        keys, missing = evaluator.split_cached(list(iterable))
        if missing:
            began = time.perf_counter()
            self._compute_batches(list(missing.items()))
            evaluator.n_trained += len(missing)
            # Wall time of the parallel section: evals/s and ETA show the real throughput.
            evaluator.train_seconds += time.perf_counter() - began
        return [evaluator.values(evaluator.cache[k]) for k in keys]

    def _compute_batches(self, todo: list[tuple[bytes, np.ndarray]]) -> None:
        """Measure ``(key, genome)`` pairs in the workers, `_record`-ing every answer."""
        raise NotImplementedError

    def _record(self, batch: list[tuple[bytes, np.ndarray]], evaluations: list[Evaluation],
                report: dict[str, Any]) -> None:
        """Cache a batch's answers and note which worker computed them."""
        for (key, _), evaluation in zip(batch, evaluations):
            self.evaluator.cache[key] = evaluation
        seen = self.worker_reports.setdefault(report.pop("pid"), {"tasks": 0, "genomes": 0})
        seen.update(report)
        seen["tasks"] += 1
        seen["genomes"] += len(batch)

    def close(self) -> None:
        """Stop the workers; later calls do nothing."""

    def __enter__(self) -> "WorkerMap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        raise TypeError(f"{type(self).__name__} holds live workers and does not pickle; pickle the evaluator's cache")


class ProcessPoolMap(WorkerMap):
    """A DEAP toolbox ``map`` that evaluates genomes in spawned worker processes.

    Args:
        evaluator: the run's evaluator; its cache and counters are the run's.
        workers: number of worker processes (at least 1).
        blas_threads: BLAS threads per worker; default ``cpu_count // workers`` (at least 1).

    Attributes:
        worker_reports: per worker pid, the newest report of that worker: ``builds``
            (times its evaluator was built: 1), ``tensorflow`` / ``keras`` (whether it
            imported them), ``tasks`` and ``genomes`` served.
    """

    name = "processes"

    def __init__(self, evaluator: PopulationEvaluator, workers: int, *, blas_threads: int | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers={workers!r}; expected a positive number of processes")
        self.evaluator = evaluator
        self.workers = workers
        if blas_threads is None:
            blas_threads = max(1, (os.cpu_count() or 1) // workers)
        self._executor: concurrent.futures.ProcessPoolExecutor | None = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(EvaluatorRecipe.from_evaluator(evaluator), blas_threads),
        )
        self.worker_reports: dict[int, dict[str, Any]] = {}

    def _compute_batches(self, todo: list[tuple[bytes, np.ndarray]]) -> None:
        if self._executor is None:
            raise RuntimeError("ProcessPoolMap is closed; expected map() before close()")
        batches = split_batches(todo, self.workers)
        futures = [self._executor.submit(_measure_chunk, [g for _, g in batch]) for batch in batches]
        try:
            for batch, future in zip(batches, futures):
                self._record(batch, *future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def stats(self) -> dict[str, Any]:
        """Counters of this runner (the interface every runner shares).

        Returns:
            ``runner``, ``workers`` and ``pids`` (worker processes that answered).
        """
        return {"runner": self.name, "workers": self.workers, "pids": sorted(self.worker_reports)}

    def close(self) -> None:
        """Stop the workers (pending tasks are cancelled); later calls do nothing."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True, cancel_futures=True)
