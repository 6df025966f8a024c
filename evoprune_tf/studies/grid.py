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

import copy
import dataclasses
import hashlib
import io
import itertools
import json
import sys
import time
import tomllib
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from evoprune_tf.app import config as app_config
from evoprune_tf.app.config import ExperimentConfig, config_from_dict, load_config, merge
from evoprune_tf.app.run import run
from evoprune_tf.app.run_names import run_name
from evoprune_tf.errors import one_line
from evoprune_tf.runners.ray_runner import (
    check_cluster_resources,
    check_ray_address,
    connect_ray,
    forwarded_env,
    import_ray,
)
from evoprune_tf.tracking.experiments import ensure_experiment
from evoprune_tf.tracking.redact import redact_uri
from evoprune_tf.tracking.store import absolute_tracking_uri

__all__ = [
    "GRID_TAG",
    "CELL_TAG",
    "LABEL_TAG",
    "AXIS_TAG_PREFIX",
    "Grid",
    "GridCell",
    "CellOutcome",
    "GridResult",
    "load_grid",
    "grid_from_dict",
    "cell_key",
    "grid_status",
    "run_grid",
    "run_cell",
    "add_grid_arguments",
    "run_grid_command",
]

GRID_TAG = "evoprune.grid"
CELL_TAG = "evoprune.grid_cell"
LABEL_TAG = "evoprune.grid_label"
AXIS_TAG_PREFIX = "evoprune.grid."
_RESUMES_TAG = "evoprune.grid_resumes"

_GRID_KEYS = {"name": str, "base": str, "runner": str, "workers": int, "cpus_per_run": (int, float),
              "gpus_per_run": (int, float), "ray_address": str, "max_retries": int, "axes": dict}
#: Config parts that do not change a run's results: left out of the cell digest, not allowed as axes.
_RUNTIME_KEYS = ("progress", "tracking", "checkpoint", "cache_dir", "workers", "runner", "ray_address", "num_gpus")
_NOT_AXES = ("tracking", "checkpoint", "progress", "cache_dir")


@dataclasses.dataclass(frozen=True)
class GridCell:
    """One run of a grid.

    Attributes:
        index: position in the grid (axes vary last-fastest, in file order).
        key: the ``evoprune.grid_cell`` tag: a digest of the cell's config.
        label: ``axis=value`` pairs, e.g. ``seed=1 encoding.name=neuron_pruning``.
        values: axis -> this cell's value.
        config: the cell's whole config as a plain dict (validated).
    """

    index: int
    key: str
    label: str
    values: dict
    config: dict

    def tags(self, grid_name: str) -> dict[str, str]:
        """The MLflow tags of this cell's run.

        Args:
            grid_name: the grid's name.

        Returns:
            ``evoprune.grid``, ``.grid_cell``, ``.grid_label`` and one ``evoprune.grid.<axis>`` per axis.
        """
        tags = {GRID_TAG: grid_name, CELL_TAG: self.key, LABEL_TAG: self.label}
        tags.update({AXIS_TAG_PREFIX + axis: _value_text(v) for axis, v in self.values.items()})
        return tags


@dataclasses.dataclass(frozen=True)
class Grid:
    """A validated grid: its cells and how to run them.

    Attributes:
        name: the grid's name (``evoprune.grid`` tag).
        source: where it was read from.
        axes: dotted key -> values.
        cells: the cross product, validated.
        runner: ``"serial"`` or ``"ray"``.
        workers: Ray: runs at once (0: the cluster's CPUs // ``cpus_per_run``).
        cpus_per_run: Ray resources per run.
        gpus_per_run: Ray GPUs per run (fractional allowed).
        ray_address: Ray address (``""``: a local cluster).
        max_retries: Ray retries of a run whose worker died.
        tracking_uri: the (absolute) MLflow tracking URI every cell logs to.
        experiment: the MLflow experiment every cell logs to.
    """

    name: str
    source: str
    axes: dict
    cells: tuple[GridCell, ...]
    runner: str = "serial"
    workers: int = 0
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    ray_address: str = ""
    max_retries: int = 2
    tracking_uri: str = ""
    experiment: str = "evoprune"


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


# ----------------------------------------------------------------- building a grid


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _check_axis_key(key: str) -> None:
    """A one-line error unless ``key`` is a dotted path into `ExperimentConfig`."""
    parts = key.split(".")
    if parts[0] in _NOT_AXES:
        raise ValueError(f"grid key {key!r} cannot be an axis; expected a key that changes the run "
                         f"(not {', '.join(_NOT_AXES)}: every cell shares them)")
    cls: Any = ExperimentConfig
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else None
        if hints is None:
            return  # below a free-form table (e.g. operators.mate, backbone.options): any key
        if part not in hints:
            where = ".".join(parts[:depth]) or "the config"
            known = ", ".join(sorted(k for k in hints if not k.startswith("_")))
            raise ValueError(f"grid key {key!r} is not a config key ({part!r} is not in {where}); expected one of: {known}")
        cls = hints[part]


def _nested(key: str, value: Any) -> dict:
    node: Any = copy.deepcopy(value)
    for part in reversed(key.split(".")):
        node = {part: node}
    return node


def cell_key(config_dict: Mapping[str, Any]) -> str:
    """The ``evoprune.grid_cell`` tag of a config: a digest of what changes its results.

    Args:
        config_dict: ``ExperimentConfig.to_dict()``.

    Returns:
        16 hex digits.
    """
    relevant = {k: v for k, v in config_dict.items() if k not in _RUNTIME_KEYS}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_grid(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> Grid:
    """Read and validate a grid file (see the module docstring for its format).

    Args:
        path: the grid ``.toml``.
        overrides: nested config overrides applied to every cell (e.g. from the CLI),
            plus ``{"grid": {...}}`` to override ``[grid]`` settings.

    Returns:
        The validated `Grid`.

    Raises:
        ValueError: a missing or malformed file, a bad ``[grid]`` setting, an axis that is
            not a config key, or a cell with an invalid config (`ConfigError`).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"grid file {path} does not exist; expected a .toml file with a [grid] table")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid TOML ({one_line(error)}); expected a grid file") from None

    raw = merge(raw, dict(overrides or {}))
    raw.setdefault("grid", {}).setdefault("name", path.stem)
    return grid_from_dict(raw, source=str(path), base_dir=path.parent)


def grid_from_dict(raw: Mapping[str, Any], *, source: str = "grid", base_dir: str | Path | None = None) -> Grid:
    """Validate a parsed grid (a config dict with a ``grid`` table) and build its cells.

    Args:
        raw: the parsed TOML.
        source: named in errors.
        base_dir: folder that a relative ``grid.base`` is relative to (default: cwd).

    Returns:
        The validated `Grid`.

    Raises:
        ValueError: see `load_grid`.
    """
    raw = copy.deepcopy(dict(raw))
    spec = raw.pop("grid", None)
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: no [grid] table; expected [grid] with an [grid.axes] table of config keys")
    for key, value in spec.items():
        expected = _GRID_KEYS.get(key)
        if expected is None:
            raise ValueError(f"{source}: unknown key grid.{key}; expected one of {', '.join(sorted(_GRID_KEYS))}")
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ValueError(f"{source}: grid.{key}={value!r} has the wrong type; expected {_type_text(expected)}")
    runner = spec.get("runner", "serial")
    if runner not in ("serial", "ray"):
        raise ValueError(f"{source}: grid.runner={runner!r}; expected 'serial' or 'ray'")
    for key in ("workers", "max_retries"):
        if spec.get(key, 0) < 0:
            raise ValueError(f"{source}: grid.{key}={spec[key]}; expected 0 or a positive integer")
    if spec.get("cpus_per_run", 1.0) <= 0 or spec.get("gpus_per_run", 0.0) < 0:
        raise ValueError(f"{source}: grid.cpus_per_run={spec.get('cpus_per_run', 1.0)}, "
                         f"grid.gpus_per_run={spec.get('gpus_per_run', 0.0)}; expected CPUs > 0 and GPUs >= 0")
    if runner == "ray":
        import_ray()
        check_ray_address(spec.get("ray_address") or None)
    axes = spec.get("axes", {})
    if not axes:
        raise ValueError(f"{source}: [grid.axes] is empty; expected config keys with lists of values, e.g. seed = [0, 1]")
    for key, values in axes.items():
        _check_axis_key(key)
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: grid.axes.{key}={values!r}; expected a non-empty list of values")

    base: dict = {}
    if spec.get("base"):
        base_path = Path(spec["base"]).expanduser()
        if not base_path.is_absolute():
            base_path = Path(base_dir or ".") / base_path
        if not base_path.is_file():
            raise ValueError(f"{source}: grid.base={spec['base']!r} is not a file; expected a config .toml")
        base = load_config(base_path).to_dict()
    base = merge(base, raw)

    names = list(axes)
    cells: list[GridCell] = []
    seen: dict[str, str] = {}
    problems: list[str] = []
    for index, combo in enumerate(itertools.product(*(axes[n] for n in names))):
        values = dict(zip(names, combo))
        label = " ".join(f"{n}={_value_text(v)}" for n, v in values.items())
        merged = base
        for name, value in values.items():
            merged = merge(merged, _nested(name, value))
        try:
            config = config_from_dict(merged, source=f"{source} cell [{label}]")
        except ValueError as error:
            problems.append(one_line(error, limit=400))
            continue
        if not config.tracking.enabled:
            raise ValueError(f"{source}: tracking.enabled=false; expected tracking on (a grid resumes from MLflow)")
        key = cell_key(config.to_dict())
        if key in seen:
            raise ValueError(f"{source}: cells [{seen[key]}] and [{label}] are the same run; expected distinct axis values")
        seen[key] = label
        config_dict = config.to_dict()
        # Absolute locations: Ray workers (and later resumes) may run in another folder.
        config_dict["tracking"]["uri"] = absolute_tracking_uri(config.tracking.uri)
        config_dict["tracking"]["run_name"] = run_name(config, values)
        config_dict["checkpoint"]["dir"] = str(_checkpoint_dir(config))
        if runner == "ray":
            config_dict["progress"] = False  # bars of concurrent runs would interleave
        cells.append(GridCell(index, key, label, values, config_dict))
    if problems:
        raise ValueError(f"{len(problems)} invalid cell(s): {problems[0]}" + (
            f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    first = cells[0].config["tracking"]
    return Grid(
        name=spec.get("name", "grid"), source=source, axes=axes, cells=tuple(cells), runner=runner,
        workers=int(spec.get("workers", 0)), cpus_per_run=float(spec.get("cpus_per_run", 1.0)),
        gpus_per_run=float(spec.get("gpus_per_run", 0.0)), ray_address=spec.get("ray_address", ""),
        max_retries=int(spec.get("max_retries", 2)), tracking_uri=first["uri"], experiment=first["experiment"],
    )


def _type_text(expected: Any) -> str:
    if isinstance(expected, tuple):
        return "a number"
    return {str: "a string", int: "an integer", dict: "a table"}.get(expected, expected.__name__)


def _checkpoint_dir(config: Any) -> Path:
    helper = getattr(app_config, "checkpoint_dir", None)
    if helper is not None:
        return Path(helper(config)).absolute()
    return Path(config.checkpoint.dir or "mlruns/checkpoints").expanduser().absolute()


# ----------------------------------------------------------------- MLflow state


def _cell_runs(uri: str, experiment: str) -> dict[str, list]:
    """Runs of the experiment that carry a grid-cell tag, by cell key, newest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs: dict[str, list] = {}
    token = None
    while True:
        page = client.search_runs([found.experiment_id], max_results=1000, page_token=token)
        for found_run in page:
            key = found_run.data.tags.get(CELL_TAG)
            if key:
                runs.setdefault(key, []).append(found_run)
        token = page.token
        if not token:
            break
    for key in runs:
        runs[key].sort(key=lambda r: r.info.start_time or 0, reverse=True)
    return runs


def grid_status(grid: Grid) -> dict[str, tuple[str, str | None]]:
    """Where each cell stands in MLflow.

    Args:
        grid: a validated grid.

    Returns:
        cell key -> ``(status, run_id)``: ``"FINISHED"``, ``"RUNNING"``, ``"FAILED"``,
        ``"KILLED"`` of its newest run (a finished one wins), or ``("TODO", None)``.
    """
    runs = _cell_runs(grid.tracking_uri, grid.experiment)
    status: dict[str, tuple[str, str | None]] = {}
    for cell in grid.cells:
        mine = runs.get(cell.key, [])
        done = [r for r in mine if r.info.status == "FINISHED"]
        chosen = done[0] if done else (mine[0] if mine else None)
        status[cell.key] = (chosen.info.status, chosen.info.run_id) if chosen else ("TODO", None)
    return status


class _GridTags:
    """Callback: tags the run with its grid cell as soon as the tracker has created it."""

    def __init__(self, uri: str, tags: Mapping[str, str]) -> None:
        self.uri = uri
        self.tags = dict(tags)

    def on_start(self, state: Any) -> None:
        run_id = state.info.get("mlflow_run_id") if state is not None else None
        if not run_id:
            return
        from mlflow import MlflowClient
        from mlflow.entities import RunTag

        MlflowClient(tracking_uri=self.uri).log_batch(run_id, tags=[RunTag(k, v) for k, v in self.tags.items()])

    def on_generation(self, state: Any) -> None:
        """Nothing per generation."""

    def on_end(self, state: Any, error: BaseException | None = None) -> None:
        """Nothing at the end."""


def _resumable(runs: Sequence) -> tuple[Any, Path] | None:
    """The newest dead run of a cell whose checkpoint file still exists."""
    for dead in runs:
        path = dead.data.tags.get("evoprune.checkpoint")
        if dead.info.status != "FINISHED" and path and Path(path).is_file():
            return dead, Path(path)
    return None


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
        runs = _cell_runs(uri, config.tracking.experiment).get(key, [])
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished:
            return CellOutcome(key, label, "skipped", finished[0].info.run_id)
        client = MlflowClient(tracking_uri=uri)
        for dead in runs:
            if dead.info.status == "RUNNING":  # its process is gone: see the module docstring
                client.set_terminated(dead.info.run_id, status="FAILED")
        again = _resumable(runs)
        callbacks = [_GridTags(uri, tags)]
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


# ----------------------------------------------------------------- running a grid


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


# ----------------------------------------------------------------- command line


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
