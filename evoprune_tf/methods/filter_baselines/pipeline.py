"""The filter baselines' run: DeepPruningES' network and evaluator, a criterion's masks at a FLOPs target, its report.

1. The network, its `FilterPruning` encoding (``encoding.blocks``, ``encoding.round_to``)
   and, before any image is read, the FLOPs target: ``algorithm.flops_reduction`` of the
   searched FLOPs, or the network FLOPs of the run ``algorithm.flops_of``; a target
   no mask reaches is one line. Criteria that need no data are planned here too.
2. Images, prefix activations and the head warm-up, exactly as DeepPruningES
   (`evoprune_tf.methods.deep_pruning_es.run`).
3. The criterion's scores, ranked (`target.Ranking`) and binary-searched to the target
   (`target.plan_masks`).
4. DeepPruningES' final-model report (`retrain_and_report`): the unpruned network and the
   baseline's pruned one, fine-tuned for ``report.epochs`` on ``report.seeds`` seeds,
   tested, counted and timed (LiteRT and Keras), logged to MLflow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from evoprune_tf.methods.deep_pruning_es.report import (markdown_table, report_artifacts, retrain_and_report,
                                                      summary_metrics)
from evoprune_tf.methods.deep_pruning_es.run import _evaluator, _network_and_images
from evoprune_tf.methods.filter_baselines.target import Plan, Ranking, plan_masks, target_flops

__all__ = ["FilterBaselineResult", "plan_for", "prefix_flops", "run_filter_baseline"]

@dataclasses.dataclass
class FilterBaselineResult:
    """What a filter baseline's run returns (and logs to MLflow).

    Attributes:
        config: The run's config.
        evaluator: The `FilterEvaluator`.
        plan: The masks and how near their FLOPs came to the target.
        table: The ``unpruned`` row and the baseline's row (DeepPruningES' columns).
        report: The JSON report (``report.json``).
        models: The compact deployable Keras models by name.
        files: Local paths of the tables and plot (empty with a tracking server).
        run_id: The MLflow run id (None without tracking).
        seconds: Wall time.
    """

    config: Any
    evaluator: Any
    plan: Plan
    table: list[dict]
    report: dict
    models: dict[str, Any]
    files: dict[str, Path]
    run_id: str | None
    seconds: float


def prefix_flops(model: Any, cut_layer: str | None) -> int:
    """Kernel FLOPs of the frozen prefix (every layer up to ``cut_layer``, a separator) of ``model``."""
    from evoprune_tf.nn.flops import count_flops

    if cut_layer is None:
        return 0
    rows = count_flops(model).layers
    names = [r.name for r in rows]
    return int(sum(r.flops for r in rows[:names.index(cut_layer) + 1]))


def plan_for(method: Any, config: Any, model: Any, encoding: Any, scores: dict[str, np.ndarray],
             network_target: float | None = None) -> Plan:
    """The masks of ``scores`` at the run's FLOPs target, on ``encoding``'s searched groups.

    Args:
        method: The `FilterBaseline` (its ranking options).
        config: The run's config (``algorithm.flops_reduction``, ``algorithm.ranking``, ``encoding.round_to``).
        model: The whole network.
        encoding: Its `FilterPruning`.
        scores: Group name -> per-filter scores.
        network_target: Network FLOPs to match (``algorithm.flops_of``), else None.

    Raises:
        ValueError: A reduction outside (0, 1) or a target no mask reaches (one line).
    """
    from evoprune_tf.nn.widths import WidthFlops

    count = WidthFlops(model)
    prefix = prefix_flops(model, encoding.cut_layer)
    key = "algorithm.flops_of" if network_target is not None else "algorithm.flops_reduction"
    target = target_flops(count.full - prefix, prefix, reduction=config.algorithm.flops_reduction,
                          network_flops=network_target, key=key)
    scope = method.scope(config)
    ranking = Ranking(scores, scope, normalize=scope == "global" and method.normalize_global,
                      round_to=encoding.round_to)
    return plan_masks(ranking, count.flops, target, prefix=prefix, key=key)


def _open_tracking(session: Any, evaluator: Any, images: Any) -> None:
    from evoprune_tf.tracking.extras import ConfigArtifact, DatasetInput

    config = session.config
    tracker = session.open_tracker(stats=evaluator.stats, title=f"{config.name}: {config.algorithm.name} "
                                                                  f"(seed {config.seed})")
    if tracker is None:
        return
    tracker.on_start()
    ConfigArtifact(tracker, config.to_dict()).on_start()
    DatasetInput(tracker, name=config.data.name or images.name, digest=images.content_hash(),
                 source=config.data.source,
                 profile={"train": len(images.train_labels), "val": len(images.val_labels),
                          "test": len(images.test_labels), "classes": images.n_classes}).on_start()


def run_filter_baseline(session: Any, method: Any) -> FilterBaselineResult:
    """A filter baseline inside a prepared `RunSession` (the method's ``run``).

    Session inputs: ``images``, ``network``, ``output_dir``, ``head_epochs`` as DeepPruningES
    (`evoprune_tf.methods.deep_pruning_es.run.run_filter_pruning`).
    """
    config, out = session.config, session.out
    network_target = session.inputs.get("flops_of_network")
    early: dict[str, dict] = {}

    def check(model: Any, encoding: Any) -> None:  # before any image is read
        # The head may still be a placeholder (its classes come with the images): the target's
        # reachability is checked here, the plan is made on the final network below.
        groups = encoding.groups
        scores = ({g.name: np.ones(g.size) for g in groups} if method.needs_data
                  else method.scores(model, groups, config=config))
        plan_for(method, config, model, encoding, scores, network_target)
        if not method.needs_data:  # the head is no searched group: its scores hold for the final network
            early["scores"] = scores

    model, module, images = _network_and_images(session, check=check)
    evaluator = _evaluator(session, model, module, images)
    encoding = evaluator.encoding
    scores = early.get("scores") or method.scores(evaluator.suffix, list(encoding.groups), config=config,
                                                  evaluator=evaluator)
    plan = plan_for(method, config, model, encoding, scores, network_target)
    print(f"{method.name}: {plan.scope} ranking, searched FLOPs {plan.flops / 1e6:.3f} M for a target of "
          f"{plan.target / 1e6:.3f} M ({100 * plan.error:.2f}% off; unpruned {plan.full / 1e6:.3f} M)", file=out)
    _open_tracking(session, evaluator, images)
    masks = {"unpruned": encoding.decode_with_repairs(encoding.unpruned()),
             method.name: encoding.decode_with_repairs(encoding.encode(plan.keep))}
    with session.report_folder(session.inputs.get("output_dir")) as folder:
        try:
            table, models, files = retrain_and_report(config, evaluator, masks, module, folder, out,
                                                      title=f"{config.name}: {method.name} (seed {config.seed})")
            row = next(r for r in table if r["model"] == method.name)
            report = {"method": method.name, "encoding": encoding.config(), "plan": plan.describe(), "table": table,
                      "test_accuracy_mean": row["test_accuracy"], "wall_seconds": round(session.elapsed, 2)}
            (folder / "report.json").write_text(json.dumps(report, indent=2, default=float))
            print(markdown_table(table, config.report.seeds), file=out)
            metrics = summary_metrics(table)
            exported = {f"{method.name}_model": models[method.name]} if config.report.export_model else {}
            session.finish(report, metrics={**metrics, "test_accuracy_mean": row["test_accuracy"],
                                            "target_error_pct": 100 * plan.error},
                           artifacts=report_artifacts(files), models=exported)
        except BaseException as error:
            session.fail(error)
            raise
    if not folder.exists():
        files = {}
    return FilterBaselineResult(config, evaluator, plan, table, report, models, files, session.run_id,
                                session.elapsed)
