"""A comparison along an axis as markdown: the curve's table, the tests per value, the fronts."""

from __future__ import annotations

from evoprune_tf.report.text import plural
from evoprune_tf.studies.axis import AxisComparison, AxisPoint
from evoprune_tf.studies.fronts import FrontComparison
from evoprune_tf.studies.markdown import format_number, format_p, markdown_table
from evoprune_tf.studies.runs import missing
from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult

__all__ = ["format_axis_markdown"]


def _cell(mean: float, std: float, n: int) -> str:
    if n == 0:
        return ""
    if missing(std):
        return f"{format_number(mean)} (n={n})"
    return f"{format_number(mean)} ± {format_number(std)} (n={n})"


def _test_cells(point: AxisPoint, alpha: float) -> list[str]:
    test = point.test
    if test is None:
        return ["", ""]
    name = "Wilcoxon" if isinstance(test, WilcoxonResult) else "Friedman"
    return [f"{name} ({plural(test.n, 'seed')})", format_p(test.p_value) + (" *" if test.p_value < alpha else "")]


def _curve_table(result: AxisComparison) -> str:
    table = result.table.set_index([result.axis, "group"])
    m = result.metric
    rows = []
    for point in result.points:
        cells = [f"{point.value:g}"]
        for name in result.groups:
            key = (point.value, name)
            cells.append(_cell(*(table.loc[key, f"{m}_{s}"] for s in ("mean", "std", "n"))) if key in table.index else "")
        rows.append(cells + _test_cells(point, result.alpha))
    return markdown_table([result.axis, *result.groups, "test", "p"], rows)


def _point_section(point: AxisPoint, axis: str, alpha: float) -> list[str]:
    test = point.test
    if isinstance(test, WilcoxonResult):
        a, b = point.pair
        return [f"### {axis} = {point.value:g}: Wilcoxon, {plural(test.n, 'paired seed')}", "",
                f"- `{a}` vs `{b}`: p = {format_p(test.p_value)}, median difference "
                f"{format_number(test.median_difference)}, A({a} better) = {test.a12:.3f} ({test.magnitude})", ""]
    if not isinstance(test, FriedmanResult):
        return []
    rows = [[p.a, p.b, format_p(p.wilcoxon_p), format_p(p.holm_p), f"{p.a12:.3f}", p.magnitude,
             "yes" if p.significant else "no"] for p in test.pairwise]
    ranks = ", ".join(f"{n} {r:.2f}" for n, r in test.average_ranks.items())
    return [f"### {axis} = {point.value:g}: Friedman chi² = {test.statistic:.4g}, p = {format_p(test.p_value)}, "
            f"{plural(test.n, 'paired seed')}", "", f"Average ranks (1 = best): {ranks}.", "",
            markdown_table(["a", "b", "Wilcoxon p", "Holm p", "A(a better)", "effect", "significant"], rows), ""]


def _fronts_section(fronts: FrontComparison) -> list[str]:
    groups = [*fronts.front_groups, *fronts.sweep_groups]
    rows = []
    for name in groups:
        hv = list(fronts.hypervolumes[name].values())
        cell = _cell(sum(hv) / len(hv), _std(hv), len(hv)) if hv else ""
        kind = "front" if name in fronts.front_groups else "sweep"
        rows.append([name, kind, cell])
    pairs = [[p.front, p.sweep, plural(p.test.n, "seed"), format_number(p.test.median_difference),
              format_p(p.test.p_value), format_p(p.holm_p), f"{p.test.a12:.3f}", p.test.magnitude,
              "yes" if p.holm_p < fronts.alpha else "no"] for p in fronts.pairs]
    return [
        "## Fronts against sweeps: test hypervolume",
        "",
        "Hypervolume of (test accuracy, active fraction), reference point test accuracy -0.1, "
        "active fraction 1.1 (`evoprune_tf.search.pareto.hypervolume`, bounds [0, 1]; at most 1.21).",
        "",
        markdown_table(["group", "kind", "hypervolume (mean ± std, n)"], rows),
        "",
        markdown_table(["front", "sweep", "paired", "median difference", "Wilcoxon p", "Holm p",
                         "A(front better)", "effect", "significant"], pairs),
    ]


def _std(values: list[float]) -> float:
    import numpy as np

    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def format_axis_markdown(result: AxisComparison) -> str:
    """The comparison along an axis as readable markdown.

    Args:
        result: What `evoprune_tf.studies.compare_axis.compare_over_axis` returned.

    Returns:
        Markdown text (also saved as ``comparison.md``).
    """
    direction = "higher is better" if result.higher_is_better else "lower is better"
    n_runs = sum(len(ids) for ids in result.run_ids.values())
    parts = [
        f"# Comparison: {result.metric} ({direction}) against {result.axis}, by {', '.join(result.group_by)}",
        "",
        f"Experiment `{result.experiment}`, filter `{result.filter_string or '(none)'}`, "
        f"{plural(n_runs, 'run')} in {plural(len(result.groups), 'group')} over "
        f"{plural(len(result.points), 'value')} of `{result.axis}`; mean ± std (sample, over seeds) per cell, "
        f"paired tests per value (* p < {result.alpha}; not corrected across values).",
        "",
    ]
    if result.left_out:
        left = ", ".join(f"{name} ({plural(n, 'run')})" for name, n in result.left_out.items())
        parts += [f"Not on the curve (no `{result.axis}` grid tag): {left}.", ""]
    parts += [_curve_table(result), ""]
    for point in result.points:
        parts += _point_section(point, result.axis, result.alpha)
    if result.fronts is not None:
        parts += _fronts_section(result.fronts)
    return "\n".join(parts).rstrip("\n") + "\n"
