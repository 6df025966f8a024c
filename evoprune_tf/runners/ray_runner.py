"""The Ray runner: a toolbox ``map`` that evaluates population batches on Ray actors.

`RayMap` connects to Ray (``address=None``: a local cluster; ``"auto"``: the cluster
this machine belongs to; ``"host:port"`` or ``"ray://host:port"``: that head), puts the
run's cached features into the object store *once* (`ray.put` of the evaluator's
recipe: every actor on a node reads the same shared-memory copy) and starts
``workers`` long-lived actors. Each actor builds its `PopulationEvaluator` once and
keeps it, so its trainer keeps its compiled Keras models between generations.

Each ``map`` call sends only the genomes the parent has not measured yet, cut into one
batch per actor. The parent keeps the one fitness cache and the counters, and records a
batch only when its answer arrives. When an actor dies (its process killed, its node
lost), its batch goes to another actor and a replacement actor is started: nothing is
lost, and nothing is counted twice. A genome's fitness is a pure function of (genome,
seed, recipe), whatever batch or process trains it, so results equal the serial ones.

GPUs: ``num_gpus`` is reserved per actor and may be fractional (``0.5``: two actors per
GPU). Ray sets ``CUDA_VISIBLE_DEVICES`` for each actor; the actors also get
``TF_FORCE_GPU_ALLOW_GROWTH`` and ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so that
actors sharing a GPU do not each claim all of its memory.

Typical use (`evoprune_tf.runners.make_runner` builds it for ``runner = "ray"``)::

    runner = RayMap(evaluator, workers=4, address="auto", num_gpus=0.5)
    toolbox.register("map", runner.map)
    try:
        ...  # any loop that evaluates through toolbox.map
    finally:
        runner.close()
"""

from __future__ import annotations

import collections
import os
import socket
import time
from typing import Any

import numpy as np

from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.objectives import Evaluation
from evoprune_tf.runners.processes import EvaluatorRecipe, WorkerMap, limit_blas_threads, split_batches

__all__ = ["RayMap", "RAY_EXTRA", "import_ray", "check_ray_address", "check_cluster_resources", "connect_ray",
           "ray_available", "forwarded_env"]

#: How to install the optional dependency (named in every "Ray is missing" error).
RAY_EXTRA = 'pip install "evoprune-tf[ray]"'
#: Environment variables forwarded to Ray workers: the Keras backend decides the numbers,
#: and grid runs must log where the driver logs. (Paths local to the driver are not sent.)
# The tracking server's credentials too: grid cells log from the workers (an `evoprune server --auth`).
_FORWARDED_ENV = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "MLFLOW_DISABLE_TELEMETRY", "MLFLOW_TRACKING_URI",
                  "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def ray_available() -> bool:
    """Whether Ray can be imported (without importing it).

    Returns:
        True when the ``ray`` package is installed.
    """
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def import_ray() -> Any:
    """Import Ray, or fail with one line that names the extra to install.

    Returns:
        The ``ray`` module.

    Raises:
        ImportError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ImportError(f"runner 'ray' needs Ray, which is not installed; expected it installed: {RAY_EXTRA}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_ray_address(address: str | None, *, timeout: float = 2.0) -> None:
    """Check, cheaply and before any work starts, that a Ray address can be reached.

    Args:
        address: ``None`` / ``""`` / ``"local"`` (start a local cluster), ``"auto"`` (a
            cluster already running on this machine), ``"host:port"`` (a head's GCS
            address) or ``"ray://host:port"`` (Ray Client).
        timeout: seconds to wait for the TCP connection.

    Raises:
        ValueError: a malformed address, ``"auto"`` with no cluster on this machine, or a
            head that does not accept connections.
    """
    if not address or address == "local":
        return
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            check_ray_address(os.environ["RAY_ADDRESS"], timeout=timeout)
            return
        # `ray start` writes the running cluster's address here; `ray stop` removes it.
        if not os.path.exists("/tmp/ray/ray_current_cluster"):
            raise ValueError("ray_address='auto' but no Ray cluster runs on this machine; "
                             "expected `ray start --head` first, or a host:port address")
        return
    target = _host_port(address)
    if target is None:
        raise ValueError(f"ray_address={address!r} is malformed; expected 'auto', 'host:port' or 'ray://host:port'")
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as error:
        raise ValueError(f"ray_address={address!r} is unreachable ({type(error).__name__}); "
                         "expected the address of a running Ray head (`ray start --head` prints it)") from None


def connect_ray(address: str | None = None, **init_options: Any) -> bool:
    """Connect this process to Ray unless it already is.

    Args:
        address: see `check_ray_address`; ``None`` starts a local cluster.
        **init_options: more `ray.init` options (``num_cpus``, ``_temp_dir``...).

    Returns:
        True when this call started the connection (the caller should shut it down).

    Raises:
        ImportError: Ray is not installed.
        ValueError: an unreachable address.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    check_ray_address(address)
    # Actors' TensorFlow start-up noise would flood the driver; their errors still come
    # back as exceptions of the calls that failed.
    options = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": False, **init_options}
    if address and address != "local":
        options.pop("num_cpus", None)  # a running cluster has its resources already
        options.pop("num_gpus", None)
    ray.init(address=address or None, **options)
    return True


def forwarded_env(*, gpus: bool = False) -> dict[str, str]:
    """Environment variables that Ray workers get from this process.

    Workers on other nodes inherit the environment of ``ray start``, not the driver's:
    the Keras backend (which decides the numbers) and the caches are sent explicitly.

    Args:
        gpus: add the settings that let several workers share one GPU's memory.

    Returns:
        ``name -> value`` for ``runtime_env={"env_vars": ...}``.
    """
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    if gpus:
        env.update(TF_FORCE_GPU_ALLOW_GROWTH="true", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    return env


class _EvaluatorActor:
    """A Ray actor holding one `PopulationEvaluator` for the whole run."""

    def __init__(self, recipe: EvaluatorRecipe, blas_threads: int) -> None:
        limit_blas_threads(blas_threads)
        self.evaluator = recipe.build()
        self.batches = 0

    def measure(self, genomes: list[np.ndarray]) -> tuple[list[Evaluation], dict[str, Any]]:
        """`Evaluation` records of a batch, plus who computed them."""
        import ray

        began = time.perf_counter()
        evaluations = self.evaluator.measure(genomes)
        self.batches += 1
        return evaluations, {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "batches": self.batches,
            "seconds": time.perf_counter() - began,
        }

    def pid(self) -> int:
        """The actor's process id (tests kill it to check that a death is survived)."""
        return os.getpid()


class RayMap(WorkerMap):
    """A DEAP toolbox ``map`` that evaluates population batches on long-lived Ray actors.

    Args:
        evaluator: the run's evaluator; its cache and counters are the run's.
        workers: number of actors; 0 uses every CPU of the cluster (``CPU // num_cpus``).
        address: Ray address (see `check_ray_address`); ignored when this process is
            already connected.
        num_gpus: GPUs reserved per actor (fractional allowed; 0: CPU only).
        num_cpus: CPUs reserved per actor.
        max_retries: times one batch may be resubmitted after actors died before the
            map gives up.
        init_options: more `ray.init` options when this runner starts the connection.

    Attributes:
        worker_reports: per actor pid, its newest report (``node``, ``gpu_ids``,
            ``batches``) and the ``tasks`` and ``genomes`` it served.
        restarts: actors replaced after they died.
        retried_batches: batches resubmitted after their actor died.

    Raises:
        ImportError: Ray is not installed (the message names the extra).
        ValueError: bad ``workers`` / ``num_gpus``, an unreachable address, or more GPUs
            or CPUs asked for than the cluster has.
    """

    name = "ray"

    def __init__(
        self,
        evaluator: PopulationEvaluator,
        workers: int = 0,
        *,
        address: str | None = None,
        num_gpus: float = 0.0,
        num_cpus: float = 1.0,
        max_retries: int = 3,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers={workers!r}; expected 0 (every CPU of the cluster) or a positive number of actors")
        if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or num_gpus < 0:
            raise ValueError(f"num_gpus={num_gpus!r}; expected 0 or a positive (possibly fractional) number per worker")
        if not num_cpus > 0:
            raise ValueError(f"num_cpus={num_cpus!r}; expected a positive number per worker")
        ray = import_ray()
        self._ray = ray
        self.evaluator = evaluator
        self.num_gpus = float(num_gpus)
        self.num_cpus = float(num_cpus)
        self.max_retries = int(max_retries)
        self._owns_ray = connect_ray(address, **(init_options or {}))
        self._actors: list[Any] = []
        try:
            resources = ray.cluster_resources()
            cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
            self.workers = workers or max(1, int(cpus // self.num_cpus))
            check_cluster_resources(self.workers, self.num_cpus, self.num_gpus, cpus, gpus)
            env = forwarded_env(gpus=bool(self.num_gpus))
            options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "max_restarts": 0}
            if env:
                options["runtime_env"] = {"env_vars": env}
            self._actor_class = ray.remote(**options)(_EvaluatorActor)
            # The features travel once, into the object store; actors get a reference.
            self._recipe = ray.put(EvaluatorRecipe.from_evaluator(evaluator))
            self._blas_threads = max(1, int(self.num_cpus))
            self._actors = [self._new_actor() for _ in range(self.workers)]
        except BaseException:
            self.close()
            raise
        self.worker_reports: dict[int, dict[str, Any]] = {}
        self.restarts = 0
        self.retried_batches = 0

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._recipe, self._blas_threads)

    def actor_pids(self) -> list[int]:
        """Process ids of the live actors (waits until they are started).

        Returns:
            One pid per actor, in actor order.
        """
        return self._ray.get([a.pid.remote() for a in self._actors])

    def _compute_batches(self, todo: list[tuple[bytes, np.ndarray]]) -> None:
        if not self._actors:
            raise RuntimeError("RayMap is closed; expected map() before close()")
        ray = self._ray
        batches = split_batches(todo, len(self._actors))
        queue = collections.deque(range(len(batches)))
        idle = collections.deque(self._actors)
        # Replacements start cold (imports, model builds: seconds): a retried batch waits
        # for a warm actor to finish unless no other actor is busy.
        cold: collections.deque = collections.deque()
        attempts = [0] * len(batches)
        pending: dict[Any, tuple[int, Any]] = {}
        done = 0
        try:
            while done < len(batches):
                while queue and (idle or (cold and not pending)):
                    index, actor = queue.popleft(), (idle or cold).popleft()
                    ref = actor.measure.remote([g for _, g in batches[index]])
                    pending[ref] = (index, actor)
                ready, _ = ray.wait(list(pending), num_returns=1)
                index, actor = pending.pop(ready[0])
                try:
                    evaluations, report = ray.get(ready[0])
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as error:
                    attempts[index] += 1
                    if attempts[index] > self.max_retries:
                        raise RuntimeError(f"a batch of {len(batches[index])} genomes lost its Ray actor "
                                           f"{attempts[index]} times; expected at most max_retries={self.max_retries} "
                                           f"({type(error).__name__})") from None
                    self._replace(actor)
                    cold.append(self._actors[-1])
                    queue.append(index)
                    self.retried_batches += 1
                    continue
                # A batch is recorded once, when its answer arrives: a retried batch
                # cannot be counted twice, because the dead actor never answered.
                self._record(batches[index], evaluations, report)
                idle.append(actor)
                done += 1
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=False)
            raise

    def _replace(self, dead: Any) -> None:
        self._actors = [a for a in self._actors if a is not dead]
        try:
            self._ray.kill(dead, no_restart=True)
        except Exception:  # noqa: BLE001 - it is dead already
            pass
        self._actors.append(self._new_actor())
        self.restarts += 1

    def stats(self) -> dict[str, Any]:
        """Counters of this runner.

        Returns:
            ``runner``, ``workers``, ``restarts``, ``retried_batches``, ``num_gpus``.
        """
        return {"runner": self.name, "workers": self.workers, "restarts": self.restarts,
                "retried_batches": self.retried_batches, "num_gpus": self.num_gpus}

    def close(self) -> None:
        """Stop the actors (and the local cluster this runner started); later calls do nothing."""
        actors, self._actors = self._actors, []
        for actor in actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()


def check_cluster_resources(workers: int, num_cpus: float, num_gpus: float, cpus: float, gpus: float) -> None:
    """One-line errors for requests the cluster cannot place (the actors or tasks would wait forever).

    Args:
        workers: actors (or concurrent tasks) asked for.
        num_cpus: CPUs per worker.
        num_gpus: GPUs per worker (fractional allowed).
        cpus: CPUs of the cluster.
        gpus: GPUs of the cluster.

    Raises:
        ValueError: more GPUs or CPUs asked for than the cluster has.
    """
    if num_gpus > gpus:
        raise ValueError(f"num_gpus={num_gpus:g} per worker but the Ray cluster has {gpus:g} GPU(s); "
                         f"expected at most {gpus:g}")
    if workers * num_gpus > gpus + 1e-9:
        raise ValueError(f"workers={workers} x num_gpus={num_gpus:g} = {workers * num_gpus:g} GPUs but the Ray "
                         f"cluster has {gpus:g}; expected fewer workers or a smaller (fractional) num_gpus")
    if workers * num_cpus > cpus + 1e-9:
        raise ValueError(f"workers={workers} x num_cpus={num_cpus:g} needs {workers * num_cpus:g} CPUs but the Ray "
                         f"cluster has {cpus:g}; expected at most {int(cpus // num_cpus)} workers")
