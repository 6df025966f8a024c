"""What a comparison leaves behind besides its tables: the comparison run (the plot: `convergence`)."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from evoprune_tf.studies.axis import AxisComparison
from evoprune_tf.studies.comparison import ComparisonResult
from evoprune_tf.studies.runs import COMPARISON_KIND, KIND_TAG, missing
from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult
from evoprune_tf.tracking.experiments import comparisons_experiment, ensure_experiment

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["COMPARED_EXPERIMENT_TAG", "COMPARISONS_TAG", "log_axis_comparison_run", "log_comparison_run"]

#: Tag of a comparison run: the study experiment it compares.
COMPARED_EXPERIMENT_TAG = "evoprune.compare.experiment"
#: Tag of a study experiment: the experiment its comparison runs go to.
COMPARISONS_TAG = "evoprune.comparisons"


def log_comparison_run(client: "MlflowClient", uri: str, result: ComparisonResult, seed_tag: str) -> str:
    """A FINISHED run tagged ``evoprune.kind = comparison`` holding the outputs.

    It goes to the experiment ``<study>-comparisons``, not to the study's: its statistics
    (``p_value``, ``critical_difference``...) would otherwise join the runs' metric charts.
    The study experiment gets the tag ``evoprune.comparisons`` naming where they are.
    """
    by = ",".join(result.group_by)
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
    return _log_run(client, uri, result.experiment, f"compare-{result.metric}-by-{by}", {
        "evoprune.compare.group_by": by,
        "evoprune.compare.metric": result.metric,
        # Tags, not params: not write-once and longer; cut well below MLflow's 8000-char limit.
        "evoprune.compare.filter": result.filter_string[:4000],
        "evoprune.compare.groups": ",".join(result.groups)[:4000],
    }, metrics, params, result.files.values())


def log_axis_comparison_run(client: "MlflowClient", uri: str, result: AxisComparison, seed_tag: str) -> str:
    """The comparison run of a comparison along an axis (``--axis``), like `log_comparison_run`.

    Its metrics: ``n_groups``, ``n_values``, ``p_value_at_<value>`` (the paired test at
    each axis value), and with ``--fronts`` ``hypervolume_mean_<group>`` and
    ``hypervolume_holm_p_<front>_vs_<sweep>`` / ``hypervolume_a12_<front>_vs_<sweep>``.
    """
    by = ",".join(result.group_by)
    metrics: dict[str, float] = {"n_groups": len(result.groups), "n_values": len(result.points)}
    for point in result.points:
        if point.test is not None:
            metrics[f"p_value_at_{point.value:g}"] = point.test.p_value
    fronts = result.fronts
    if fronts is not None:
        for name, hv in fronts.hypervolumes.items():
            metrics[f"hypervolume_mean_{name}"] = sum(hv.values()) / len(hv) if hv else math.nan
        for pair in fronts.pairs:
            metrics[f"hypervolume_holm_p_{pair.front}_vs_{pair.sweep}"] = pair.holm_p
            metrics[f"hypervolume_a12_{pair.front}_vs_{pair.sweep}"] = pair.test.a12
    params = {"metric": result.metric, "axis": result.axis, "group_by": by,
              "higher_is_better": str(result.higher_is_better), "alpha": str(result.alpha), "seed_tag": seed_tag}
    tags = {
        "evoprune.compare.group_by": by,
        "evoprune.compare.metric": result.metric,
        "evoprune.compare.axis": result.axis,
        "evoprune.compare.filter": result.filter_string[:4000],
        "evoprune.compare.groups": ",".join(result.groups)[:4000],
    }
    if fronts is not None:
        tags["evoprune.compare.fronts"] = ",".join(fronts.front_groups)[:4000]
    return _log_run(client, uri, result.experiment, f"compare-{result.metric}-along-{result.axis}-by-{by}", tags,
                    metrics, params, result.files.values())


def _metric_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in a metric key replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)[:250]


def _log_run(client: "MlflowClient", uri: str, experiment: str, run_name: str, tags: dict[str, str],
             metrics: dict[str, float], params: dict[str, str], files: Iterable[Path]) -> str:
    """Create the comparison run in ``<experiment>-comparisons``, log everything, finish it; returns its id."""
    from mlflow.entities import Metric, Param

    study = client.get_experiment_by_name(experiment)
    target = comparisons_experiment(experiment)
    client.set_experiment_tag(study.experiment_id, COMPARISONS_TAG, target)
    run = client.create_run(
        ensure_experiment(client, target, uri),
        run_name=run_name[:100],
        tags={KIND_TAG: COMPARISON_KIND, COMPARED_EXPERIMENT_TAG: experiment, **tags},
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(_metric_key(k), float(v), now, 0) for k, v in metrics.items() if not missing(v)],
            params=[Param(k, v) for k, v in params.items()],
        )
        for path in files:
            client.log_artifact(run_id, str(path), "comparison")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
