"""Study grids: the cross product of config overrides, one tracked run per cell, resumable.

A grid file is a config file with one more table, ``[grid]``::

    [grid]
    name = "rps-study"          # default: the file's stem
    base = "rps.toml"           # optional config file the cells start from (relative to this file)
    runner = "serial"           # or "ray": each run is a Ray task with its own resources
    workers = 2                 # ray: runs at once (0: the cluster's CPUs // cpus_per_run)
    cpus_per_run = 1.0
    gpus_per_run = 0.0          # fractional allowed
    ray_address = ""            # "" (local cluster), "auto", "host:port"
    max_retries = 2             # ray: restarts of a run whose worker died

    [grid.axes]                 # dotted config keys -> the values to cross
    seed = [0, 1, 2, 3, 4]
    "encoding.name" = ["feature_selection", "neuron_pruning"]
    "operators.mate" = ["uniform", {name = "uniform", indpb = 0.3}]
    algorithm = [{name = "steady_state"}, {name = "nsga2"}]   # a table merges into its section

    [algorithm]                 # every other table overrides the base config for all cells
    evaluations = 100

Every cell's config is validated before the first run starts (one `ValueError` line for
a grid key that is not a config key, a `ConfigError` listing a cell's problems). Each
cell becomes one MLflow run in the config's experiment, tagged ``evoprune.grid`` (the
grid's name), ``evoprune.grid_cell`` (a digest of the cell's whole config, minus the
settings that do not change results: display, tracking, checkpoints, runner),
``evoprune.grid_label`` and ``evoprune.grid.<axis>`` (one per axis, for
``evoprune compare --group-by``).

Resuming is running the grid again: a cell with a FINISHED run is skipped; a cell whose
last run died (still RUNNING: its process or Ray worker is gone, or FAILED/KILLED) and
left a checkpoint is marked FAILED and continued from that checkpoint in the same run;
any other cell starts afresh. Editing the grid reruns exactly the cells whose config
changed. Run one grid driver per experiment at a time: a RUNNING run is taken for dead.

On Ray, the cells are tasks (``cpus_per_run`` / ``gpus_per_run`` each); a task whose
worker dies is retried by Ray and resumes from its checkpoint as above. Concurrent runs
should log to one MLflow tracking server (``evoprune server``): SQLite files do not like
many writers.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import time
from typing import Any, Callable, Mapping, TextIO

from evoprune_tf.errors import one_line
from evoprune_tf.experiment.config import config_from_dict
from evoprune_tf.experiment.run import run
from evoprune_tf.runners.ray_runner import check_cluster_resources, connect_ray, forwarded_env, import_ray
from evoprune_tf.studies import grid_spec
from evoprune_tf.studies.grid_spec import (  # noqa: F401 - all re-exported (grid_spec.__all__)
    AXIS_TAG_PREFIX,
    CELL_TAG,
    GRID_TAG,
    LABEL_TAG,
    Grid,
    GridCell,
    cell_key,
    grid_from_dict,
    load_grid,
)
from evoprune_tf.studies.grid_state import GridTags, cell_runs, grid_status, resumable
from evoprune_tf.tracking.experiments import ensure_experiment
from evoprune_tf.tracking.redact import redact_uri

# Reading a grid file lives in `grid_spec`, its MLflow state in `grid_state`; their public
# names stay importable from here, where users import them.
__all__ = [
    *grid_spec.__all__,
    "CellOutcome",
    "GridResult",
    "grid_status",
    "run_grid",
    "run_cell",
    "add_grid_arguments",
    "run_grid_command",
]

_RESUMES_TAG = "evoprune.grid_resumes"


@dataclasses.dataclass
class CellOutcome:
    """What happened to one cell.

    Attributes:
        key: the cell's digest.
        label: the cell's label.
        status: ``"finished"`` (ran now), ``"skipped"`` (finished before) or ``"failed"``.
        run_id: its MLflow run (None when it failed before one was created).
        resumed: continued from a checkpoint of a run that died.
        seconds: wall time of this attempt.
        error: the one-line error of a failed cell.
    """

    key: str
    label: str
    status: str
    run_id: str | None = None
    resumed: bool = False
    seconds: float = 0.0
    error: str | None = None


@dataclasses.dataclass
class GridResult:
    """The outcome of `run_grid`.

    Attributes:
        grid: the grid that ran.
        outcomes: one per cell, in grid order.
        seconds: wall time of the whole grid.
    """

    grid: Grid
    outcomes: list[CellOutcome]
    seconds: float

    def count(self, status: str) -> int:
        """Cells with this status (``finished``, ``skipped``, ``failed``).

        Args:
            status: the status.

        Returns:
            Their number.
        """
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        """One line: counts and wall time.

        Returns:
            e.g. ``grid 'rps': 4 cells, 2 finished, 2 skipped, 0 failed in 31.2 s``.
        """
        return (f"grid {self.grid.name!r}: {len(self.outcomes)} cells, {self.count('finished')} finished, "
                f"{self.count('skipped')} skipped, {self.count('failed')} failed in {self.seconds:.1f} s")


def run_cell(config_dict: dict, tags: Mapping[str, str], features: Any = None, ood_features: Any = None) -> CellOutcome:
    """Run (or skip, or resume) one grid cell: the body of a serial step or a Ray task.

    A FINISHED run of the cell means nothing to do. A dead run with a checkpoint is
    marked FAILED and continued in the same MLflow run. Otherwise a new run starts.

    Args:
        config_dict: the cell's config (`GridCell.config`).
        tags: the cell's tags (`GridCell.tags`).
        features: cached features to use instead of loading images (tests, notebooks).
        ood_features: OOD features to go with ``features``.

    Returns:
        The `CellOutcome`. An error inside the run is reported as ``"failed"``;
        ``KeyboardInterrupt`` propagates.
    """
    from mlflow import MlflowClient

    began = time.time()
    key, label = tags[CELL_TAG], tags.get(LABEL_TAG, "")
    try:
        config = config_from_dict(config_dict, source=f"grid cell [{label}]")
        uri = config.tracking.uri
        runs = cell_runs(uri, config.tracking.experiment).get(key, [])
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished:
            return CellOutcome(key, label, "skipped", finished[0].info.run_id)
        client = MlflowClient(tracking_uri=uri)
        for dead in runs:
            if dead.info.status == "RUNNING":  # its process is gone: see the module docstring
                client.set_terminated(dead.info.run_id, status="FAILED")
        again = resumable(runs)
        callbacks = [GridTags(uri, tags)]
        kwargs = dict(callbacks=callbacks, features=features, ood_features=ood_features, out=_quiet_out(config))
        if again is not None:
            previous, path = again
            resumes = int(previous.data.tags.get(_RESUMES_TAG, "0")) + 1
            client.set_tag(previous.info.run_id, _RESUMES_TAG, str(resumes))
            result = run(config, checkpoint=path, **kwargs)
        else:
            result = run(config, **kwargs)
    except Exception as error:  # noqa: BLE001 - one failing cell must not stop the grid
        return CellOutcome(key, label, "failed", None, seconds=time.time() - began,
                           error=f"{type(error).__name__}: {one_line(error)}")
    return CellOutcome(key, label, "finished", result.run_id, resumed=again is not None, seconds=time.time() - began)


def _quiet_out(config: Any) -> TextIO | None:
    # Concurrent runs (progress off) print their reports to a sink, not over each other.
    return None if config.progress else io.StringIO()


def run_grid(
    grid: Grid,
    *,
    features: Any = None,
    ood_features: Any = None,
    out: TextIO | None = None,
    ray_init_options: Mapping[str, Any] | None = None,
    cell_function: Callable[..., CellOutcome] = run_cell,
) -> GridResult:
    """Run every cell of a grid that has not finished yet, serially or as Ray tasks.

    Args:
        grid: from `load_grid` / `grid_from_dict`.
        features: cached features shared by every cell instead of loading images (on
            Ray they go into the object store once).
        ood_features: OOD features to go with ``features``.
        out: where the per-cell lines go (default stdout).
        ray_init_options: `ray.init` options when this call starts Ray.
        cell_function: the body of a cell (`run_cell`); tests swap it.

    Returns:
        The `GridResult` (one `CellOutcome` per cell, in grid order).

    Raises:
        ImportError: a Ray grid without Ray installed (the message names the extra).
        ValueError: an unreachable Ray address, more GPUs or CPUs per run than the cluster has.
    """
    out = out or sys.stdout
    began = time.time()
    _ensure_experiment(grid.tracking_uri, grid.experiment)
    status = grid_status(grid)
    todo = [c for c in grid.cells if status[c.key][0] != "FINISHED"]
    outcomes: dict[str, CellOutcome] = {
        c.key: CellOutcome(c.key, c.label, "skipped", status[c.key][1])
        for c in grid.cells if status[c.key][0] == "FINISHED"
    }
    print(f"grid {grid.name!r}: {len(grid.cells)} cells, {len(outcomes)} finished before, {len(todo)} to run "
          f"({grid.runner}) -> {redact_uri(grid.tracking_uri)}, experiment {grid.experiment!r}", file=out)
    if grid.runner == "ray" and todo:
        outcomes.update(_run_on_ray(grid, todo, features, ood_features, out, ray_init_options or {}, cell_function))
    else:
        for n, cell in enumerate(todo, 1):
            outcome = cell_function(cell.config, cell.tags(grid.name), features, ood_features)
            outcomes[cell.key] = outcome
            _print_outcome(out, n, len(todo), outcome)
    result = GridResult(grid, [outcomes[c.key] for c in grid.cells], time.time() - began)
    print(result.summary(), file=out)
    return result


def _ensure_experiment(uri: str, name: str) -> None:
    """Create the experiment once, here: concurrent runs creating it at once collide (UNIQUE name)."""
    from mlflow import MlflowClient

    ensure_experiment(MlflowClient(tracking_uri=uri), name, uri)


def _print_outcome(out: TextIO, n: int, total: int, o: CellOutcome) -> None:
    how = " (resumed)" if o.resumed else ""
    tail = f": {o.error}" if o.error else f" run {o.run_id}{how} in {o.seconds:.1f} s"
    print(f"[{n}/{total}] {o.label}: {o.status}{tail}", file=out, flush=True)


def _run_on_ray(grid: Grid, todo: list[GridCell], features: Any, ood_features: Any, out: TextIO,
                init_options: Mapping[str, Any], cell_function: Callable[..., CellOutcome]) -> dict[str, CellOutcome]:
    ray = import_ray()
    owns = connect_ray(grid.ray_address or None, **dict(init_options))
    try:
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
        workers = grid.workers or max(1, int(cpus // grid.cpus_per_run))
        check_cluster_resources(min(workers, len(todo)), grid.cpus_per_run, grid.gpus_per_run, cpus, gpus)
        env = forwarded_env(gpus=bool(grid.gpus_per_run))
        env["MLFLOW_TRACKING_URI"] = grid.tracking_uri
        # Ray retries a task whose worker died (max_retries); the retry resumes the run
        # from its checkpoint (run_cell). Errors inside a run are outcomes, not retries.
        task = ray.remote(num_cpus=grid.cpus_per_run, num_gpus=grid.gpus_per_run, max_retries=grid.max_retries,
                          retry_exceptions=False, runtime_env={"env_vars": env})(cell_function)
        shared = ray.put(features) if features is not None else None
        shared_ood = ray.put(ood_features) if ood_features is not None else None
        queue = list(todo)
        pending: dict[Any, GridCell] = {}
        results: dict[str, CellOutcome] = {}
        while queue or pending:
            while queue and len(pending) < workers:
                cell = queue.pop(0)
                pending[task.remote(cell.config, cell.tags(grid.name), shared, shared_ood)] = cell
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except (ray.exceptions.RayError, OSError) as error:  # its worker died more than max_retries times
                outcome = CellOutcome(cell.key, cell.label, "failed", error=f"{type(error).__name__}: {one_line(error)}")
            results[cell.key] = outcome
            _print_outcome(out, len(results), len(todo), outcome)
        return results
    finally:
        if owns:
            ray.shutdown()


def add_grid_arguments(parser: Any) -> Any:
    """The options of ``evoprune grid``.

    Args:
        parser: an `argparse.ArgumentParser` (or sub-parser).

    Returns:
        The parser.
    """
    parser.add_argument("grid", help="grid TOML: a config plus a [grid] table with [grid.axes]")
    parser.add_argument("--runner", choices=("serial", "ray"), help="run the cells one by one or as Ray tasks")
    parser.add_argument("--workers", type=int, help="Ray: runs at once (0: the cluster's CPUs)")
    parser.add_argument("--ray-address", help="Ray address: auto, host:port or ray://host:port (default: local)")
    parser.add_argument("--gpus-per-run", type=float, help="Ray: GPUs per run (fractional allowed)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and their MLflow status; run nothing")
    return parser


def run_grid_command(args: Any, out: TextIO | None = None) -> int:
    """``evoprune grid``: validate, then run (or list with ``--dry-run``) a grid.

    Args:
        args: parsed `add_grid_arguments` options.
        out: output stream (default stdout).

    Returns:
        The exit status: 0 when no cell failed, else 1.
    """
    out = out or sys.stdout
    settings = {k: v for k, v in (("runner", args.runner), ("workers", args.workers),
                                  ("ray_address", args.ray_address), ("gpus_per_run", args.gpus_per_run))
                if v is not None}
    grid = load_grid(args.grid, overrides={"grid": settings} if settings else None)
    if args.dry_run:
        status = grid_status(grid)
        for cell in grid.cells:
            state, run_id = status[cell.key]
            print(f"{cell.index:4d} {cell.key} {state:8s} {run_id or '-':32s} {cell.label}", file=out)
        return 0
    result = run_grid(grid, out=out)
    return 1 if result.count("failed") else 0
