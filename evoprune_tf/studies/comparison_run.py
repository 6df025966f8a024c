"""What a comparison leaves behind besides its tables: the convergence plot and the comparison run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from evoprune_tf.studies.comparison import ComparisonResult
from evoprune_tf.studies.runs import COMPARISON_KIND, KIND_TAG, missing
from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["convergence_plot", "log_comparison_run"]


def convergence_plot(
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


def log_comparison_run(
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
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if not missing(v)],
            params=[Param(k, v) for k, v in params.items()],
        )
        for path in result.files.values():
            client.log_artifact(run_id, str(path), "comparison")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
