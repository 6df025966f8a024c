"""Compare groups of MLflow runs over seeds: a table, paired tests, plots, a comparison run.

A study runs the same method (algorithm, operator, encoding...) over several seeds. This
module reads those runs back, groups them by the tags you name, pairs them by the seed
tag and says whether one group beats another:

* a table of mean ± std (and seed counts) per group for the final metrics, saved as
  markdown and CSV;
* paired tests over seeds on the chosen metric: Wilcoxon signed-rank for two groups,
  Friedman with Nemenyi and Holm-corrected Wilcoxon post-hoc tests for three or more,
  with Vargha-Delaney effect sizes (`evoprune_tf.studies.stats`);
* a critical-difference diagram (three or more groups) and the convergence curves of the
  per-generation ``best`` metric, mean ± std per group;
* a comparison run (tag ``evoprune.kind = comparison``) holding all of the above as
  artifacts, in the experiment ``<study>-comparisons``: its statistics stay out of the
  study's metric charts. Comparison runs are never read back as study runs (older
  stores kept them in the study experiment).

The steps live in their own modules, re-exported here: reading and pairing the runs
(`evoprune_tf.studies.runs`), the result and metric directions
(`evoprune_tf.studies.comparison`), the markdown (`evoprune_tf.studies.markdown`), the
convergence plot (`evoprune_tf.studies.convergence`) and the comparison run
(`evoprune_tf.studies.comparison_run`).

CLI: `compare_main` parses ``--experiment``, ``--filter``, ``--group-by tag1,tag2``,
``--metric``, ``--out``, ``--tracking-uri`` and more (see `add_compare_arguments`).
With ``--axis`` (a numeric grid axis such as ``encoding.active``) the groups are compared
at every value of the axis instead, and ``--fronts`` adds multi-objective fronts against
the sweeps (`evoprune_tf.studies.compare_axis`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Sequence

from evoprune_tf.studies.axis import AxisComparison
from evoprune_tf.studies.compare_axis import compare_over_axis, format_axis_markdown
from evoprune_tf.studies.comparison import DEFAULT_METRICS, ComparisonResult, metric_direction
from evoprune_tf.studies.comparison_run import log_comparison_run
from evoprune_tf.studies.convergence import convergence_plot
from evoprune_tf.studies.markdown import format_markdown
from evoprune_tf.studies.runs import (
    SEED_TAG,
    check_selection,
    group_runs,
    mean_std,
    missing,
    read_runs,
    seed_order,
    seed_value,
)
from evoprune_tf.studies.stats import (
    FriedmanResult,
    WilcoxonResult,
    align_by_seed,
    critical_difference_diagram,
    friedman,
    wilcoxon_paired,
)
from evoprune_tf.tracking.experiments import comparisons_experiment

if TYPE_CHECKING:
    import pandas
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_METRICS",
    "ComparisonResult",
    "add_compare_arguments",
    "compare",
    "compare_main",
    "format_markdown",
    "metric_direction",
    "read_runs",
    "run_compare",
]


def compare(
    tracking_uri: str,
    experiment: str,
    *,
    group_by: Sequence[str],
    out_dir: str | Path,
    filter_string: str = "",
    metric: str = "test_accuracy_mean",
    higher_is_better: bool | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    curve_metric: str = "best",
    seed_tag: str = SEED_TAG,
    statuses: Sequence[str] | None = ("FINISHED",),
    alpha: float = 0.05,
    drop_incomplete: bool = False,
    log_to_mlflow: bool = True,
) -> ComparisonResult:
    """Compare groups of runs over paired seeds and save (and log) the outcome.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///mlruns/mlflow.db``.
        experiment: Experiment name.
        group_by: Tags whose values define a group, e.g. ``["evoprune.algorithm"]``;
            a run lacking one gets the value ``(unset)``.
        out_dir: Folder for ``comparison.md``, ``comparison.csv``, ``values.csv``,
            ``pairwise.csv``, ``cd_diagram.png`` and ``convergence.png``.
        filter_string: MLflow search filter narrowing the runs.
        metric: The final metric to test on.
        higher_is_better: Its direction; None looks it up for the known metrics.
        metrics: Final metrics to tabulate (``metric`` is always included); metrics no
            selected run logged are left out, cells of groups lacking one are blank.
        curve_metric: Per-generation metric (step = generation) for the convergence plot.
        seed_tag: Tag that pairs runs across groups.
        statuses: Run statuses to keep (None keeps all).
        alpha: Significance level.
        drop_incomplete: Test on the seeds every group has instead of raising when a
            group lacks some.
        log_to_mlflow: Log a comparison run with the outputs as artifacts, in the
            experiment ``<experiment>-comparisons``.

    Returns:
        The table, the test, the paths written and the comparison run id.

    Raises:
        ValueError: On an empty selection (naming experiment and filter), a run without
            a seed tag, two runs of one group with the same seed, a metric no run logged,
            or groups with different seeds (naming the missing seeds per group).
    """
    from mlflow import MlflowClient

    group_by = _checked_group_by(group_by, alpha)
    higher = metric_direction(metric, higher_is_better)
    frame = read_runs(tracking_uri, experiment, filter_string=filter_string, statuses=statuses)
    check_selection(frame, experiment, filter_string, statuses, metric, seed_tag)

    members, keys = group_runs(frame, group_by)
    values = _values_by_group(frame, members, f"metrics.{metric}", f"tags.{seed_tag}")

    # Best mean first: tables and the Wilcoxon pair then read "winner vs the rest".
    def sort_key(name: str) -> tuple[bool, float, str]:
        mean = mean_std(list(values[name].values()))[0]
        return (missing(mean), -mean if higher else mean, name)

    names = sorted(members, key=sort_key)
    tabulated = [metric, *[m for m in metrics if m != metric and f"metrics.{m}" in frame]]
    table = _summary_table(frame, names, members, keys, group_by, tabulated)
    seeds, test, pair = _paired_test(names, values, metric, higher, alpha, drop_incomplete)

    run_ids = {name: frame.loc[members[name], "run_id"].tolist() for name in names}
    result = ComparisonResult(
        experiment=experiment, filter_string=filter_string, group_by=group_by, metric=metric,
        higher_is_better=higher, groups=names, run_ids=run_ids, values={name: values[name] for name in names},
        seeds=seeds, table=table, test=test, pair=pair, alpha=alpha,
    )
    client = MlflowClient(tracking_uri=tracking_uri)
    result.files = _write_files(result, Path(out_dir), client, curve_metric, seed_tag)
    if log_to_mlflow:
        result.run_id = log_comparison_run(client, tracking_uri, result, seed_tag)
    return result


def _checked_group_by(group_by: Sequence[str], alpha: float) -> tuple[str, ...]:
    """The tags as a tuple, after refusing no tags or an ``alpha`` outside (0, 1)."""
    group_by = tuple(group_by)
    if not group_by:
        raise ValueError("group_by is empty; expected tags such as ['evoprune.algorithm']")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} is outside (0, 1)")
    return group_by


def _values_by_group(frame: "pandas.DataFrame", members: dict[str, list[int]], metric_col: str,
                     seed_col: str) -> dict[str, dict[Hashable, float]]:
    """Group name -> (seed -> metric value) over the runs that logged it; two runs of one seed are refused."""
    values: dict[str, dict[Hashable, float]] = {}
    for name, rows in members.items():
        per_seed: dict[Hashable, float] = {}
        for index in rows:
            seed = seed_value(frame.at[index, seed_col])
            value = frame.at[index, metric_col]
            if missing(value):
                continue
            if seed in per_seed:
                raise ValueError(
                    f"group {name!r} has several runs with seed {seed!r}; add a tag to group_by or narrow the filter"
                )
            per_seed[seed] = float(value)
        values[name] = per_seed
    return values


def _summary_table(frame: "pandas.DataFrame", names: Sequence[str], members: dict[str, list[int]],
                   keys: dict[str, tuple[str, ...]], group_by: tuple[str, ...],
                   tabulated: Sequence[str]) -> "pandas.DataFrame":
    """One row per group: its tags, ``n_runs`` and ``<m>_mean``, ``<m>_std``, ``<m>_n`` per metric."""
    import pandas as pd

    rows = []
    for name in names:
        row: dict[str, object] = {"group": name}
        row.update(dict(zip(group_by, keys[name])))
        row["n_runs"] = len(members[name])
        for m in tabulated:
            mean, std, n = mean_std(frame.loc[members[name], f"metrics.{m}"].tolist())
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_n": n})
        rows.append(row)
    return pd.DataFrame(rows)


def _paired_test(names: Sequence[str], values: dict[str, dict[Hashable, float]], metric: str, higher: bool,
                 alpha: float, drop_incomplete: bool,
                 ) -> tuple[list[Hashable], WilcoxonResult | FriedmanResult | None, tuple[str, str] | None]:
    """The paired seeds, the test (Wilcoxon for two groups, Friedman for more, None for one) and the pair."""
    test: WilcoxonResult | FriedmanResult | None = None
    pair = None
    seeds: list[Hashable] = sorted({s for v in values.values() for s in v}, key=seed_order)
    if len(names) >= 2:
        try:
            seeds, aligned = align_by_seed({n: values[n] for n in names}, drop_incomplete=drop_incomplete)
        except ValueError as error:
            raise ValueError(f"metric {metric!r}: {error}") from None
        if len(names) == 2:
            pair = (names[0], names[1])
            test = wilcoxon_paired(aligned[names[0]], aligned[names[1]], higher_is_better=higher)
        else:
            test = friedman({n: aligned[n] for n in names}, higher_is_better=higher, alpha=alpha)
    return seeds, test, pair


def _write_files(result: ComparisonResult, out: Path, client: "MlflowClient", curve_metric: str,
                 seed_tag: str) -> dict[str, Path]:
    """Writes the comparison's files under ``out`` and returns output name -> path.

    The files: ``comparison.csv``, ``values.csv``, ``pairwise.csv`` and ``cd_diagram.png``
    (three or more groups), ``convergence.png`` (when a run logged the curve metric) and
    ``comparison.md``.
    """
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    test, names, metric = result.test, result.groups, result.metric
    result.table.to_csv(out / "comparison.csv", index=False)
    files["csv"] = out / "comparison.csv"
    per_seed = pd.DataFrame({name: pd.Series(result.values[name], dtype=float) for name in names})
    per_seed = per_seed.loc[sorted(per_seed.index, key=seed_order)]
    per_seed.index.name = seed_tag
    per_seed.to_csv(out / "values.csv")
    files["values"] = out / "values.csv"
    if isinstance(test, FriedmanResult):
        pd.DataFrame([vars(p) for p in test.pairwise]).to_csv(out / "pairwise.csv", index=False)
        files["pairwise"] = out / "pairwise.csv"
        files["cd_diagram"] = critical_difference_diagram(
            test.average_ranks,
            test.critical_difference,
            out / "cd_diagram.png",
            title=f"{metric}: average ranks over {test.n} seeds (Nemenyi, alpha={result.alpha})",
        )
    curve = convergence_plot(
        client,
        result.run_ids,
        curve_metric,
        out / "convergence.png",
        f"{curve_metric} per generation, by {', '.join(result.group_by)}",
    )
    if curve is not None:
        files["convergence"] = curve
    result.files = files
    (out / "comparison.md").write_text(format_markdown(result), encoding="utf-8")
    files["markdown"] = out / "comparison.md"
    return files


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``evoprune compare`` options to ``parser`` (for a CLI sub-command).

    Options: ``--experiment`` (required), ``--group-by tag1,tag2`` (required),
    ``--filter``, ``--metric`` (default ``test_accuracy_mean``), ``--higher-is-better``
    / ``--lower-is-better``, ``--metrics m1,m2``, ``--curve-metric`` (default ``best``),
    ``--seed-tag``, ``--alpha``, ``--drop-incomplete``, ``--all-statuses``, ``--out``
    (default ``comparisons/<experiment>``), ``--tracking-uri`` (default
    ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``), ``--no-log``,
    ``--axis key`` (a numeric grid axis: `evoprune_tf.studies.compare_axis`) and
    ``--fronts g1,g2`` (with ``--axis``: fronts against sweeps).

    Args:
        parser: The parser (or sub-parser) to extend.

    Returns:
        The same parser.
    """
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument(
        "--group-by",
        required=True,
        help="comma-separated tags defining groups, e.g. evoprune.algorithm,evoprune.encoding",
    )
    parser.add_argument("--filter", default="", help="MLflow filter string, e.g. \"tags.`evoprune.dataset` = 'rps'\"")
    parser.add_argument("--metric", default="test_accuracy_mean", help="final metric to test on")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--higher-is-better", dest="higher_is_better", action="store_true", default=None)
    direction.add_argument("--lower-is-better", dest="higher_is_better", action="store_false")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics to tabulate")
    parser.add_argument("--curve-metric", default="best", help="per-generation metric for the convergence plot")
    parser.add_argument("--seed-tag", default=SEED_TAG, help="tag pairing runs across groups")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument("--drop-incomplete", action="store_true", help="test on the seeds all groups share")
    parser.add_argument("--all-statuses", action="store_true", help="keep runs that did not finish")
    parser.add_argument("--out", default=None, help="output folder (default comparisons/<experiment>)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    parser.add_argument("--no-log", action="store_true", help="do not log a comparison run")
    parser.add_argument("--axis", default=None,
                        help="numeric grid axis, e.g. encoding.active: the metric against it (table, plot with "
                             "± std bands) and the paired tests per value")
    parser.add_argument("--fronts", default="",
                        help="with --axis: comma-separated groups of multi-objective runs (e.g. nsga2) whose test "
                             "fronts are compared, by test hypervolume paired over seeds, with the fronts the other "
                             "groups trace across the axis")
    return parser


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def run_compare(args: argparse.Namespace) -> ComparisonResult | AxisComparison:
    """Run `compare` (or `compare_over_axis` with ``--axis``) from parsed options and print the markdown.

    Args:
        args: Parsed arguments (`add_compare_arguments`).

    Returns:
        The comparison result.
    """
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns/mlflow.db"
    out = args.out or str(Path("comparisons") / args.experiment.replace(os.sep, "_"))
    common = dict(
        group_by=_split(args.group_by), out_dir=out, filter_string=args.filter, metric=args.metric,
        higher_is_better=args.higher_is_better, seed_tag=args.seed_tag,
        statuses=None if args.all_statuses else ("FINISHED",), alpha=args.alpha,
        drop_incomplete=args.drop_incomplete, log_to_mlflow=not args.no_log,
    )
    fronts = _split(getattr(args, "fronts", "") or "")
    axis = getattr(args, "axis", None)
    if fronts and not axis:
        raise ValueError(f"--fronts {','.join(fronts)} needs --axis; expected the axis the other groups sweep "
                         "(e.g. --axis encoding.active)")
    if axis:
        result = compare_over_axis(tracking_uri, args.experiment, axis=axis, fronts=fronts, **common)
        print(format_axis_markdown(result))
    else:
        result = compare(tracking_uri, args.experiment, metrics=_split(args.metrics), curve_metric=args.curve_metric,
                         **common)
        print(format_markdown(result))
    logged = f"; comparison run {result.run_id} in experiment {comparisons_experiment(result.experiment)!r}"
    print(f"Saved to {out}" + (logged if result.run_id else ""))
    return result


def compare_main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``evoprune compare``: parse ``argv``, compare, print.

    Args:
        argv: Command-line arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 on a bad selection or input (the error is printed on one line).
    """
    import sys

    parser = argparse.ArgumentParser(prog="evoprune compare", description=__doc__.splitlines()[0])
    add_compare_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_compare(args)
    except ValueError as error:
        print(f"evoprune compare: error: {error}", file=sys.stderr)
        return 2
    return 0
