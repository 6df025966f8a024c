"""Process-pool fitness evaluation: a toolbox ``map`` that trains heads in worker processes.

`ProcessPoolMap` wraps a `concurrent.futures.ProcessPoolExecutor` started with the
``spawn`` method (TensorFlow is not fork-safe, and a forked child would inherit whatever
the parent loaded). Each worker rebuilds the run's `PopulationEvaluator` *once*, in the
pool initializer, from its picklable parts (encoding, feature arrays, training recipe,
seed, objectives, OOD features); tasks carry only genomes, and answers only `Evaluation`
records. The parent keeps the one fitness cache: genomes it already knows never leave
the process, the answers are stored in the parent evaluator's cache (so checkpoints
hold them and its counters move), and the result order is the input order.

A genome's fitness is a pure function of (genome, seed, config) and does not depend on
the batch it is trained in (see `evoprune_tf.train.numpy_engine`), so a run with ``workers=2``
ends exactly like the serial run. Workers import NumPy, SciPy and the numpy trainer
only: never TensorFlow or Keras (`worker_reports` says what each one loaded).

Typical use (`evoprune_tf.app.run.run` does this when ``config.workers > 1``)::

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
import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable

import numpy as np

from evoprune_tf.encodings import Encoding
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.objectives import Evaluation, objective_values
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.train import TrainConfig

__all__ = ["ProcessPoolMap", "EvaluatorRecipe"]


@dataclasses.dataclass(frozen=True)
class EvaluatorRecipe:
    """The picklable parts of a `PopulationEvaluator`, to rebuild it in another process.

    Attributes:
        encoding: genome <-> head masks.
        features: the cached feature splits (plain NumPy arrays).
        train_config: the head's training recipe.
        seed: the run seed.
        objectives: objective names.
        ood_features: OOD features or None.
        temperature: softmax temperature of the OOD score.
        chunk_size: genomes per trainer call.
        loss_resolution: rounding of the loss objective.
    """

    encoding: Encoding
    features: FeatureSplits
    train_config: TrainConfig
    seed: int
    objectives: tuple[str, ...]
    ood_features: np.ndarray | None
    temperature: float
    chunk_size: int
    loss_resolution: float = 0.0

    @classmethod
    def of(cls, evaluator: PopulationEvaluator) -> "EvaluatorRecipe":
        """The recipe of an existing evaluator."""
        return cls(
            encoding=evaluator.encoding, features=evaluator.data, train_config=evaluator.train_config,
            seed=evaluator.seed, objectives=tuple(evaluator.objectives), ood_features=evaluator.ood_features,
            temperature=evaluator.temperature, chunk_size=evaluator.chunk_size,
            loss_resolution=evaluator.loss_resolution,
        )

    def build(self) -> PopulationEvaluator:
        """A fresh evaluator (empty cache) equivalent to the original."""
        return PopulationEvaluator(
            self.encoding, self.features, self.train_config, seed=self.seed, objectives=self.objectives,
            ood_features=self.ood_features, temperature=self.temperature, chunk_size=self.chunk_size,
            loss_resolution=self.loss_resolution,
        )


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
    _limit_blas_threads(blas_threads)
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


def _limit_blas_threads(threads: int) -> None:
    """Keep ``workers x BLAS threads`` within the cores (optional: needs threadpoolctl)."""
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


class ProcessPoolMap:
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
            initargs=(EvaluatorRecipe.of(evaluator), blas_threads),
        )
        self.worker_reports: dict[int, dict[str, Any]] = {}

    def _is_evaluate(self, func: Callable) -> bool:
        target = func.func if isinstance(func, functools.partial) and not func.args and not func.keywords else func
        return target == self.evaluator.evaluate

    def map(self, func: Callable, iterable: Iterable) -> list:
        """``toolbox.map``: evaluator calls go to the workers, anything else maps serially.

        Genomes already in the parent's cache (or repeated in ``iterable``) are not sent;
        the others are split into ``workers`` chunks, and their records join the cache.

        Returns:
            The fitness tuples (or ``func``'s results) in input order.
        """
        if not self._is_evaluate(func):
            return list(map(func, iterable))
        evaluator = self.evaluator
        keys, missing = evaluator.split_cached(list(iterable))
        if missing:
            self._compute(missing)
        return [objective_values(evaluator.cache[k], evaluator.objectives, evaluator.loss_resolution) for k in keys]

    def _compute(self, missing: dict[bytes, np.ndarray]) -> None:
        if self._executor is None:
            raise RuntimeError("ProcessPoolMap is closed; expected map() before close()")
        began = time.perf_counter()
        todo = list(missing.items())
        n_chunks = min(self.workers, len(todo))
        bounds = np.linspace(0, len(todo), n_chunks + 1).round().astype(int)
        chunks = [todo[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        futures = [self._executor.submit(_measure_chunk, [g for _, g in chunk]) for chunk in chunks]
        try:
            for chunk, future in zip(chunks, futures):
                evaluations, report = future.result()
                for (key, _), evaluation in zip(chunk, evaluations):
                    self.evaluator.cache[key] = evaluation
                self._note(report, len(chunk))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        self.evaluator.n_trained += len(todo)
        # Wall time of the parallel section: evals/s and ETA show the real throughput.
        self.evaluator.train_seconds += time.perf_counter() - began

    def _note(self, report: dict[str, Any], n_genomes: int) -> None:
        pid = report.pop("pid")
        seen = self.worker_reports.setdefault(pid, {"tasks": 0, "genomes": 0})
        seen.update(report)
        seen["tasks"] += 1
        seen["genomes"] += n_genomes

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

    def __enter__(self) -> "ProcessPoolMap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        raise TypeError("ProcessPoolMap holds live processes and does not pickle; pickle the evaluator's cache")
