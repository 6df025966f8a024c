"""Where a grid's cells stand in MLflow: their runs by cell key, their status, what can resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from evoprune_tf.studies.grid_spec import CELL_TAG, Grid

__all__ = ["grid_status", "cell_runs", "resumable", "GridTags"]


def cell_runs(uri: str, experiment: str) -> dict[str, list]:
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
    runs = cell_runs(grid.tracking_uri, grid.experiment)
    status: dict[str, tuple[str, str | None]] = {}
    for cell in grid.cells:
        mine = runs.get(cell.key, [])
        done = [r for r in mine if r.info.status == "FINISHED"]
        chosen = done[0] if done else (mine[0] if mine else None)
        status[cell.key] = (chosen.info.status, chosen.info.run_id) if chosen else ("TODO", None)
    return status


class GridTags:
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


def resumable(runs: Sequence) -> tuple[Any, Path] | None:
    """The newest dead run of a cell whose checkpoint file still exists."""
    for dead in runs:
        path = dead.data.tags.get("evoprune.checkpoint")
        if dead.info.status != "FINISHED" and path and Path(path).is_file():
            return dead, Path(path)
    return None
