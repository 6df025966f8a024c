"""Extra callbacks next to the tracker: the run's config and its dataset, logged when the evolution starts."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from evoprune_tf.errors import one_line
from evoprune_tf.search.callbacks import Callback, EvolutionState

__all__ = ["ConfigArtifact", "DatasetInput"]

_log = logging.getLogger("evoprune_tf.tracking.tracker")


class ConfigArtifact(Callback):
    """Logs the run's whole config as ``config.json`` when the evolution starts.

    Add it right after the `evoprune_tf.tracking.MLflowTracker` (whose ``on_start``
    opens the run). The flattened MLflow params lose types (lists become strings, empty
    tables vanish); this file (the config as a plain nested dict) rebuilds it exactly. A failure to log
    is a warning, never the end of a run.
    """

    def __init__(self, tracker: Any, config: Mapping[str, Any]) -> None:
        self.tracker = tracker
        self.config = dict(config)

    def on_start(self, state: EvolutionState | None = None) -> None:
        try:
            self.tracker.log_report(self.config, artifact_file="config.json")
        except Exception as error:  # noqa: BLE001 - tracking extras never stop an evolution
            _log.warning("MLflow run %s: could not log config.json: %s", getattr(self.tracker, "run_id", None), error)


class DatasetInput(Callback):
    """Logs the run's dataset as an MLflow dataset input when the evolution starts.

    Add it after the `MLflowTracker`. The UI's Dataset column then shows the dataset by
    name and content digest; a failure to log is a warning, never the end of a run.

    Args:
        tracker: the run's tracker.
        name: the dataset name.
        digest: its content digest.
        source: where it came from.
        profile: small summary numbers (split sizes, classes).
    """

    def __init__(self, tracker: Any, *, name: str, digest: str, source: str,
                 profile: Mapping[str, Any] | None = None) -> None:
        self.tracker = tracker
        self.record = dict(name=name, digest=digest, source=source, profile=profile)

    def on_start(self, state: EvolutionState | None = None) -> None:
        if getattr(self.tracker, "_logged_through", -1) >= 0:
            return  # a resumed run logged its dataset when it started
        try:
            self.tracker.log_dataset(**self.record)
        except Exception as error:  # noqa: BLE001 - tracking extras never stop an evolution
            _log.warning("MLflow run %s: could not log the dataset: %s", getattr(self.tracker, "run_id", None),
                         one_line(error))
