"""Grid files: ``[grid]`` settings and axes, validated, crossed into cells (`load_grid`).

See `evoprune_tf.studies.grid` for the file format and how a grid runs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping

from evoprune_tf.errors import one_line
from evoprune_tf.experiment import config as experiment_config
from evoprune_tf.experiment.config import ExperimentConfig, config_from_dict, load_config, merge
from evoprune_tf.methods import get_method
from evoprune_tf.runners.ray_runner import check_ray_address, import_ray
from evoprune_tf.session.run_names import run_name
from evoprune_tf.tracking.store import absolute_tracking_uri

__all__ = [
    "GRID_TAG",
    "CELL_TAG",
    "LABEL_TAG",
    "AXIS_TAG_PREFIX",
    "Grid",
    "GridCell",
    "load_grid",
    "grid_from_dict",
    "cell_key",
]


GRID_TAG = "evoprune.grid"
CELL_TAG = "evoprune.grid_cell"
LABEL_TAG = "evoprune.grid_label"
AXIS_TAG_PREFIX = "evoprune.grid."


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
    runner, axes = _check_spec(spec, source)
    base = _base_config(spec, raw, source, base_dir)
    cells = _cells(spec, axes, base, runner, source)
    first = cells[0].config["tracking"]
    return Grid(
        name=spec.get("name", "grid"), source=source, axes=axes, cells=tuple(cells), runner=runner,
        workers=int(spec.get("workers", 0)), cpus_per_run=float(spec.get("cpus_per_run", 1.0)),
        gpus_per_run=float(spec.get("gpus_per_run", 0.0)), ray_address=spec.get("ray_address", ""),
        max_retries=int(spec.get("max_retries", 2)), tracking_uri=first["uri"], experiment=first["experiment"],
    )


def _check_spec(spec: Any, source: str) -> tuple[str, dict]:
    """The runner and the axes of a ``[grid]`` table, after checking every setting and axis key."""
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

    return runner, axes


def _base_config(spec: Mapping[str, Any], raw: dict, source: str, base_dir: str | Path | None) -> dict:
    """The config every cell starts from: ``grid.base`` (when given) with the file's other tables over it."""
    base: dict = {}
    if spec.get("base"):
        base_path = Path(spec["base"]).expanduser()
        if not base_path.is_absolute():
            base_path = Path(base_dir or ".") / base_path
        if not base_path.is_file():
            raise ValueError(f"{source}: grid.base={spec['base']!r} is not a file; expected a config .toml")
        base = load_config(base_path).to_dict()
    base = merge(base, raw)

    return base


def _cells(spec: Mapping[str, Any], axes: dict, base: dict, runner: str, source: str) -> list[GridCell]:
    """The cross product of the axes over ``base``: every cell's config validated, located and tagged."""
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
        if get_method(config.algorithm.name).checkpoints:  # the others refuse a [checkpoint] they do not read
            config_dict["checkpoint"]["dir"] = str(_checkpoint_dir(config))
        if runner == "ray":
            config_dict["progress"] = False  # bars of concurrent runs would interleave
        cells.append(GridCell(index, key, label, values, config_dict))
    if problems:
        raise ValueError(f"{len(problems)} invalid cell(s): {problems[0]}" + (
            f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return cells


def _type_text(expected: Any) -> str:
    if isinstance(expected, tuple):
        return "a number"
    return {str: "a string", int: "an integer", dict: "a table"}.get(expected, expected.__name__)


def _checkpoint_dir(config: Any) -> Path:
    helper = getattr(experiment_config, "checkpoint_dir", None)
    if helper is not None:
        return Path(helper(config)).absolute()
    return Path(config.checkpoint.dir or "mlruns/checkpoints").expanduser().absolute()
