"""The printed summary of a multi-objective report (`format_pareto_report`)."""

from __future__ import annotations

from pathlib import Path

from evoprune_tf.report.text import count, mean_std, plural
from evoprune_tf.report.trade_offs import TRADE_OFFS

__all__ = ["format_pareto_report"]


#: Rows of the member table printed by `format_pareto_report` (the CSV has them all).
_TABLE_ROWS = 25


def format_pareto_report(report: dict) -> str:
    """A short human-readable summary of `pareto_report`'s dict.

    With one retrain seed the values are printed without ``± std``; counts are printed
    as integers where they are integral (`evoprune_tf.report.text`).

    Args:
        report: `pareto_report`'s dict.

    Returns:
        The summary, several lines.
    """
    names = report["objectives"]
    seeds = int(report["retrain"]["seeds"])
    acc_title = "test_acc ± std" if seeds != 1 else "test_acc"
    lines = [
        f"Pareto front: {plural(report['n_members'], 'member')} over {', '.join(names)}; "
        f"hypervolume {report['hypervolume']:.4f} (validation)"
        + (f", {report['hypervolume_test']:.4f} (test)" if report.get("hypervolume_test") is not None else "")
        + f"; retrained with {plural(seeds, 'seed')}",
        "  #   " + "  ".join(f"{n[:10]:>10}" for n in names) + f"   active%   {acc_title:<15}  test_AUROC  model",
    ]
    for r in report["members"][:_TABLE_ROWS]:
        acc = mean_std(r["test_accuracy"], r["test_accuracy_std"], seeds)
        lines.append(
            f"  {r['index']:<3} " + "  ".join(f"{r['search'][n]:>10.4f}" for n in names)
            + f"   {r['active_percent']:6.2f}   {acc:<15}  {mean_std(r['test_auroc'], None, 1):>10}  {r['trade_off']}"
        )
    if report["n_members"] > _TABLE_ROWS:
        lines.append(f"  ... {report['n_members'] - _TABLE_ROWS} more in pareto/pareto_front.csv")
    ens = report.get("ensembles")
    if ens:
        over = "1 seed" if ens["seeds"] == 1 else f"mean of {plural(ens['seeds'], 'seed')}"
        lines.append(f"Ensembles (soft vote, test, {over}; AUROC at T={ens['temperature']:g}):")
        for kind, label in (("best_single", "best single (val)"), ("all", "all members"),
                            ("banded", f"within {ens['band']:g} of best")):
            e = ens[kind]
            lines.append(
                f"  {label:<20} n={count(e['n_members']):<5} "
                f"accuracy {mean_std(e['accuracy'], e['accuracy_std'], ens['seeds'])}"
                f"   AUROC {mean_std(e['auroc'], None, 1)}"
            )
    t = report["trade_offs"]
    lines.append(
        "Trade-off models: " + "; ".join(
            f"{n} #{t[n]['member']} ({t[n]['active_percent']:.1f}% active, "
            f"test acc {mean_std(t[n]['test_accuracy'], None, 1)})"
            for n in TRADE_OFFS
        )
    )
    ex = report.get("explanations")
    if ex and ex.get("files"):
        lines.append(f"Explanations: {plural(len(ex['files']), 'file')} in {Path(ex['files'][0]).parent}")
    lines.append(f"Report files in {report['local_dir']}")
    return "\n".join(lines)
