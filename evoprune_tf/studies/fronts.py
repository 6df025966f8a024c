"""Fronts against sweeps: a multi-objective run's test front vs the front a baseline traces across k.

The fair test of "evolution finds better trade-offs than a ranking does". For every seed:

* a **front group** (a multi-objective method, e.g. NSGA-II) has one run whose final
  report retrained every member of its Pareto front and scored it on test; the run's
  artifact ``pareto/pareto_front.csv`` holds one line per member with
  ``test_accuracy`` (mean over the report's retrain seeds) and ``active_fraction``
  (`evoprune_tf.report.front_files.write_front_table`);
* a **sweep group** (a baseline run at every value of a numeric grid axis such as
  ``encoding.active``) traces a front through its runs of that seed, one point per value:
  ``test_accuracy_mean`` (the same retrain recipe and seeds) and ``active_percent / 100``.

Each front is scored by its hypervolume on test in (test accuracy, active fraction),
with the project's helper `evoprune_tf.search.pareto.hypervolume`, weights ``(+1, -1)``,
its fixed bounds ``[0, 1]`` for both and its fixed reference point ``(1.1, 1.1)`` in
the normalised minimisation space: test accuracy ``-0.1`` and active fraction ``1.1``
in natural units. The values are therefore comparable across runs, seeds and datasets,
and the largest possible one is 1.21. Every front group is then compared with every
sweep group, paired over seeds: Wilcoxon signed-rank with Vargha-Delaney A, and Holm's
correction over the family of pairs.

Only 2-D: the report's own ``hypervolume_test`` adds the test AUROC when the run had OOD
data, which the baselines' sweeps do not measure.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, Iterator, Mapping, Sequence

import numpy as np

from evoprune_tf.search.pareto import hypervolume
from evoprune_tf.studies.runs import missing, seed_order, seed_value
from evoprune_tf.studies.stats import WilcoxonResult, align_by_seed, holm, wilcoxon_paired

if TYPE_CHECKING:
    import pandas
    from mlflow import MlflowClient

__all__ = [
    "FRONT_ARTIFACT",
    "FRONT_WEIGHTS",
    "FrontComparison",
    "FrontPair",
    "compare_fronts",
    "front_hypervolume",
    "read_front",
]

#: The report's front table inside a multi-objective run's artifacts.
FRONT_ARTIFACT = "pareto/pareto_front.csv"
#: (test accuracy: maximised, active fraction: minimised).
FRONT_WEIGHTS = (1.0, -1.0)


@dataclass(frozen=True)
class FrontPair:
    """A front group against a sweep group, paired over seeds on the test hypervolume.

    Attributes:
        front: The front group (``a`` of the test).
        sweep: The sweep group (``b``).
        test: Wilcoxon signed-rank of ``front - sweep`` with A = P[front's hypervolume is larger].
        holm_p: ``test.p_value`` after Holm's correction over every pair.
    """

    front: str
    sweep: str
    test: WilcoxonResult
    holm_p: float


@dataclass
class FrontComparison:
    """Test hypervolumes of the front groups and the sweep groups, per seed, and their paired tests.

    Attributes:
        front_groups: Groups of multi-objective runs.
        sweep_groups: Groups whose runs across the axis values trace a front.
        points: Group -> seed -> ``(n, 2)`` array of (test accuracy, active fraction).
        hypervolumes: Group -> seed -> test hypervolume.
        pairs: Every (front, sweep) pair, in the order of the groups.
        alpha: Significance level.
    """

    front_groups: list[str]
    sweep_groups: list[str]
    points: dict[str, dict[Hashable, np.ndarray]]
    hypervolumes: dict[str, dict[Hashable, float]]
    pairs: list[FrontPair]
    alpha: float = 0.05


def front_hypervolume(points: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Test hypervolume of (test accuracy, active fraction) points (see the module docstring).

    Args:
        points: ``(n, 2)`` rows of (test accuracy, active fraction); dominated points add nothing.

    Returns:
        The hypervolume, in [0, 1.21].
    """
    return hypervolume(np.asarray(points, dtype=float).reshape(-1, 2), FRONT_WEIGHTS)


def read_front(client: "MlflowClient", run_id: str, group: str) -> np.ndarray:
    """The (test accuracy, active fraction) of every member of a run's final front.

    Args:
        client: A client of the store.
        run_id: The multi-objective run.
        group: Its group (named in errors).

    Returns:
        ``(n, 2)`` array.

    Raises:
        ValueError: The run has no ``pareto/pareto_front.csv``, or a member has no test accuracy.
    """
    import pandas as pd

    _check_front_artifact(client, run_id, group)
    with tempfile.TemporaryDirectory(prefix="evoprune-front-") as folder, _no_progress_bar():
        table = pd.read_csv(client.download_artifacts(run_id, FRONT_ARTIFACT, folder))
    if not {"test_accuracy", "active_fraction"} <= set(table.columns) or table["test_accuracy"].isna().any():
        raise ValueError(f"run {run_id} of front group {group!r}: {FRONT_ARTIFACT} lacks test accuracies; expected "
                         "every member retrained and scored on a test split")
    return table[["test_accuracy", "active_fraction"]].to_numpy(dtype=float)


def _check_front_artifact(client: "MlflowClient", run_id: str, group: str) -> None:
    """A one-line error unless the run holds ``pareto/pareto_front.csv``."""
    folder = FRONT_ARTIFACT.rsplit("/", 1)[0]
    if FRONT_ARTIFACT not in {f.path for f in client.list_artifacts(run_id, folder)}:
        raise ValueError(f"run {run_id} of front group {group!r} has no artifact {FRONT_ARTIFACT}; expected a "
                         "multi-objective run (e.g. NSGA-II) whose final report scored its front on test")


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar per download on stderr: off while the fronts are read."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _front_runs(frame: "pandas.DataFrame", rows: Mapping[str, list[int]], seed_tag: str) -> dict[str, dict]:
    """Front group -> seed -> run id, refusing two runs of one seed."""
    runs: dict[str, dict] = {}
    for name, indices in rows.items():
        by_seed: dict[Hashable, str] = {}
        for i in indices:
            seed = seed_value(frame.at[i, f"tags.{seed_tag}"])
            if seed in by_seed:
                raise ValueError(f"front group {name!r} has several runs with seed {seed!r}; expected one "
                                 "multi-objective run per seed (add a tag to --group-by or narrow --filter)")
            by_seed[seed] = frame.at[i, "run_id"]
        runs[name] = by_seed
    return runs


def _sweep_points(frame: "pandas.DataFrame", rows: Mapping[str, list[int]], values: "pandas.Series", *, axis: str,
                  seed_tag: str, drop_incomplete: bool) -> dict[str, dict[Hashable, np.ndarray]]:
    """Sweep group -> seed -> one (test accuracy, active fraction) per axis value, every value present."""
    for column in ("metrics.test_accuracy_mean", "metrics.active_percent"):
        lacking = [frame.at[i, "run_id"] for r in rows.values() for i in r
                   if column not in frame or missing(frame.at[i, column])]
        if lacking:
            raise ValueError(f"sweep runs {lacking[:3]} have no metric {column[len('metrics.'):]!r}; expected "
                             "the final metrics of a head run")
    sweeps: dict[str, dict[Hashable, np.ndarray]] = {}
    for name, indices in rows.items():
        by_seed: dict[Hashable, dict[float, tuple[float, float]]] = {}
        for i in indices:
            seed = seed_value(frame.at[i, f"tags.{seed_tag}"])
            point = (float(frame.at[i, "metrics.test_accuracy_mean"]), float(frame.at[i, "metrics.active_percent"]) / 100)
            by_seed.setdefault(seed, {})[values[i]] = point
        every = set().union(*(set(v) for v in by_seed.values()))
        sweeps[name] = {}
        for seed in sorted(by_seed, key=seed_order):
            lacking_values = sorted(every - set(by_seed[seed]))
            if lacking_values:
                message = (f"sweep group {name!r} seed {seed!r} lacks {axis} = "
                           f"{', '.join(f'{v:g}' for v in lacking_values)}; expected every value of its sweep")
                if not drop_incomplete:
                    raise ValueError(message + " (or --drop-incomplete)")
                warnings.warn(message + "; seed dropped", stacklevel=2)
                continue
            sweeps[name][seed] = np.asarray([by_seed[seed][v] for v in sorted(every)])
    return sweeps


def compare_fronts(client: "MlflowClient", frame: "pandas.DataFrame", front_rows: Mapping[str, list[int]],
                   sweep_rows: Mapping[str, list[int]], values: "pandas.Series", *, axis: str, seed_tag: str,
                   alpha: float, drop_incomplete: bool) -> FrontComparison:
    """Each front group's test hypervolume against each sweep group's, paired over seeds.

    Args:
        client: A client of the store (the fronts are artifacts).
        frame: The selected runs.
        front_rows: Front group -> row indices of its runs (one per seed).
        sweep_rows: Sweep group -> row indices of its runs with an axis value.
        values: The axis value of every row (`evoprune_tf.studies.axis.axis_values`).
        axis: The axis name (for errors).
        seed_tag: The tag pairing runs.
        alpha: Significance level.
        drop_incomplete: Drop seeds that lack a sweep value or a group, with a warning.

    Returns:
        The hypervolumes and the Holm-corrected paired tests.

    Raises:
        ValueError: No sweep group, two front runs of one seed, a sweep run without its
            final metrics, a seed lacking a sweep value, a run without its front, or
            groups with different seeds; one line each.
    """
    if not sweep_rows:
        raise ValueError(f"no sweep group: every group given to --fronts; expected baselines run over {axis}")
    runs = _front_runs(frame, front_rows, seed_tag)
    sweeps = _sweep_points(frame, sweep_rows, values, axis=axis, seed_tag=seed_tag, drop_incomplete=drop_incomplete)
    for name, by_seed in runs.items():  # every front is there before any is downloaded
        for run_id in by_seed.values():
            _check_front_artifact(client, run_id, name)
    points = {name: {seed: read_front(client, run_id, name) for seed, run_id in sorted(by_seed.items(),
                                                                                     key=lambda item: seed_order(item[0]))}
              for name, by_seed in runs.items()}
    points.update(sweeps)
    hypervolumes = {name: {seed: front_hypervolume(p) for seed, p in by_seed.items()} for name, by_seed in points.items()}

    raw = []
    for front in runs:
        for sweep in sweep_rows:
            try:
                _, aligned = align_by_seed({front: hypervolumes[front], sweep: hypervolumes[sweep]},
                                           drop_incomplete=drop_incomplete)
            except ValueError as error:
                raise ValueError(f"fronts: {error}") from None
            raw.append((front, sweep, wilcoxon_paired(aligned[front], aligned[sweep], higher_is_better=True)))
    adjusted = holm([test.p_value for _, _, test in raw])
    pairs = [FrontPair(front, sweep, test, float(p)) for (front, sweep, test), p in zip(raw, adjusted)]
    return FrontComparison(front_groups=list(runs), sweep_groups=list(sweep_rows), points=points,
                           hypervolumes=hypervolumes, pairs=pairs, alpha=alpha)
