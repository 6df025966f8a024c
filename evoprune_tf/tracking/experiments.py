"""The experiments runs go to: created (or reopened) as model-training experiments.

MLflow 3 reads the experiment tag ``mlflow.experimentKind`` to choose what its UI shows
first. An experiment without it is taken for a GenAI one: it opens on an empty "Traces"
overview and labels run pages "Evaluations". Every experiment this project creates is
tagged ``custom_model_development`` (the UI's "Machine learning" kind), so the runs table
is the first page; an older experiment without the tag gets it the next time a run or a
comparison is logged into it. A kind someone chose in the UI is kept.

MLflow 3.17's own UI goes further: a switch in its sidebar ("GenAI" | "Model training",
remembered by the browser, GenAI at first) decides for every experiment, whatever the
tag says. The links this project prints (`ui_link`) carry ``?workflowType=machine_learning``,
which sets that switch to "Model training" for the page they open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evoprune_tf.tracking.store import artifact_location

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = ["EXPERIMENT_KIND_TAG", "TRAINING_KIND", "COMPARISONS_SUFFIX", "TRAINING_VIEW", "comparisons_experiment",
           "ensure_experiment", "mark_training", "ui_link"]

#: The experiment tag MLflow's UI (3.x) reads to pick an experiment's kind.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
#: Its value for classic model training (runs table first, no GenAI pages).
TRAINING_KIND = "custom_model_development"
#: The query that opens MLflow 3.17's UI in its "Model training" view.
TRAINING_VIEW = "workflowType=machine_learning"
#: `evoprune compare` logs its runs to ``<study experiment><COMPARISONS_SUFFIX>``.
COMPARISONS_SUFFIX = "-comparisons"


def comparisons_experiment(experiment: str) -> str:
    """The experiment holding the comparison runs of the study experiment ``experiment``."""
    return f"{experiment}{COMPARISONS_SUFFIX}"


def ui_link(server_url: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """A link into the MLflow UI at ``server_url`` that opens in the "Model training" view.

    Args:
        server_url: the server's address, e.g. ``http://127.0.0.1:5000``.
        experiment_id: link to this experiment's runs table (None: the experiment list).
        run_id: link to this run of the experiment (needs ``experiment_id``).
    """
    page = "/#/experiments"
    if experiment_id is not None:
        page += f"/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{server_url.rstrip('/')}{page}?{TRAINING_VIEW}"


def mark_training(client: "MlflowClient", experiment_id: str) -> None:
    """Tag an experiment as model training unless it already has a kind."""
    experiment = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)


def ensure_experiment(client: "MlflowClient", name: str, uri: str) -> str:
    """The id of the experiment ``name``: created if missing, restored if deleted, tagged as training.

    A new experiment keeps its artifacts where the tracker would put them (next to a
    SQLite file; the server's choice otherwise). Two processes creating it at once
    (a grid's workers) are fine: the loser reads the winner's.

    Args:
        client: a client of the store.
        name: the experiment name.
        uri: the resolved tracking URI (for the artifact location).
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri),
                                            tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        except MlflowException:  # created meanwhile by someone else
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    mark_training(client, experiment.experiment_id)
    return experiment.experiment_id
