"""The MLflow tracker: one run per evolution, fed by the loop's callbacks.

`MLflowTracker` is a `evoprune_tf.search.callbacks.Callback`: the loops call it, they never
import it. It receives plain params and tags (the application layer turns a config into
them) and logs everything through an `mlflow.MlflowClient` with an explicit run id, so
an active fluent run elsewhere in the process (or a crash in another one) cannot make it
log into the wrong run.

What a run holds:

* params: given once (the app logs the whole config, flattened); masks never go to
  params (write-once, length-limited) but to artifacts;
* tags: given (the app sets ``evoprune.algorithm``, ``.encoding``, ``.dataset``,
  ``.backbone``, ``.seed``, ``.operators``), for `mlflow.search_runs` and the UI;
* metrics, ``step=generation``: every numeric logbook field (``best``, ``mean``,
  ``best_active``, ``front_size``, ``hypervolume``...) and the evaluator's counters,
  one ``log_batch`` per generation;
* artifacts: ``logbook.csv``, ``halloffame.csv``, ``masks/best_genomes.npz``,
  ``plots/convergence.png``, ``plots/population_masks.png``; multi-objective runs add
  ``fronts/front_gen_NNNN.csv`` and ``plots/pareto_front.png``; the runner adds
  ``report.json`` and the Keras model (`log_keras_model`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from evoprune_tf.errors import one_line
from evoprune_tf.records import json_default, numeric_items
from evoprune_tf.search.callbacks import Callback, EvolutionState
from evoprune_tf.tracking.artifacts import EvolutionArtifacts
from evoprune_tf.tracking.extras import ConfigArtifact, DatasetInput
from evoprune_tf.tracking.owner import REAPED_TAG, owner_tags
from evoprune_tf.tracking.redact import redact_uri
from evoprune_tf.tracking.store_lock import open_sqlite_store
from evoprune_tf.tracking.store import artifact_location, find_run, logged_through, resolve_tracking_uri

if TYPE_CHECKING:  # pragma: no cover
    import keras
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

# ConfigArtifact and DatasetInput live in `evoprune_tf.tracking.extras`; they stay
# importable from here, where users import them.
__all__ = ["MLflowTracker", "ConfigArtifact", "DatasetInput"]

_log = logging.getLogger(__name__)
_RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
_MAX_TAG_LENGTH = 5000


class MLflowTracker(EvolutionArtifacts, Callback):
    """Logs an evolution to one MLflow run: params, tags, per-generation metrics, artifacts.

    Typical use (the runner does this)::

        tracker = MLflowTracker(uri=uri, experiment="evoprune", params=params, tags=tags, stats=evaluator.stats)
        population, logbook = algorithms.steady_state_ga(..., callbacks=[tracker])
        tracker.log_report(report)
        tracker.log_keras_model(model)
        tracker.finish()

    When the loop raises, `on_end` still logs the logbook, hall of fame, masks and plots
    and then ends the run as ``KILLED`` (`KeyboardInterrupt`) or ``FAILED``; after a
    clean loop the run stays open for the report, and `finish` ends it.

    Args:
        uri: tracking URI ("" = ``$MLFLOW_TRACKING_URI`` or the project's SQLite store).
        experiment: MLflow experiment name (created when missing).
        run_name: the new run's name.
        params: logged once as run params (values become strings).
        tags: run tags.
        title: title of the convergence plot.
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
        *,
        uri: str = "",
        experiment: str = "evoprune",
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        title: str = "",
        stats: Callable[[], Mapping[str, Any]] | None = None,
        run_id: str | None = None,
        log_fronts: bool = False,
        objective_names: Sequence[str] | None = None,
    ) -> None:
        self.requested_uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.title = title
        self.stats = stats
        self.run_id: str | None = run_id
        self.log_fronts = log_fronts
        self.objective_names = list(objective_names) if objective_names is not None else None
        self.experiment_id: str | None = None
        self.uri: str | None = None
        self._resume = run_id is not None
        self._client: MlflowClient | None = None
        self._ended = False
        # A resumed run replays the generations lost since its last checkpoint exactly;
        # the steps it had already logged are not logged a second time.
        self._logged_through = -1

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

        self.uri = resolve_tracking_uri(self.requested_uri)
        if redact_uri(self.uri) != self.uri:
            # MLflow prints "View run ... at: <the URI>" when a run ends, password included;
            # the application prints the run's URI without it (`redact_uri`).
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        # The global URI too: `mlflow.keras.log_model` and `models:/` URIs resolve through it.
        mlflow.set_tracking_uri(self.uri)
        open_sqlite_store(self.uri)  # a new SQLite store: its tables built by one process at a time
        client = MlflowClient(tracking_uri=self.uri)
        params = dict(self.params)
        tags = {**self.tags, **owner_tags()}  # who runs it: a later command marks it KILLED once that process is gone
        if self._resume:
            run = find_run(self.run_id or "", self.uri)
            self.run_id = run.info.run_id
            self.experiment_id = run.info.experiment_id
            client.update_run(self.run_id, status="RUNNING")
            if REAPED_TAG in run.data.tags:  # it was marked KILLED when its process died; it runs again
                client.delete_tag(self.run_id, REAPED_TAG)
            logged = run.data.params
            changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
            if changed:
                # Params are write-once: the run keeps the values it started with.
                _log.warning("MLflow run %s: resumed with changed params, not re-logged: %s",
                             run.info.run_id, ", ".join(changed))
            params = {k: v for k, v in params.items() if k not in logged}
            self._logged_through = logged_through(self.run_id, self.uri)
            if state is not None:
                tags["evoprune.resumed_at_generation"] = str(state.generation)
        else:
            self.experiment_id = self._experiment(client)
            run = client.create_run(self.experiment_id, run_name=self.run_name)
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
        """Logs the newest logbook record and the stats in one batch, ``step=generation``.

        In a resumed run, generations the run had already logged (replayed from an
        older checkpoint, with the same values) are skipped, so no step is logged twice.
        """
        if state.generation <= self._logged_through:
            return
        metrics = {k: v for k, v in numeric_items(state.last).items() if k != "gen"}
        if self.stats is not None:
            metrics = {**numeric_items(self.stats()), **metrics}
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
                    _log.warning("MLflow run %s: could not log %s: %s", self.run_id, name, one_line(failure),
                                 exc_info=_log.isEnabledFor(logging.DEBUG))
        if error is not None:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            try:
                self._client.set_tag(self.run_id, "evoprune.error",
                                     f"{type(error).__name__}: {one_line(error)}"[:_MAX_TAG_LENGTH])
            except Exception as failure:  # noqa: BLE001
                _log.warning("MLflow run %s: could not tag the error: %s", self.run_id, one_line(failure))
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

        values = numeric_items(metrics)
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
        text = json.dumps(report, indent=2, default=json_default, sort_keys=False)
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

    def log_figure(self, fig: "Figure", artifact_file: str) -> None:
        """Logs a matplotlib figure as an image artifact (the caller keeps and closes it)."""
        self.client.log_figure(self.run_id, fig, artifact_file)

    def log_keras_model(
        self,
        model: "keras.Model",
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
        signature = _signature(model)
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
            signature=signature,
            pip_requirements=list(pip_requirements or mlflow.keras.get_default_pip_requirements()),
        )
        client.set_tag(self.run_id, f"evoprune.model_uri.{name}", info.model_uri)
        return info

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Sets run tags in one batch (values become strings, cut to MLflow's limit).

        Args:
            tags: name -> value.
        """
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(str(k), str(v)[:_MAX_TAG_LENGTH]) for k, v in tags.items()])

    def checkpoint_saved(self, path: str | Path, generation: int, digest: str | None = None) -> None:
        """Records where the run's checkpoint is, which generation it holds and its digest (run tags).

        ``evoprune resume RUN_ID`` finds the checkpoint through ``evoprune.checkpoint``
        from any folder; ``evoprune.checkpoint_generation`` lets a resume refuse a stale
        (older) copy, and ``evoprune.checkpoint_sha256`` a swapped or foreign file. A
        failure to tag is a warning: the checkpoint itself is written.

        Args:
            path: the checkpoint file.
            generation: the generation it holds.
            digest: the SHA-256 of its payload (None: not recorded).
        """
        if self._client is None or self._ended:
            return
        tags = {"evoprune.checkpoint": Path(path).absolute(), "evoprune.checkpoint_generation": generation}
        if digest:
            tags["evoprune.checkpoint_sha256"] = digest
        try:
            self.set_tags(tags)
        except Exception as error:  # noqa: BLE001 - tracking extras never stop an evolution
            _log.warning("MLflow run %s: could not tag the checkpoint: %s", self.run_id, one_line(error))

    def log_dataset(self, name: str, digest: str, source: str, *, context: str = "train",
                    profile: Mapping[str, Any] | None = None) -> None:
        """Logs the run's dataset as an MLflow dataset input (the UI's Dataset column).

        Args:
            name: the dataset's name.
            digest: a content digest (e.g. the images' content hash; cut to MLflow's 36 chars).
            source: where it came from (a folder, ``.npz``, ``tfds:NAME``...).
            context: the input's role tag (``mlflow.data.context``).
            profile: small summary numbers (counts per split, classes).
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag

        source = str(source)
        kind = "code" if source.startswith(("tfds:", "builtin:")) else "local"
        entity = Dataset(
            name=str(name), digest=str(digest)[:36], source_type=kind, source=json.dumps({"uri": source}),
            profile=json.dumps(dict(profile), default=json_default) if profile else None,
        )
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, [InputTag("mlflow.data.context", context)])])

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

    def _experiment(self, client: MlflowClient) -> str:
        name = self.experiment
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return client.create_experiment(name, artifact_location=artifact_location(self.uri or ""))
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id


def _signature(model: "keras.Model") -> "ModelSignature | None":
    """The model's MLflow signature, inferred from one zero input (None if it cannot be).

    With a signature MLflow knows the input and output shapes and stops warning that the
    model was logged "without specifying model signature".
    """
    try:
        from mlflow.models import infer_signature

        shape = tuple(model.input_shape)
        sample = np.zeros((1, *[d or 1 for d in shape[1:]]), dtype=np.float32)
        return infer_signature(sample, np.asarray(model(sample, training=False)))
    except Exception as error:  # noqa: BLE001 - a signature is a nicety: never lose the model for it
        _log.debug("no model signature: %s", one_line(error))
        return None

