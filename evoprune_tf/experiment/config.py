"""Experiment configuration: TOML files, command-line overrides, one validation pass.

A config is a TOML file with the sections below (every key optional; see
``evoprune_tf/configs/default.toml`` for all of them with their defaults). `load_config`
validates the *whole* file before anything long starts and raises one `ConfigError`
whose single line lists every problem found: unknown sections or keys, wrong types,
out-of-range values, unknown names of encodings, algorithms, operators or objectives.
``${VAR}`` in strings expands environment variables (e.g. ``${EVOPRUNE_ASSETS}``).

The Keras backend of a run (``train.backend``) is applied here too, at the edge, before
Keras is first imported: `use_backend` (and `use_backend_for_dict` for a raw dict) applies
`evoprune_tf.experiment.backend.choose_backend` (``KERAS_BACKEND`` for this process and its workers).
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import operators
from evoprune_tf.experiment.backend import BackendChoice, apply_backend, choose_backend
from evoprune_tf.experiment.checks import check_config
from evoprune_tf.experiment.sections import (  # noqa: F401 - the config's shape, importable from here as before
    _SECTION_TYPES,
    _SHARED_SECTIONS,
    AlgorithmConfig,
    BackboneConfig,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    EncodingConfig,
    ExperimentConfig,
    HeadConfig,
    ObjectivesConfig,
    OperatorsConfig,
    ReportConfig,
    TrackingConfig,
    _redact_tree,
    section_types,
)
from evoprune_tf.methods import get_method
from evoprune_tf.search.toolbox import CARDINALITY_OPERATORS
from evoprune_tf.session import checkpoint_dir, report_files, report_folder
from evoprune_tf.session import check_output_locations as _check_output_locations
from evoprune_tf.tracking.redact import is_secret_name
from evoprune_tf.train.config import BACKENDS

__all__ = [
    "ExperimentConfig",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "check_shadowed_values",
    "checkpoint_dir",
    "report_folder",
    "report_files",
    "check_output_locations",
    "use_backend",
    "use_backend_for_dict",
]


SESSION_READS = ("name", "seed", "progress", "plugins", "algorithm.name", "train.backend", "tracking")
_TOP_LEVEL = {"name": str, "seed": int, "cache_dir": str, "progress": bool, "workers": int, "plugins": list,
              "runner": str, "ray_address": str, "num_gpus": float}
_ENV = re.compile(r"\$\{(\w+)\}")


def _expand(value: Any, secrets: dict[str, str] | None = None) -> Any:
    """``${VAR}`` -> its value, in every string of a raw config.

    Args:
        value: a raw config value (str, list, dict or other).
        secrets: filled with ``value -> "${NAME}"`` for every non-empty variable whose
            name looks like a secret (`is_secret_name`), so it is never logged.
    """
    if isinstance(value, str):
        def expand(match: re.Match) -> str:
            found = os.environ.get(match.group(1), "")
            if secrets is not None and found and is_secret_name(match.group(1)):
                secrets[found] = match.group(0)
            return found

        return _ENV.sub(expand, value)
    if isinstance(value, list):
        return [_expand(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, secrets) for k, v in value.items()}
    return value


def _type_ok(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected) or expected
    if expected is Any or expected == "Any":
        return isinstance(value, (str, dict))
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(expected))
    if isinstance(expected, str):  # postponed annotations
        expected = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}.get(
            expected.split("[")[0], object
        )
        origin = expected
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    return isinstance(value, origin)


def _build_section(name: str, cls: type, raw: Any, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"[{name}] must be a table, got {type(raw).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            problems.append(f"unknown key {name}.{key} (known: {', '.join(sorted(hints))})")
        elif not _type_ok(value, hints[key]):
            problems.append(f"{name}.{key}={value!r} has the wrong type; expected {_type_name(hints[key])}")
        else:
            try:
                kwargs[key] = float(value) if hints[key] is float else value
            except OverflowError:
                problems.append(f"{name}.{key}={value!r} is out of range; expected a {_type_name(hints[key])}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        problems.append(str(error))
        return cls()


def _type_name(t: Any) -> str:
    if typing.get_origin(t) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(t))
    return getattr(t, "__name__", str(t))


def _unread_keys(raw: Mapping[str, Any], config: ExperimentConfig, method: Any) -> list[str]:
    """Keys given with a non-default value that neither the method nor the run session reads, one line each."""
    own_checkpoints = (("checkpoint",) if method.checkpoints else ()) + (
        ("report.dir",) if method.writes_report_files else ())
    defaults = ExperimentConfig()
    sections = section_types()
    problems = []
    for key, value in raw.items():
        if key in sections and isinstance(value, Mapping):
            default_section = getattr(defaults, key)
            given = [(f"{key}.{k}", getattr(getattr(config, key), k), getattr(default_section, k, None))
                     for k in value if hasattr(default_section, k)]
        elif key in _TOP_LEVEL:
            given = [(key, getattr(config, key), getattr(defaults, key))]
        else:
            continue
        for path, now, default in given:
            reads = (*SESSION_READS, *own_checkpoints)
            if now == default or method.reads_key(path) or any(path == r or path.startswith(r + ".") for r in reads):
                continue
            problems.append(f"{path}={now!r} is not read by method {method.name!r}; expected only keys it reads "
                            f"(`evoprune methods` lists them) or their defaults")
    return problems


def _budget(raw: dict) -> bool:
    """Whether a raw config sets ``encoding.active`` (to anything but 0: its value is checked later)."""
    encoding = raw.get("encoding", {})
    return isinstance(encoding, dict) and encoding.get("active", 0) not in (0, None)


def config_from_dict(raw: dict, source: str = "config", *, given: dict | None = None) -> ExperimentConfig:
    """Build and validate a config from a nested dict (e.g. parsed TOML).

    A key the chosen method does not read (`evoprune_tf.methods.Method.reads`) is refused
    when it holds a value other than its default.

    Args:
        raw: the nested config.
        source: what the config came from (the error message starts with it).
        given: the part of ``raw`` the user set (a file, the command line), when ``raw``
            also holds a script's defaults: only these keys are checked against what the
            method reads (default: all of ``raw``).

    Raises:
        ConfigError: listing every problem found.
    """
    secrets: dict[str, str] = {}
    raw = _expand(copy.deepcopy(raw), secrets)
    user = raw if given is None else _expand(copy.deepcopy(given), {})
    plugin_error = None
    plugins = raw.get("plugins", [])
    try:
        # Before any name is looked up: a plugin's operators and methods are valid names.
        operators.registry.load_plugins(plugins if isinstance(plugins, list) else [])
    except ValueError as error:
        plugin_error = error
    algorithm = raw.get("algorithm", {}).get("name") if isinstance(raw.get("algorithm"), dict) else None
    if _budget(raw) and isinstance(raw.get("operators", {}), dict):
        # a fixed budget: count-keeping init, crossover and mutation, under the config's own operators
        # and before the method's defaults (NSGA keeps its selection and survival)
        raw["operators"] = {**CARDINALITY_OPERATORS, **raw.get("operators", {})}
    try:
        method = get_method(algorithm if algorithm is not None else AlgorithmConfig.name)
    except ValueError:  # reported with every other problem
        method = None
    for section, values in (method.defaults if method is not None else {}).items():
        present = raw.get(section, {})
        if isinstance(present, dict):  # the method's defaults under the config's values
            raw[section] = {**values, **present}
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    sections = section_types()
    own: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SHARED_SECTIONS:
            kwargs[key] = _build_section(key, sections[key], value, problems)
        elif key in sections:
            own[key] = _build_section(key, sections[key], value, problems)
        elif key in _TOP_LEVEL:
            if _type_ok(value, _TOP_LEVEL[key]):
                kwargs[key] = value
            else:
                problems.append(f"{key}={value!r} has the wrong type; expected {_TOP_LEVEL[key].__name__}")
        else:
            known = sorted([*sections, *_TOP_LEVEL])
            problems.append(f"unknown key {key!r} (known: {', '.join(known)})")
    config = ExperimentConfig(**kwargs)
    config.sections.update(own)
    config._secrets = secrets
    if plugin_error is not None:
        problems.append(f"plugins: {plugin_error}")
    check_config(config, problems)
    if method is not None:
        problems.extend(_unread_keys(user, config, method))
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> ExperimentConfig:
    """Load a TOML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: a ``.toml`` file.
        overrides: nested dict merged over the file, e.g. ``{"algorithm": {"evaluations": 50}}``.

    Raises:
        ConfigError: a missing or malformed file, or any invalid value (all listed at once).
    """
    raw: dict = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError([f"config file {path} does not exist; expected a .toml file"], source)
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError([f"not valid TOML ({error})"], source) from None
    return config_from_dict(merge(raw, overrides or {}), source)


def merge(base: dict, overrides: dict) -> dict:
    """Recursive dict merge (overrides win)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def check_shadowed_values(raw: dict, overrides: dict, source: str = "config") -> None:
    """Check the file's values of the keys the command line overrides (they would vanish unseen otherwise).

    ``epochs = "five"`` in a file run with ``--epochs 5`` used to run without a word: the
    override replaced the bad value before validation saw it. Each such value is checked
    alone, as `config_from_dict` checks it (type, then the section's own checks).

    Args:
        raw: the file's nested dict.
        overrides: the command line's nested dict.
        source: the file, for the message.

    Raises:
        ConfigError: listing every bad value the overrides would have hidden.
    """
    problems: list[str] = []
    sections = section_types()
    for key, value in overrides.items():
        if key not in raw:
            continue
        if key in sections and isinstance(value, dict) and isinstance(raw[key], dict):
            shadowed = {k: raw[key][k] for k in value if k in raw[key]}
            if shadowed:
                _build_section(key, sections[key], _expand(shadowed), problems)
        elif key in _TOP_LEVEL and not _type_ok(_expand(raw[key]), _TOP_LEVEL[key]):
            problems.append(f"{key}={raw[key]!r} has the wrong type; expected {_TOP_LEVEL[key].__name__}")
    if problems:
        raise ConfigError(problems, source)


def check_output_locations(config: ExperimentConfig, *, features_cached: bool = False) -> None:
    """Check every folder the config's run writes to before long work starts (`evoprune_tf.session.check_output_locations`).

    What is checked follows the chosen method: checkpoints, the feature cache (unless
    ``features_cached``), the report folder for methods that write report files, and the
    MLflow artifact store.

    Raises:
        ValueError: the first location that cannot be written.
    """
    method = config.method
    _check_output_locations(config, features_cached=features_cached or not method.uses_feature_cache,
                            checkpoints=method.checkpoints,
                            writes_report_files=method.writes_report_files or method.multi_objective)


# ----------------------------------------------------------------- the Keras backend

def use_backend(config: ExperimentConfig) -> BackendChoice:
    """Choose the run's Keras backend (`choose_backend`) and apply it while Keras is not imported yet.

    Applying it sets ``KERAS_BACKEND`` in this process's environment, which Keras reads
    when it is first imported and spawned workers inherit. ``KERAS_BACKEND`` set by the
    user, or Keras already imported, is left as it is.

    Args:
        config: the run's config (``algorithm.name``, ``train.backend``, ``train.engine``).

    Returns:
        The `BackendChoice` (print its ``line``).

    Raises:
        ValueError: as `choose_backend`.
    """
    return apply_backend(choose_backend(config.algorithm.name, config.train.backend, config.train.engine))


def use_backend_for_dict(raw: Mapping[str, Any]) -> BackendChoice | None:
    """`use_backend` on a raw (not yet validated) config dict, for the command line.

    Validating a config may import Keras (a non-default optimizer or loss is checked
    with it), which fixes the backend; the command line therefore chooses first, from
    the raw values. Malformed values choose nothing: validation reports them.

    Args:
        raw: the merged config dict (TOML file, overrides).

    Returns:
        The `BackendChoice`, or None when the values are malformed.
    """
    algorithm = raw.get("algorithm", {}) if isinstance(raw, Mapping) else None
    train = raw.get("train", {}) if isinstance(raw, Mapping) else None
    if not isinstance(algorithm, Mapping) or not isinstance(train, Mapping):
        return None
    method = algorithm.get("name", AlgorithmConfig.name)
    requested, engine = train.get("backend", "auto"), train.get("engine", "keras")
    if not all(isinstance(v, str) for v in (method, requested, engine)) or requested not in BACKENDS:
        return None
    try:
        return apply_backend(choose_backend(method, requested, engine))
    except ValueError:  # reported by validation, with every other problem
        return None
