"""What a comparison leaves behind besides its tables: the comparison run (the plot: `convergence`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from evoprune_tf.studies.comparison import ComparisonResult
from evoprune_tf.studies.runs import COMPARISON_KIND, KIND_TAG, missing
from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult
from evoprune_tf.tracking.experiments import comparisons_experiment, ensure_experiment

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["COMPARED_EXPERIMENT_TAG", "COMPARISONS_TAG", "log_comparison_run"]

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
    from mlflow.entities import Metric, Param

    study = client.get_experiment_by_name(result.experiment)
    target = comparisons_experiment(result.experiment)
    client.set_experiment_tag(study.experiment_id, COMPARISONS_TAG, target)
    by = ",".join(result.group_by)
    run = client.create_run(
        ensure_experiment(client, target, uri),
        run_name=f"compare-{result.metric}-by-{by}"[:100],
        tags={
            KIND_TAG: COMPARISON_KIND,
            COMPARED_EXPERIMENT_TAG: result.experiment,
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
