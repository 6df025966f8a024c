"""A comparison as readable markdown: the selection, the table, the tests with their p-values."""

from __future__ import annotations

from typing import Sequence

from evoprune_tf.report.text import plural
from evoprune_tf.studies.comparison import ComparisonResult
from evoprune_tf.studies.runs import missing
from evoprune_tf.studies.stats import WilcoxonResult

__all__ = ["format_markdown", "format_number", "format_p", "markdown_table"]


def format_number(value: float) -> str:
    if missing(value):
        return ""
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def format_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-4 else f"{p:.4f}"


def _p_verdict(p: float, alpha: float) -> str:
    """``p = 0.0312 (significant at alpha = 0.05)``: a test's p-value and what it means at ``alpha``."""
    verdict = "significant" if p < alpha else "not significant"
    return f"p = {format_p(p)} ({verdict} at alpha = {alpha})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
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
            elif missing(std):
                cells.append(f"{format_number(mean)} (n={n})")
            else:
                cells.append(f"{format_number(mean)} ± {format_number(std)} (n={n})")
        rows.append(cells)
    parts += [markdown_table(header, rows), ""]

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
            f"- median difference ({a} − {b}): {format_number(test.median_difference)}",
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
            markdown_table(
                ["rank", "group", "average rank"],
                [[str(i + 1), name, f"{r:.3f}"] for i, (name, r) in enumerate(test.average_ranks.items())],
            ),
            "",
            "### Post-hoc pairs (Wilcoxon with Holm correction; Nemenyi on ranks)",
            "",
            markdown_table(
                ["a", "b", "rank diff", "Wilcoxon p", "Holm p", "Nemenyi p", "A(a better)", "effect", "significant"],
                [
                    [
                        p.a, p.b, f"{p.rank_difference:.3f}", format_p(p.wilcoxon_p), format_p(p.holm_p),
                        format_p(p.nemenyi_p), f"{p.a12:.3f}", p.magnitude, "yes" if p.significant else "no",
                    ]
                    for p in test.pairwise
                ],
            ),
        ]
        if test.p_value >= test.alpha:
            parts += ["", "The Friedman test is not significant: read the post-hoc pairs as exploratory."]
    return "\n".join(parts) + "\n"
