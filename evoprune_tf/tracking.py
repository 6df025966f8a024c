"""MLflow tracking: one run per evolution, fed by the loop's callbacks.

`MLflowTracker` is a `evoprune_tf.callbacks.Callback`: the loops call it, they never
import it. Everything it logs goes through an `mlflow.MlflowClient` with an explicit
run id, so an active fluent run elsewhere in the process (or a crash in another one)
cannot make it log into the wrong run.

What a run holds:

* params: the whole config, flattened (``algorithm.name``, ``train.epochs``...), logged
  once; masks never go to params (write-once, length-limited) but to artifacts;
* tags: ``evoprune.algorithm``, ``.encoding``, ``.dataset``, ``.backbone``, ``.seed``,
  ``.operators`` (plus any given), for `mlflow.search_runs` and the UI;
* metrics, ``step=generation``: every numeric logbook field (``best``, ``mean``,
  ``best_active``, ``front_size``, ``hypervolume``...) and the evaluator's counters,
  one ``log_batch`` per generation;
* artifacts: ``logbook.csv``, ``halloffame.csv``, ``masks/best_genomes.npz``,
  ``plots/convergence.png``, ``plots/population_masks.png``; multi-objective runs add
  ``fronts/front_gen_NNNN.csv`` and ``plots/pareto_front.png``; the runner adds
  ``report.json`` and the Keras model (`log_keras_model`).

Stores: ``sqlite:///mlruns/mlflow.db`` by default (artifacts in ``mlruns/artifacts``),
``$MLFLOW_TRACKING_URI`` or an explicit URI (e.g. ``http://host:5000``) otherwise.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import numbers
import os
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from evoprune_tf.callbacks import Callback, EvolutionState

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.models.model import ModelInfo

    from evoprune_tf.config import ExperimentConfig

__all__ = [
    "DEFAULT_TRACKING_URI",
    "resolve_tracking_uri",
    "check_tracking_uri",
    "MLflowTracker",
    "find_run",
    "pack_genome",
    "unpack_genome",
]

#: The project's store: SQLite next to the artifacts in ``./mlruns``.
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"

_log = logging.getLogger(__name__)
_SQLITE_PREFIX = "sqlite:///"
_RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
_MAX_TAG_LENGTH = 5000
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


# ----------------------------------------------------------------------- the store


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other schemes and in-memory DBs)."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    path = uri[len(_SQLITE_PREFIX):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def resolve_tracking_uri(uri: str = "") -> str:
    """The tracking URI to use: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the default.

    For the default store the ``mlruns/`` folder is created (relative to the current
    directory), so a fresh checkout can track without set-up.

    Args:
        uri: an explicit tracking URI (``""`` = not given).

    Returns:
        The URI.
    """
    resolved = uri or os.environ.get("MLFLOW_TRACKING_URI", "") or DEFAULT_TRACKING_URI
    if resolved == DEFAULT_TRACKING_URI:
        db = _sqlite_path(resolved)
        assert db is not None
        db.parent.mkdir(parents=True, exist_ok=True)
    return resolved


def _artifact_location(uri: str) -> str | None:
    """Where a new experiment's artifacts go: ``<folder of the SQLite file>/artifacts``.

    Other stores (servers) decide for themselves: None.
    """
    db = _sqlite_path(uri)
    if db is None:
        return None
    return (db.parent.resolve() / "artifacts").as_uri()


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_sqlite(uri: str, db: Path) -> None:
    """A writable folder and a file SQLite can open (one-line `ValueError` otherwise)."""
    folder = db.parent
    if not folder.is_dir():
        raise ValueError(
            f"MLflow tracking store {uri}: folder {folder} does not exist; expected an existing, writable folder"
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(
            f"MLflow tracking store {uri}: folder {folder} is not writable ({_one_line(error)}); "
            "expected a writable folder"
        ) from None
    try:
        connection = sqlite3.connect(db, timeout=2.0)
        try:
            connection.execute("PRAGMA schema_version").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ValueError(
            f"MLflow tracking store {uri}: {db} cannot be opened ({_one_line(error)}); expected a SQLite database"
        ) from None


def check_tracking_uri(uri: str = "") -> None:
    """Fail fast when the tracking store cannot be used, before anything long starts.

    A SQLite store needs an existing, writable folder for its file; every store must
    answer one ``search_experiments`` call (HTTP stores with no retries and a 5 s
    timeout, so a refused or silent server fails in seconds, not minutes).

    Args:
        uri: the tracking URI (``""``: `resolve_tracking_uri`'s choice).

    Raises:
        ValueError: one line naming the URI and what is wrong.
    """
    uri = resolve_tracking_uri(uri)
    db = _sqlite_path(uri)
    if db is not None:
        # Checked here because MLflow retries a SQLite file it cannot open for ~100 s.
        _check_sqlite(uri, db)
    settings: dict[str, str] = {}
    if uri.startswith(("http://", "https://")):
        settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    from mlflow import MlflowClient

    try:
        with _env(**settings):
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure means "unusable store"
        raise ValueError(
            f"MLflow tracking store {uri} cannot be used ({type(error).__name__}: {_one_line(error)}); "
            "expected a reachable store: start the server, or set tracking.uri / MLFLOW_TRACKING_URI"
        ) from None


def find_run(run_id_or_prefix: str, uri: str = "") -> Run:
    """The MLflow run with this id, or the only run whose id starts with this prefix.

    Args:
        run_id_or_prefix: a full 32-character run id or a unique prefix of one.
        uri: the tracking URI (``""``: `resolve_tracking_uri`'s choice).

    Returns:
        The `mlflow.entities.Run`.

    Raises:
        ValueError: no run or several runs match.
    """
    from mlflow import MlflowClient
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    key = run_id_or_prefix.strip().lower()
    if not key:
        raise ValueError("run id ''; expected a run id or a prefix of one")
    uri = resolve_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    if _RUN_ID.match(key):
        try:
            return client.get_run(key)
        except MlflowException:
            raise ValueError(f"run {key} not found in {uri}; expected the id of an existing run") from None
    experiment_ids = [e.experiment_id for e in _all_pages(client.search_experiments, view_type=ViewType.ALL)]
    matches = [
        run
        for run in _all_pages(client.search_runs, experiment_ids=experiment_ids, run_view_type=ViewType.ALL)
        if run.info.run_id.startswith(key)
    ] if experiment_ids else []
    if not matches:
        raise ValueError(f"no run id starts with {key!r} in {uri}; expected a prefix of an existing run id")
    if len(matches) > 1:
        ids = ", ".join(sorted(r.info.run_id for r in matches)[:5])
        raise ValueError(f"run id prefix {key!r} matches {len(matches)} runs ({ids}); expected a unique prefix")
    return matches[0]


def _all_pages(search: Callable, **kwargs) -> Iterator:
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


# -------------------------------------------------------------------- genomes


def pack_genome(genome: Any) -> str:
    """A 0/1 genome as a compact hex string (`numpy.packbits`, big-endian bit order).

    Non-zero genes count as 1; the last byte is zero-padded, so keep the length to
    unpack (see `unpack_genome`).
    """
    return np.packbits(np.asarray(genome).ravel() != 0).tobytes().hex()


def unpack_genome(packed: str, length: int) -> np.ndarray:
    """Inverse of `pack_genome`: the first ``length`` bits as a uint8 0/1 array."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(packed), dtype=np.uint8))
    if length > len(bits):
        raise ValueError(f"length={length}; expected at most {len(bits)} for a {len(packed)}-character genome")
    return bits[:length].astype(np.uint8)


# -------------------------------------------------------------------- helpers


def _numeric(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric entries of a mapping (nested mappings flattened with dots), as floats."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_numeric(value, f"{name}."))
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                out[name] = float(value)
        elif isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
    return out


def _flat_record(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out.update(_flat_record(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(str(_cell(v)) for v in np.asarray(value).ravel().tolist())
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, set, frozenset)):
        return str(value) if isinstance(value, Path) else sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _operator_spec(spec: Any) -> str:
    if isinstance(spec, Mapping):
        options = ",".join(f"{k}={v}" for k, v in spec.items() if k != "name")
        return f"{spec.get('name', '?')}({options})" if options else str(spec.get("name", "?"))
    return str(spec)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    path.write_text(_csv_text(header, rows))
    return path


# -------------------------------------------------------------------- the tracker


class MLflowTracker(Callback):
    """Logs an evolution to one MLflow run: config, per-generation metrics, artifacts.

    Typical use (the runner does this)::

        tracker = MLflowTracker(config, stats=evaluator.stats)
        population, logbook = algorithms.steady_state_ga(..., callbacks=[tracker])
        tracker.log_report(report)
        tracker.log_keras_model(model)
        tracker.finish()

    When the loop raises, `on_end` still logs the logbook, hall of fame, masks and plots
    and then ends the run as ``KILLED`` (`KeyboardInterrupt`) or ``FAILED``; after a
    clean loop the run stays open for the report, and `finish` ends it.

    Args:
        config: the experiment; ``config.tracking`` gives URI, experiment and run name,
            `evoprune_tf.config.flatten` its params.
        tags: extra run tags.
        stats: callable returning counters (``trained``, ``cache_hits``,
            ``evals_per_second``...) logged with each generation's metrics.
        run_id: continue this run (a resumed evolution) instead of creating one; its
            params are not logged again.
        log_fronts: log each generation's non-dominated front of the population as a
            CSV (multi-objective runs) and a Pareto plot at the end.
        objective_names: names of the fitness values (CSV columns and plot axes);
            default ``obj0``, ``obj1``... (used only when the count matches).

    Attributes:
        run_id: the MLflow run id (None before `on_start`).
        experiment_id: the MLflow experiment id (None before `on_start`).
        uri: the resolved tracking URI (None before `on_start`).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        tags: Mapping[str, str] | None = None,
        stats: Callable[[], Mapping[str, Any]] | None = None,
        run_id: str | None = None,
        log_fronts: bool = False,
        objective_names: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.stats = stats
        self.run_id: str | None = run_id
        self.log_fronts = log_fronts
        self.objective_names = list(objective_names) if objective_names is not None else None
        self.experiment_id: str | None = None
        self.uri: str | None = None
        self._resume = run_id is not None
        self._client: MlflowClient | None = None
        self._ended = False

    # ------------------------------------------------------------ callback hooks

    def on_start(self, state: EvolutionState | None = None) -> None:
        """Connects to the store, creates (or reopens) the run, logs params and tags.

        May be called without a state to open the run before an evolution starts.
        """
        if self._client is not None:
            return
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Param, RunTag

        from evoprune_tf.config import flatten

        self.uri = resolve_tracking_uri(self.config.tracking.uri)
        # The global URI too: `mlflow.keras.log_model` and `models:/` URIs resolve through it.
        mlflow.set_tracking_uri(self.uri)
        client = MlflowClient(tracking_uri=self.uri)
        params = flatten(self.config)
        tags = {**self._config_tags(), **self.tags}
        if self._resume:
            run = find_run(self.run_id or "", self.uri)
            self.run_id = run.info.run_id
            self.experiment_id = run.info.experiment_id
            client.update_run(self.run_id, status="RUNNING")
            logged = run.data.params
            changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
            if changed:
                # Params are write-once: the run keeps the values it started with.
                _log.warning("MLflow run %s: resumed with changed params, not re-logged: %s",
                             run.info.run_id, ", ".join(changed))
            params = {k: v for k, v in params.items() if k not in logged}
            if state is not None:
                tags["evoprune.resumed_at_generation"] = str(state.generation)
        else:
            self.experiment_id = self._experiment(client)
            run = client.create_run(self.experiment_id, run_name=self._run_name())
            self.run_id = run.info.run_id
        client.log_batch(
            self.run_id,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v[:_MAX_TAG_LENGTH]) for k, v in tags.items()],
        )
        self._client = client
        self._ended = False
        if state is not None:
            state.info["mlflow_run_id"] = self.run_id

    def on_generation(self, state: EvolutionState) -> None:
        """Logs the newest logbook record and the stats in one batch, ``step=generation``."""
        metrics = {k: v for k, v in _numeric(state.last).items() if k != "gen"}
        if self.stats is not None:
            metrics = {**_numeric(self.stats()), **metrics}
        self.log_metrics(metrics, step=state.generation)
        if self.log_fronts:
            self._log_front(state)

    def on_end(self, state: EvolutionState, error: BaseException | None = None) -> None:
        """Logs logbook, hall of fame, masks and plots; ends the run if the loop raised.

        Each artifact is logged on its own: one that fails is reported as a warning and
        the others are still logged, so a failing run keeps everything it produced.
        """
        if self._client is None or self._ended:
            return
        with tempfile.TemporaryDirectory(prefix="evoprune-mlflow-") as tmp:
            folder = Path(tmp)
            steps: list[tuple[str, Callable[[], None]]] = [
                ("logbook.csv", lambda: self._log_logbook(state, folder)),
                ("halloffame.csv / masks/best_genomes.npz", lambda: self._log_halloffame(state, folder)),
                ("plots/convergence.png", lambda: self._log_convergence(state, folder)),
                ("plots/population_masks.png", lambda: self._log_population_masks(state, folder)),
            ]
            if self.log_fronts:
                steps.append(("plots/pareto_front.png", lambda: self._log_pareto_plot(state, folder)))
            for name, step in steps:
                try:
                    step()
                except Exception as failure:  # noqa: BLE001 - never mask the loop's own error
                    _log.warning("MLflow run %s: could not log %s: %s", self.run_id, name, _one_line(failure),
                                 exc_info=_log.isEnabledFor(logging.DEBUG))
        if error is not None:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            try:
                self._client.set_tag(self.run_id, "evoprune.error",
                                     f"{type(error).__name__}: {_one_line(error)}"[:_MAX_TAG_LENGTH])
            except Exception as failure:  # noqa: BLE001
                _log.warning("MLflow run %s: could not tag the error: %s", self.run_id, _one_line(failure))
            self.finish(status)

    # ------------------------------------------------------------ public logging

    @property
    def client(self) -> MlflowClient:
        """The `MlflowClient` bound to this run's store (after `on_start`)."""
        if self._client is None:
            raise RuntimeError("the MLflow run is not started; expected on_start() before logging")
        return self._client

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Logs the numeric entries of ``metrics`` in one batch (non-numeric ones are skipped).

        Args:
            metrics: name -> number (nested mappings become ``outer.inner``).
            step: the step (generation); default 0.
        """
        from mlflow.entities import Metric

        values = _numeric(metrics)
        if not values:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step or 0) for k, v in values.items()])

    def log_report(self, report: Mapping[str, Any], artifact_file: str = "report.json") -> None:
        """Logs the final report as a JSON artifact (NumPy values converted).

        Args:
            report: JSON-able mapping (NumPy scalars and arrays are fine).
            artifact_file: path inside the run's artifacts.
        """
        text = json.dumps(report, indent=2, default=_json_default, sort_keys=False)
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Logs a local file (or a whole folder) under ``artifact_path``.

        Raises:
            FileNotFoundError: ``path`` does not exist.
        """
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"artifact {path} does not exist; expected a file or folder")

    def log_figure(self, fig: Any, artifact_file: str) -> None:
        """Logs a matplotlib figure as an image artifact (the caller keeps and closes it)."""
        self.client.log_figure(self.run_id, fig, artifact_file)

    def log_keras_model(
        self,
        model: Any,
        name: str = "model",
        *,
        pip_requirements: Sequence[str] | None = None,
        step: int = 0,
    ) -> ModelInfo:
        """Logs a Keras model in the MLflow ``keras`` flavor as a LoggedModel of this run.

        It loads back with ``mlflow.keras.load_model(info.model_uri)`` (``models:/<id>``);
        the URI is also kept in the run tag ``evoprune.model_uri.<name>``.

        Args:
            model: a Keras 3 model (custom layers must be registered serialisable).
            name: the model's name (MLflow 3's ``name=``, formerly ``artifact_path``).
            pip_requirements: environment of the model; default MLflow's Keras defaults
                (given explicitly, which skips MLflow's slow requirement inference).
            step: the step the model belongs to.

        Returns:
            MLflow's `ModelInfo` (``model_uri``, ``model_id``...).
        """
        import mlflow
        import mlflow.keras
        from mlflow.models import Model

        client = self.client
        # `mlflow.keras.log_model` takes the run from the fluent active run and the
        # experiment from global state; `Model.log` (what it calls) accepts both
        # explicitly, so the model lands in this run whatever else is active.
        mlflow.set_tracking_uri(self.uri)
        logged = client.create_logged_model(self.experiment_id, name=name, source_run_id=self.run_id)
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.keras,
            model=model,
            run_id=self.run_id,
            model_id=logged.model_id,
            step=step,
            pip_requirements=list(pip_requirements or mlflow.keras.get_default_pip_requirements()),
        )
        client.set_tag(self.run_id, f"evoprune.model_uri.{name}", info.model_uri)
        return info

    def finish(self, status: str = "FINISHED") -> None:
        """Ends the run with ``status`` (FINISHED, FAILED or KILLED); later calls do nothing.

        Raises:
            ValueError: an unknown status.
        """
        if status not in _RUN_STATUSES:
            raise ValueError(f"run status {status!r}; expected one of {', '.join(_RUN_STATUSES)}")
        if self._client is None or self._ended:
            return
        self._client.set_terminated(self.run_id, status)
        self._ended = True

    # ------------------------------------------------------------ internals

    def _config_tags(self) -> dict[str, str]:
        c = self.config
        aliases = ["init", "select", "mate", "mutate"] + (["survive"] if c.multi_objective else [])
        return {
            "evoprune.algorithm": c.algorithm.name,
            "evoprune.encoding": c.encoding.name,
            "evoprune.dataset": c.data.name or c.data.source,
            "evoprune.backbone": c.backbone.name,
            "evoprune.seed": str(c.seed),
            "evoprune.operators": " ".join(f"{a}={_operator_spec(getattr(c.operators, a))}" for a in aliases),
        }

    def _run_name(self) -> str:
        c = self.config
        return c.tracking.run_name or f"{c.name}-{c.algorithm.name}-seed{c.seed}"

    def _experiment(self, client: MlflowClient) -> str:
        name = self.config.tracking.experiment
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return client.create_experiment(name, artifact_location=_artifact_location(self.uri or ""))
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _names(self, k: int) -> list[str]:
        if self.objective_names is not None and len(self.objective_names) == k:
            return list(self.objective_names)
        return [f"obj{i}" for i in range(k)]

    def _rows(self, individuals: Sequence) -> tuple[list[str], list[list[Any]]]:
        """CSV header and rows: fitness values, active fraction, packed genome."""
        k = len(individuals[0].fitness.values) if individuals else 0
        header = [*self._names(k), "active_fraction", "genome"]
        rows = [
            [*map(float, ind.fitness.values), float(np.mean(np.asarray(ind) != 0)), pack_genome(ind)]
            for ind in individuals
        ]
        return header, rows

    def _log_front(self, state: EvolutionState) -> None:
        from evoprune_tf.pareto import non_dominated

        valid = [ind for ind in state.population if ind.fitness.valid]
        if not valid:
            return
        points = np.array([ind.fitness.values for ind in valid], dtype=np.float64)
        front = [ind for ind, keep in zip(valid, non_dominated(points, valid[0].fitness.weights)) if keep]
        header, rows = self._rows(front)
        text = _csv_text(header, rows)
        self.client.log_text(self.run_id, text, f"fronts/front_gen_{state.generation:04d}.csv")

    def _log_logbook(self, state: EvolutionState, folder: Path) -> None:
        records = [_flat_record(r) for r in state.logbook]
        if not records:
            return
        header: list[str] = [k for k in ("gen", "nevals", "evaluations") if any(k in r for r in records)]
        for record in records:
            header.extend(k for k in record if k not in header)
        rows = [[_cell(r.get(k, "")) for k in header] for r in records]
        self.log_artifact(_write_csv(folder / "logbook.csv", header, rows))

    def _log_halloffame(self, state: EvolutionState, folder: Path) -> None:
        members = [ind for ind in (state.halloffame or []) if ind.fitness.valid]
        if not members:
            return
        header, rows = self._rows(members)
        self.log_artifact(_write_csv(folder / "halloffame.csv", header, rows))
        genomes = np.stack([np.asarray(ind).ravel() for ind in members]).astype(np.uint8)
        fitness = np.array([ind.fitness.values for ind in members], dtype=np.float64)
        path = folder / "best_genomes.npz"
        np.savez_compressed(
            path, genomes=genomes, fitness=fitness,
            weights=np.asarray(members[0].fitness.weights, dtype=np.float64),
            objective_names=np.array(self._names(fitness.shape[1])),
        )
        self.log_artifact(path, "masks")

    def _log_convergence(self, state: EvolutionState, folder: Path) -> None:
        from evoprune_tf.plots import convergence_plot

        if len(state.logbook):
            c = self.config
            title = f"{c.name}: {c.algorithm.name} / {c.encoding.name} (seed {c.seed})"
            self.log_artifact(convergence_plot(state.logbook, folder / "convergence.png", title=title), "plots")

    def _log_population_masks(self, state: EvolutionState, folder: Path) -> None:
        from evoprune_tf.plots import mask_heatmap

        if state.population:
            genomes = np.stack([np.asarray(ind).ravel() for ind in state.population])
            title = f"final population, generation {state.generation}"
            self.log_artifact(mask_heatmap(genomes, folder / "population_masks.png", title=title), "plots")

    def _log_pareto_plot(self, state: EvolutionState, folder: Path) -> None:
        from evoprune_tf.pareto import knee_point
        from evoprune_tf.plots import pareto_plots

        members = [ind for ind in (state.halloffame or []) if ind.fitness.valid]
        if not members or len(members[0].fitness.values) < 2:
            return
        points = np.array([ind.fitness.values for ind in members], dtype=np.float64)
        knee = knee_point(points, members[0].fitness.weights)
        path = pareto_plots(points, self._names(points.shape[1]), folder / "pareto_front.png", knee_index=knee)
        self.log_artifact(path, "plots")

