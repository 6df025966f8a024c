"""Study runs read back from MLflow, in `mlflow.search_runs`' pandas layout, grouped and paired by seed.

Runs are read through `mlflow.MlflowClient` with an explicit tracking URI rather than the
fluent `mlflow.search_runs`, which only reads the process-wide URI: setting that would
change ``MLFLOW_TRACKING_URI`` for the whole process (and any child process). The rows
are laid out as `mlflow.search_runs(output_format="pandas")` lays them out
(``run_id``, ``status``, ``metrics.<name>``, ``tags.<name>``...).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Hashable, Sequence

import numpy as np

from evoprune_tf.tracking.owner import reap_if_dead

if TYPE_CHECKING:
    import pandas

__all__ = [
    "SEED_TAG",
    "KIND_TAG",
    "COMPARISON_KIND",
    "read_runs",
    "check_selection",
    "group_runs",
    "seed_value",
    "seed_order",
    "missing",
    "mean_std",
]


SEED_TAG = "evoprune.seed"
KIND_TAG = "evoprune.kind"
COMPARISON_KIND = "comparison"


_UNSET = "(unset)"


def read_runs(
    tracking_uri: str,
    experiment: str,
    *,
    filter_string: str = "",
    statuses: Sequence[str] | None = ("FINISHED",),
) -> "pandas.DataFrame":
    """Runs of an experiment as a DataFrame, in `mlflow.search_runs`' pandas layout.

    Comparison runs (tag ``evoprune.kind = comparison``) are left out.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///mlruns/mlflow.db``.
        experiment: Experiment name.
        filter_string: MLflow search filter, e.g. ``tags."evoprune.dataset" = 'rps'``.
        statuses: Run statuses to keep (None keeps all).

    Returns:
        One row per run: ``run_id``, ``status``, ``start_time``, ``metrics.<name>``
        (latest value: the last step for per-generation metrics), ``params.<name>``,
        ``tags.<name>``.

    Raises:
        ValueError: When the experiment does not exist.
    """
    import pandas as pd
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"experiment {experiment!r} not found in {tracking_uri}")
    rows = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        for run in page:
            run = reap_if_dead(client, run)  # a RUNNING run whose process died is listed as KILLED
            row: dict[str, object] = {
                "run_id": run.info.run_id,
                "status": run.info.status,
                "start_time": run.info.start_time,
            }
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    frame = pd.DataFrame(rows, columns=None if rows else ["run_id", "status", "start_time"])
    kind = f"tags.{KIND_TAG}"
    if kind in frame:
        frame = frame[frame[kind].fillna("") != COMPARISON_KIND]
    if statuses is not None:
        frame = frame[frame["status"].isin(list(statuses))]
    return frame.reset_index(drop=True)


def check_selection(frame: "pandas.DataFrame", experiment: str, filter_string: str,
                     statuses: Sequence[str] | None, metric: str, seed_tag: str) -> None:
    """Refuse an empty selection, a metric no run logged, or a run without the seed tag (one line each)."""
    if frame.empty:
        kept = "any status" if statuses is None else "/".join(statuses)
        raise ValueError(
            f"no runs ({kept}) in experiment {experiment!r} match filter {filter_string!r}"
        )
    metric_col = f"metrics.{metric}"
    if metric_col not in frame:
        logged = sorted(c[len("metrics."):] for c in frame.columns if c.startswith("metrics."))
        raise ValueError(f"no selected run logged metric {metric!r}; logged metrics: {logged}")
    seed_col = f"tags.{seed_tag}"
    lacking = frame["run_id"][frame[seed_col].isna()].tolist() if seed_col in frame else frame["run_id"].tolist()
    if lacking:
        shown = f"{lacking[:5]}{'...' if len(lacking) > 5 else ''}"
        raise ValueError(f"runs {shown} have no {seed_tag!r} tag to pair seeds by")


def group_runs(
    frame: "pandas.DataFrame", group_by: Sequence[str]
) -> tuple[dict[str, list[int]], dict[str, tuple[str, ...]]]:
    """Row indices per group name and each group's tag values."""
    members: dict[str, list[int]] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for index, row in frame.iterrows():
        key = tuple(
            _UNSET if missing(row.get(f"tags.{tag}")) else str(row.get(f"tags.{tag}")) for tag in group_by
        )
        name = "/".join(key)
        members.setdefault(name, []).append(index)
        keys[name] = key
    return members, keys


def seed_value(text: object) -> Hashable:
    """A seed tag as an int where it is one (so seeds sort 2 < 10), else as text."""
    try:
        return int(str(text))
    except ValueError:
        return str(text)


def seed_order(seed: Hashable) -> tuple[bool, int | str]:
    """Sort key putting integer seeds first, in numeric order."""
    return (not isinstance(seed, int), seed if isinstance(seed, int) else str(seed))


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; nan for one value) and count of the finite values."""
    array = np.asarray([v for v in values if not missing(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan, 0
    std = float(np.std(array, ddof=1)) if array.size > 1 else math.nan
    return float(np.mean(array)), std, int(array.size)
