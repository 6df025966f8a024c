"""`evoprune compare --axis`: a metric against a numeric grid axis, and fronts against sweeps.

`compare_over_axis` reads a study's runs, groups them by the tags you name, places
every run at the value of the axis its grid cell had (``evoprune.grid.<axis>``) and
writes, under ``out_dir``:

* ``axis_table.csv``: mean, sample std and n of the metric per (value, group);
* ``axis_values.csv``: every (value, seed, group) value the tests used;
* ``axis_tests.csv`` and ``axis_pairwise.csv``: the paired test at each value (Wilcoxon
  for two groups; Friedman with Holm-corrected pairwise Wilcoxon and Vargha-Delaney A
  for three or more), pairing runs by seed (`evoprune_tf.studies.axis`);
* ``axis_curve.png``: the metric against the axis, one line and ± std band per group;
* with ``fronts`` (groups of multi-objective runs, e.g. NSGA-II): ``fronts.csv``
  (test hypervolume per seed and group), ``fronts_tests.csv`` (each front group against
  each sweep group, Wilcoxon and A, Holm-corrected) and ``fronts.png``
  (`evoprune_tf.studies.fronts`);
* ``comparison.md``, also printed by the CLI;

and logs them as a comparison run in ``<experiment>-comparisons``
(`evoprune_tf.studies.comparison_run.log_axis_comparison_run`).

Bad input is one line before any test, plot or download: an axis that is also a
group tag, an axis no selected run has (naming the grid axes it has), a non-numeric
value (naming it), a single value, or a ``fronts`` group that is not in the selection.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from evoprune_tf.studies.axis import (
    GRID_AXIS_PREFIX,
    AxisComparison,
    axis_name,
    axis_points,
    axis_table,
    axis_values,
    curve_order,
)
from evoprune_tf.studies.axis_markdown import format_axis_markdown
from evoprune_tf.studies.axis_plot import axis_curve_plot, fronts_plot
from evoprune_tf.studies.comparison import metric_direction
from evoprune_tf.studies.comparison_run import log_axis_comparison_run
from evoprune_tf.studies.fronts import compare_fronts
from evoprune_tf.studies.runs import SEED_TAG, check_selection, group_runs, read_runs, seed_order
from evoprune_tf.studies.stats import FriedmanResult

if TYPE_CHECKING:
    import pandas

__all__ = ["compare_over_axis", "format_axis_markdown"]


def compare_over_axis(
    tracking_uri: str,
    experiment: str,
    *,
    axis: str,
    group_by: Sequence[str],
    out_dir: str | Path,
    fronts: Sequence[str] = (),
    filter_string: str = "",
    metric: str = "test_accuracy_mean",
    higher_is_better: bool | None = None,
    seed_tag: str = SEED_TAG,
    statuses: Sequence[str] | None = ("FINISHED",),
    alpha: float = 0.05,
    drop_incomplete: bool = False,
    log_to_mlflow: bool = True,
) -> AxisComparison:
    """Compare groups of runs along a numeric grid axis, per value paired over seeds.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: Experiment name.
        axis: The grid axis, a config key (``encoding.active``) or its tag
            (``evoprune.grid.encoding.active``).
        group_by: Tags whose values define a group, e.g. ``["evoprune.algorithm"]``.
        out_dir: Folder for the files (see the module docstring).
        fronts: Groups of multi-objective runs whose test fronts are compared with the
            fronts the other groups trace across the axis; empty: no front comparison.
        filter_string: MLflow search filter narrowing the runs.
        metric: The metric on the curve and in the tests.
        higher_is_better: Its direction; None looks it up for the known metrics.
        seed_tag: Tag that pairs runs.
        statuses: Run statuses to keep (None keeps all).
        alpha: Significance level.
        drop_incomplete: Test on the seeds every group has (per value, and per sweep)
            instead of raising.
        log_to_mlflow: Log a comparison run with the outputs as artifacts.

    Returns:
        The curve's table, the tests per value, the fronts' comparison, the files and the run id.

    Raises:
        ValueError: One line for each bad input (see the module docstring), an empty
            selection, a metric no run logged, and unpaired seeds.
    """
    from mlflow import MlflowClient

    axis = axis_name(axis)
    group_by = _checked_inputs(axis, group_by, alpha)
    higher = metric_direction(metric, higher_is_better)
    frame = read_runs(tracking_uri, experiment, filter_string=filter_string, statuses=statuses)
    check_selection(frame, experiment, filter_string, statuses, metric, seed_tag)
    members, _ = group_runs(frame, group_by)
    values, on_curve, left_out = _curve_runs(frame, members, fronts, axis, experiment)
    points = axis_points(frame, on_curve, values, metric=metric, axis=axis, seed_tag=seed_tag,
                         higher_is_better=higher, alpha=alpha, drop_incomplete=drop_incomplete)
    groups = curve_order(points, higher)
    client = MlflowClient(tracking_uri=tracking_uri)
    result = AxisComparison(
        experiment=experiment, filter_string=filter_string, group_by=group_by, axis=axis, metric=metric,
        higher_is_better=higher, groups=groups, points=points, table=axis_table(points, groups, axis, metric),
        run_ids={name: frame.loc[on_curve[name], "run_id"].tolist() for name in groups}, left_out=left_out,
        alpha=alpha,
    )
    if fronts:
        result.fronts = compare_fronts(client, frame, {name: members[name] for name in fronts},
                                       {name: on_curve[name] for name in groups}, values,
                                       axis=axis, seed_tag=seed_tag, alpha=alpha, drop_incomplete=drop_incomplete)
    result.files = _write_files(result, Path(out_dir), seed_tag)
    if log_to_mlflow:
        result.run_id = log_axis_comparison_run(client, tracking_uri, result, seed_tag)
    return result


def _checked_inputs(axis: str, group_by: Sequence[str], alpha: float) -> tuple[str, ...]:
    """The group tags, after refusing no axis, no tags, the axis among the tags or ``alpha`` outside (0, 1)."""
    group_by = tuple(group_by)
    if not axis:
        raise ValueError("axis is empty; expected a numeric grid axis such as encoding.active")
    if not group_by:
        raise ValueError("group_by is empty; expected tags such as ['evoprune.algorithm']")
    if GRID_AXIS_PREFIX + axis in group_by:
        raise ValueError(f"axis {axis!r} is also a --group-by tag; expected the groups without it (the axis is the x axis)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} is outside (0, 1)")
    return group_by


def _curve_runs(frame: "pandas.DataFrame", members: dict[str, list[int]], fronts: Sequence[str], axis: str,
                experiment: str) -> tuple["pandas.Series", dict[str, list[int]], dict[str, int]]:
    """The axis values, the runs on the curve per group and the count left out per group (no axis tag).

    Raises:
        ValueError: A ``fronts`` group not in the selection, no group left for the curve,
            an axis no run has or that is not numeric, or a single value.
    """
    unknown = [name for name in fronts if name not in members]
    if unknown:
        raise ValueError(f"--fronts group {unknown[0]!r} is not in the selection; expected one of: {', '.join(members)}")
    curve_rows = {name: rows for name, rows in members.items() if name not in fronts}
    if not curve_rows:
        raise ValueError(f"every group is a --fronts group; expected groups run over {axis} as well")
    values = axis_values(frame.loc[[i for rows in curve_rows.values() for i in rows]], axis, experiment)
    on_curve = {name: [i for i in rows if not math.isnan(values[i])] for name, rows in curve_rows.items()}
    left_out = {name: len(rows) - len(on_curve[name]) for name, rows in curve_rows.items()
                if len(rows) > len(on_curve[name])}
    distinct = sorted(set(values.dropna()))
    if len(distinct) < 2:
        raise ValueError(f"axis {axis!r} has one value ({distinct[0]:g}) in the selection; expected a sweep of "
                         "two or more values for a curve")
    return values, {name: rows for name, rows in on_curve.items() if rows}, left_out


def _write_files(result: AxisComparison, out: Path, seed_tag: str) -> dict[str, Path]:
    """Writes the CSVs, the plots and ``comparison.md`` under ``out``; returns output name -> path."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def save(name: str, frame: "pandas.DataFrame", file: str) -> None:
        frame.to_csv(out / file, index=False)
        files[name] = out / file

    save("table", result.table, "axis_table.csv")
    save("values", pd.DataFrame(
        [{result.axis: p.value, seed_tag: seed, **{n: p.values[n].get(seed) for n in result.groups if n in p.values}}
         for p in result.points for seed in sorted({s for v in p.values.values() for s in v}, key=seed_order)]),
        "axis_values.csv")
    save("tests", pd.DataFrame(
        [{result.axis: p.value, "test": type(p.test).__name__.replace("Result", ""), "n_seeds": p.test.n,
          "statistic": p.test.statistic, "p_value": p.test.p_value} for p in result.points if p.test is not None],
        columns=[result.axis, "test", "n_seeds", "statistic", "p_value"]), "axis_tests.csv")
    pairwise = [{result.axis: p.value, **vars(pair)} for p in result.points if isinstance(p.test, FriedmanResult)
                for pair in p.test.pairwise]
    if pairwise:
        save("pairwise", pd.DataFrame(pairwise), "axis_pairwise.csv")
    files["curve"] = axis_curve_plot(result, out / "axis_curve.png")
    fronts = result.fronts
    if fronts is not None:
        save("fronts", pd.DataFrame({name: pd.Series(hv, dtype=float) for name, hv in fronts.hypervolumes.items()})
             .rename_axis(seed_tag).reset_index(), "fronts.csv")
        save("fronts_tests", pd.DataFrame(
            [{"front": p.front, "sweep": p.sweep, "n_seeds": p.test.n, "median_difference": p.test.median_difference,
              "wilcoxon_p": p.test.p_value, "holm_p": p.holm_p, "a12": p.test.a12, "magnitude": p.test.magnitude}
             for p in fronts.pairs]), "fronts_tests.csv")
        files["fronts_plot"] = fronts_plot(fronts, out / "fronts.png")
    result.files = files
    (out / "comparison.md").write_text(format_axis_markdown(result), encoding="utf-8")
    files["markdown"] = out / "comparison.md"
    return files
