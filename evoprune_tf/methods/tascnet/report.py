"""TASCNet's results table over seeds (the experiment scripts print it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from evoprune_tf.report.text import plural

__all__ = ["results_table"]


def results_table(reports: list[dict[str, Any]]) -> str:
    """A Markdown table of TASCNet reports (one row per seed, then their mean when there are several).

    Args:
        reports: outputs of `run_tascnet`.

    Returns:
        The table text.
    """
    head = ("| seed | params unpruned -> pruned | FLOPs unpruned -> pruned | conv filters | "
            "test acc unpruned | test acc pruned | drop (pts) | iterations | wall s |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]  # one per column
    keys = ("params", "flops", "conv_filters", "drop", "wall")
    sums = {k: [] for k in keys}
    for r in reports:
        u, p = r["unpruned"], r.get("pruned", r["unpruned"])
        red = r.get("reduction", {"params": 0.0, "flops": 0.0, "conv_filters": 0.0})
        drop = 100 * (u["test_accuracy"] - p["test_accuracy"])
        lines.append(
            f"| {r['seed']} | {u['params']:,} -> {p['params']:,} (-{100 * red['params']:.1f}%) | "
            f"{u['flops']:,} -> {p['flops']:,} (-{100 * red['flops']:.1f}%) | "
            f"{u['conv_filters']} -> {p['conv_filters']} (-{100 * red['conv_filters']:.1f}%) | "
            f"{u['test_accuracy']:.4f} | {p['test_accuracy']:.4f} | {drop:+.2f} | {r.get('iterations', 0)} | "
            f"{r.get('wall_seconds', 0):.0f} |"
        )
        for k, v in zip(keys, (red["params"], red["flops"], red["conv_filters"], drop, r.get("wall_seconds", 0))):
            sums[k].append(v)
    if len(reports) < 2:
        return "\n".join(lines)  # the mean of one seed is that seed's row
    mean = {k: float(np.mean(v)) if v else 0.0 for k, v in sums.items()}
    lines.append(f"| mean of {plural(len(reports), 'seed')} | -{100 * mean['params']:.1f}% | -{100 * mean['flops']:.1f}% | "
                 f"-{100 * mean['conv_filters']:.1f}% | | | {mean['drop']:+.2f} | | {mean['wall']:.0f} |")
    return "\n".join(lines)
