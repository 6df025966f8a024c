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
* a comparison run in the same experiment (tag ``evoprune.kind = comparison``) holding
  all of the above as artifacts. Comparison runs are never read back as study runs.

Runs are read through `mlflow.MlflowClient` with an explicit tracking URI rather than the
fluent `mlflow.search_runs`, which only reads the process-wide URI: setting that would
change ``MLFLOW_TRACKING_URI`` for the whole process (and any child process). The rows
are laid out as `mlflow.search_runs(output_format="pandas")` lays them out
(``run_id``, ``status``, ``metrics.<name>``, ``tags.<name>``...).

CLI: `compare_main` parses ``--experiment``, ``--filter``, ``--group-by tag1,tag2``,
``--metric``, ``--out``, ``--tracking-uri`` and more (see `add_compare_arguments`).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Mapping, Sequence

import numpy as np

from evoprune_tf.tracking.owner import reap_if_dead
from evoprune_tf.report.text import plural
from evoprune_tf.studies.stats import (
    FriedmanResult,
    WilcoxonResult,
    align_by_seed,
    critical_difference_diagram,
    friedman,
    wilcoxon_paired,
)

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

SEED_TAG = "evoprune.seed"
KIND_TAG = "evoprune.kind"
COMPARISON_KIND = "comparison"

#: Final metrics tabulated by default; those no selected run has are left out.
DEFAULT_METRICS: tuple[str, ...] = (
    "test_accuracy_mean",
    "active_percent",
    "active_fraction",
    "params",
    "flops",
    "hypervolume",
    "wall_seconds",
)

# Which way is better for the metrics the runs log; anything else must be told.
_KNOWN_DIRECTIONS: dict[str, bool] = {
    "test_accuracy_mean": True,
    "test_accuracy": True,
    "val_accuracy": True,
    "accuracy": True,
    "hypervolume": True,
    "auroc": True,
    "active_percent": False,
    "active_fraction": False,
    "params": False,
    "flops": False,
    "macs": False,
    "wall_seconds": False,
    "loss": False,
    "test_loss": False,
}

_UNSET = "(unset)"


@dataclass
class ComparisonResult:
    """What `compare` found.

    Attributes:
        experiment: Experiment name.
        filter_string: The MLflow filter the runs were selected with.
        group_by: Tags that define the groups.
        metric: The metric the tests ran on.
        higher_is_better: Its direction.
        groups: Group names, best mean on ``metric`` first.
        run_ids: Group name -> ids of its selected runs.
        values: Group name -> (seed -> ``metric``) over the runs that logged it.
        seeds: The seeds every group has (the pairs of the tests).
        table: One row per group (order of ``groups``): the group tags, ``n_runs``, and
            ``<m>_mean``, ``<m>_std``, ``<m>_n`` per tabulated metric.
        test: Wilcoxon (2 groups) or Friedman (>= 3 groups) result; None for 1 group.
        pair: For 2 groups, the ``(a, b)`` order of the Wilcoxon test (``a`` = best mean).
        files: Output name (``markdown``, ``csv``, ``values``, ``pairwise``,
            ``cd_diagram``, ``convergence``) -> path written.
        run_id: Id of the logged comparison run, or None.
        alpha: Significance level.
    """

    experiment: str
    filter_string: str
    group_by: tuple[str, ...]
    metric: str
    higher_is_better: bool
    groups: list[str]
    run_ids: dict[str, list[str]]
    values: dict[str, dict[Hashable, float]]
    seeds: list[Hashable]
    table: "pandas.DataFrame"
    test: WilcoxonResult | FriedmanResult | None
    pair: tuple[str, str] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    run_id: str | None = None
    alpha: float = 0.05


def metric_direction(metric: str, higher_is_better: bool | None = None) -> bool:
    """Whether higher values of ``metric`` are better.

    Args:
        metric: Metric name.
        higher_is_better: An explicit answer, returned as is when given.

    Returns:
        True for higher-is-better metrics (accuracy, hypervolume), False for
        lower-is-better ones (active share, params, FLOPs, wall time, loss).

    Raises:
        ValueError: For a metric of unknown direction when none is given.
    """
    if higher_is_better is not None:
        return bool(higher_is_better)
    if metric in _KNOWN_DIRECTIONS:
        return _KNOWN_DIRECTIONS[metric]
    raise ValueError(
        f"metric {metric!r} has no known direction; pass higher_is_better=True or False "
        "(--higher-is-better / --lower-is-better)"
    )


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


def _seed_value(text: object) -> Hashable:
    """A seed tag as an int where it is one (so seeds sort 2 < 10), else as text."""
    try:
        return int(str(text))
    except ValueError:
        return str(text)


def _seed_order(seed: Hashable) -> tuple[bool, int | str]:
    """Sort key putting integer seeds first, in numeric order."""
    return (not isinstance(seed, int), seed if isinstance(seed, int) else str(seed))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; nan for one value) and count of the finite values."""
    array = np.asarray([v for v in values if not _missing(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan, 0
    std = float(np.std(array, ddof=1)) if array.size > 1 else math.nan
    return float(np.mean(array)), std, int(array.size)


def _format_number(value: float) -> str:
    if _missing(value):
        return ""
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def _format_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-4 else f"{p:.4f}"


def _p_verdict(p: float, alpha: float) -> str:
    """``p = 0.0312 (significant at alpha = 0.05)``: a test's p-value and what it means at ``alpha``."""
    verdict = "significant" if p < alpha else "not significant"
    return f"p = {_format_p(p)} ({verdict} at alpha = {alpha})"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def format_markdown(result: ComparisonResult) -> str:
    """The comparison as readable markdown: selection, table, tests with p-values.

    Args:
        result: What `compare` returned.

    Returns:
        Markdown text (also what `compare` saves as ``comparison.md``).
    """
    direction = "higher is better" if result.higher_is_better else "lower is better"
    parts = [
        f"# Comparison: {result.metric} ({direction}) by {', '.join(result.group_by)}",
        "",
        f"Experiment `{result.experiment}`, filter `{result.filter_string or '(none)'}`, "
        f"{plural(sum(len(ids) for ids in result.run_ids.values()), 'run')} in "
        f"{plural(len(result.groups), 'group')}, {plural(len(result.seeds), 'paired seed')}: {result.seeds}.",
        "",
    ]
    metrics = [c[: -len("_mean")] for c in result.table.columns if c.endswith("_mean")]
    header = ["group", "runs", *[f"{m} (mean ± std, n)" for m in metrics]]
    rows = []
    for _, row in result.table.iterrows():
        cells = [str(row["group"]), str(int(row["n_runs"]))]
        for m in metrics:
            mean, std, n = row[f"{m}_mean"], row[f"{m}_std"], int(row[f"{m}_n"])
            if n == 0:
                cells.append("")
            elif _missing(std):
                cells.append(f"{_format_number(mean)} (n={n})")
            else:
                cells.append(f"{_format_number(mean)} ± {_format_number(std)} (n={n})")
        rows.append(cells)
    parts += [_markdown_table(header, rows), ""]

    test = result.test
    if test is None:
        parts.append("Only one group: no test.")
    elif isinstance(test, WilcoxonResult):
        a, b = result.pair or result.groups[:2]
        parts += [
            f"## Wilcoxon signed-rank, paired over {plural(test.n, 'seed')} "
            f"({plural(test.n_nonzero, 'nonzero difference')})",
            "",
            f"- `{a}` vs `{b}`: W = {test.statistic:.4g}, {_p_verdict(test.p_value, result.alpha)}",
            f"- median difference ({a} − {b}): {_format_number(test.median_difference)}",
            f"- {a} better on {test.win_fraction:.0%} of the paired seeds (ties count half)",
            f"- Vargha-Delaney A (P[{a} better than {b}]): {test.a12:.3f} ({test.magnitude})",
        ]
    else:
        parts += [
            f"## Friedman test, {test.k} groups paired over {plural(test.n, 'seed')}",
            "",
            f"chi² = {test.statistic:.4g}, {_p_verdict(test.p_value, test.alpha)}; "
            f"Nemenyi critical difference = {test.critical_difference:.3f}",
            "",
            _markdown_table(
                ["rank", "group", "average rank"],
                [[str(i + 1), name, f"{r:.3f}"] for i, (name, r) in enumerate(test.average_ranks.items())],
            ),
            "",
            "### Post-hoc pairs (Wilcoxon with Holm correction; Nemenyi on ranks)",
            "",
            _markdown_table(
                ["a", "b", "rank diff", "Wilcoxon p", "Holm p", "Nemenyi p", "A(a better)", "effect", "significant"],
                [
                    [
                        p.a, p.b, f"{p.rank_difference:.3f}", _format_p(p.wilcoxon_p), _format_p(p.holm_p),
                        _format_p(p.nemenyi_p), f"{p.a12:.3f}", p.magnitude, "yes" if p.significant else "no",
                    ]
                    for p in test.pairwise
                ],
            ),
        ]
        if test.p_value >= test.alpha:
            parts += ["", "The Friedman test is not significant: read the post-hoc pairs as exploratory."]
    return "\n".join(parts) + "\n"


def _group_runs(
    frame: "pandas.DataFrame", group_by: Sequence[str]
) -> tuple[dict[str, list[int]], dict[str, tuple[str, ...]]]:
    """Row indices per group name and each group's tag values."""
    members: dict[str, list[int]] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for index, row in frame.iterrows():
        key = tuple(
            _UNSET if _missing(row.get(f"tags.{tag}")) else str(row.get(f"tags.{tag}")) for tag in group_by
        )
        name = "/".join(key)
        members.setdefault(name, []).append(index)
        keys[name] = key
    return members, keys


def _convergence_plot(
    client: "MlflowClient",
    run_ids: Mapping[str, Sequence[str]],
    curve_metric: str,
    path: Path,
    title: str,
) -> Path | None:
    """Mean ± std of a per-generation metric per group; None when no run logged it."""
    from matplotlib.figure import Figure

    curves = {}
    for name, ids in run_ids.items():
        by_step: dict[int, list[float]] = {}
        for run_id in ids:
            for point in client.get_metric_history(run_id, curve_metric):
                by_step.setdefault(int(point.step), []).append(float(point.value))
        if by_step:
            steps = np.asarray(sorted(by_step))
            mean = np.asarray([np.mean(by_step[s]) for s in steps])
            std = np.asarray([np.std(by_step[s], ddof=1) if len(by_step[s]) > 1 else 0.0 for s in steps])
            curves[name] = (steps, mean, std)
    if not curves:
        return None
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    for name, (steps, mean, std) in curves.items():
        (line,) = ax.plot(steps, mean, lw=1.8, label=f"{name} (n={len(run_ids[name])})")
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("generation")
    ax.set_ylabel(f"{curve_metric} (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _log_comparison_run(
    client: "MlflowClient", experiment_id: str, result: ComparisonResult, seed_tag: str
) -> str:
    """A FINISHED run tagged ``evoprune.kind = comparison`` holding the outputs."""
    from mlflow.entities import Metric, Param

    by = ",".join(result.group_by)
    run = client.create_run(
        experiment_id,
        run_name=f"compare {result.metric} by {by}",
        tags={
            KIND_TAG: COMPARISON_KIND,
            "evoprune.compare.group_by": by,
            "evoprune.compare.metric": result.metric,
            # Tags, not params: not write-once and longer; cut well below MLflow's 8000-char limit.
            "evoprune.compare.filter": result.filter_string[:4000],
            "evoprune.compare.groups": ",".join(result.groups)[:4000],
        },
    )
    run_id = run.info.run_id
    try:
        metrics = {"n_groups": len(result.groups), "n_seeds": len(result.seeds)}
        test = result.test
        if test is not None:
            metrics.update({"statistic": test.statistic, "p_value": test.p_value})
        if isinstance(test, WilcoxonResult):
            metrics.update(
                {"a12": test.a12, "median_difference": test.median_difference, "win_fraction": test.win_fraction}
            )
        elif isinstance(test, FriedmanResult):
            metrics["critical_difference"] = test.critical_difference
        params = {
            "metric": result.metric,
            "group_by": by,
            "higher_is_better": str(result.higher_is_better),
            "alpha": str(result.alpha),
            "seed_tag": seed_tag,
        }
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if not _missing(v)],
            params=[Param(k, v) for k, v in params.items()],
        )
        for path in result.files.values():
            client.log_artifact(run_id, str(path), "comparison")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


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
        log_to_mlflow: Log a comparison run with the outputs as artifacts.

    Returns:
        The table, the test, the paths written and the comparison run id.

    Raises:
        ValueError: On an empty selection (naming experiment and filter), a run without
            a seed tag, two runs of one group with the same seed, a metric no run logged,
            or groups with different seeds (naming the missing seeds per group).
    """
    import pandas as pd
    from mlflow import MlflowClient

    group_by = tuple(group_by)
    if not group_by:
        raise ValueError("group_by is empty; expected tags such as ['evoprune.algorithm']")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} is outside (0, 1)")
    higher = metric_direction(metric, higher_is_better)
    frame = read_runs(tracking_uri, experiment, filter_string=filter_string, statuses=statuses)
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

    members, keys = _group_runs(frame, group_by)
    values: dict[str, dict[Hashable, float]] = {}
    for name, rows in members.items():
        per_seed: dict[Hashable, float] = {}
        for index in rows:
            seed = _seed_value(frame.at[index, seed_col])
            value = frame.at[index, metric_col]
            if _missing(value):
                continue
            if seed in per_seed:
                raise ValueError(
                    f"group {name!r} has several runs with seed {seed!r}; add a tag to group_by or narrow the filter"
                )
            per_seed[seed] = float(value)
        values[name] = per_seed

    # Best mean first: tables and the Wilcoxon pair then read "winner vs the rest".
    def sort_key(name: str) -> tuple[bool, float, str]:
        mean = _mean_std(list(values[name].values()))[0]
        return (_missing(mean), -mean if higher else mean, name)

    names = sorted(members, key=sort_key)
    tabulated = [metric, *[m for m in metrics if m != metric and f"metrics.{m}" in frame]]
    rows = []
    for name in names:
        row: dict[str, object] = {"group": name}
        row.update(dict(zip(group_by, keys[name])))
        row["n_runs"] = len(members[name])
        for m in tabulated:
            mean, std, n = _mean_std(frame.loc[members[name], f"metrics.{m}"].tolist())
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_n": n})
        rows.append(row)
    table = pd.DataFrame(rows)

    test: WilcoxonResult | FriedmanResult | None = None
    pair = None
    seeds: list[Hashable] = sorted({s for v in values.values() for s in v}, key=_seed_order)
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

    run_ids = {name: frame.loc[members[name], "run_id"].tolist() for name in names}
    result = ComparisonResult(
        experiment=experiment,
        filter_string=filter_string,
        group_by=group_by,
        metric=metric,
        higher_is_better=higher,
        groups=names,
        run_ids=run_ids,
        values={name: values[name] for name in names},
        seeds=seeds,
        table=table,
        test=test,
        pair=pair,
        alpha=alpha,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    table.to_csv(out / "comparison.csv", index=False)
    files["csv"] = out / "comparison.csv"
    per_seed = pd.DataFrame({name: pd.Series(values[name], dtype=float) for name in names})
    per_seed = per_seed.loc[sorted(per_seed.index, key=_seed_order)]
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
            title=f"{metric}: average ranks over {test.n} seeds (Nemenyi, alpha={alpha})",
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    curve = _convergence_plot(
        client,
        run_ids,
        curve_metric,
        out / "convergence.png",
        f"{curve_metric} per generation, by {', '.join(group_by)}",
    )
    if curve is not None:
        files["convergence"] = curve
    result.files = files
    (out / "comparison.md").write_text(format_markdown(result), encoding="utf-8")
    files["markdown"] = out / "comparison.md"

    if log_to_mlflow:
        exp = client.get_experiment_by_name(experiment)
        result.run_id = _log_comparison_run(client, exp.experiment_id, result, seed_tag)
    return result


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``evoprune compare`` options to ``parser`` (for a CLI sub-command).

    Options: ``--experiment`` (required), ``--group-by tag1,tag2`` (required),
    ``--filter``, ``--metric`` (default ``test_accuracy_mean``), ``--higher-is-better``
    / ``--lower-is-better``, ``--metrics m1,m2``, ``--curve-metric`` (default ``best``),
    ``--seed-tag``, ``--alpha``, ``--drop-incomplete``, ``--all-statuses``, ``--out``
    (default ``comparisons/<experiment>``), ``--tracking-uri`` (default
    ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``), ``--no-log``.

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
    return parser


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def run_compare(args: argparse.Namespace) -> ComparisonResult:
    """Run `compare` from parsed `add_compare_arguments` options and print the markdown.

    Args:
        args: Parsed arguments.

    Returns:
        The comparison result.
    """
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns/mlflow.db"
    out = args.out or str(Path("comparisons") / args.experiment.replace(os.sep, "_"))
    result = compare(
        tracking_uri,
        args.experiment,
        group_by=_split(args.group_by),
        out_dir=out,
        filter_string=args.filter,
        metric=args.metric,
        higher_is_better=args.higher_is_better,
        metrics=_split(args.metrics),
        curve_metric=args.curve_metric,
        seed_tag=args.seed_tag,
        statuses=None if args.all_statuses else ("FINISHED",),
        alpha=args.alpha,
        drop_incomplete=args.drop_incomplete,
        log_to_mlflow=not args.no_log,
    )
    print(format_markdown(result))
    print(f"Saved to {out}" + (f"; comparison run {result.run_id}" if result.run_id else ""))
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
