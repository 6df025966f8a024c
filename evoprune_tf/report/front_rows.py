"""The report's records of a front: one row per member, the ensembles, the hypervolume on test."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from evoprune_tf.encodings import Encoding, pack_genome
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.objectives import Evaluation
from evoprune_tf.report.ensembles import evaluate_ensembles
from evoprune_tf.report.front import FrontMembers, MemberScores, float_or_none, mean_or_none, std_or_none
from evoprune_tf.report.trade_offs import TradeOffPicks
from evoprune_tf.search.pareto import hypervolume

__all__ = [
    "FrontEvaluator",
    "member_rows",
    "ensemble_summary",
    "banded_members",
    "hypervolume_on_test",
    "test_columns",
]


class FrontEvaluator(Protocol):
    """What the report uses of the run's evaluator (`PopulationEvaluator`, `ResampledEvaluator`)."""

    encoding: Encoding

    def lookup(self, genome: Sequence[int] | np.ndarray) -> Evaluation | None:
        """The cached evaluation of a genome, or None."""


def member_rows(members: FrontMembers, scores: MemberScores, picks: TradeOffPicks,
                evaluator: FrontEvaluator) -> list[dict]:
    """One JSON-able record per member: search values, retrained scores, size, role, genome.

    Args:
        members: the front.
        scores: the retrained scores.
        picks: the trade-off picks.
        evaluator: the run's evaluator (its cache holds the search's validation metrics).

    Returns:
        The rows, in the members' order.
    """
    encoding = evaluator.encoding
    val_accuracy = scores.val_accuracy
    rows = []
    for i, ind in enumerate(members.individuals):
        genome = members.genomes[i]
        cached = evaluator.lookup(genome)
        rows.append({
            "index": i,
            "search": {n: float(v) for n, v in zip(members.names, ind.fitness.values)},
            "search_val_accuracy": float_or_none(cached.accuracy) if cached else None,
            "search_val_auroc": float_or_none(cached.auroc) if cached else None,
            "active_fraction": float(members.active[i]),
            "active_percent": round(100.0 * float(members.active[i]), 2),
            "active_features": int(encoding.decode(genome).units[0].sum()),
            "active_parameters": int(encoding.active_parameters(genome)),
            "val_accuracy": float(val_accuracy[i]),
            **scores.over_seeds(i),
            "trade_off": picks.role(i),
            "genome": pack_genome(genome),
        })
    return rows


def ensemble_summary(scores: MemberScores, features: FeatureSplits, ood: np.ndarray | None, rows: list[dict], *,
                     band: float, temperature: float) -> dict | None:
    """Best single member vs soft-vote ensembles on test, per seed and as the mean over seeds.

    Members are chosen on validation and reported on test.

    Args:
        scores: the retrained heads and their validation scores.
        features: the run's features.
        ood: OOD features for the AUROC, or None.
        rows: the `member_rows` (for the oracle best test accuracy, context only).
        band: members within this validation accuracy of the best join the banded ensemble.
        temperature: softmax temperature of the OOD score.

    Returns:
        ``split``, ``band``, ``temperature``, ``seeds``, ``n_members``, ``best_single`` /
        ``all`` / ``banded`` (means over seeds: ``accuracy``, ``accuracy_std``, ``auroc``,
        ``n_members``; ``best_single`` also ``members``, one per seed),
        ``best_test_member_accuracy`` and ``per_seed``; None without a test split.
    """
    if len(features.y_test) == 0:
        return None
    per_seed = []
    for s in range(scores.seeds):
        member_scores = [{"accuracy": a, "loss": l} for a, l in scores.val[s]]
        result = evaluate_ensembles(scores.heads[s], member_scores, features, ood, band=band, temperature=temperature)
        result.pop("members", None)
        per_seed.append(result)
    summary = {
        kind: {
            "accuracy": mean_or_none([r[kind]["accuracy"] for r in per_seed]),
            "accuracy_std": std_or_none([r[kind]["accuracy"] for r in per_seed]),
            "auroc": mean_or_none([r[kind]["auroc"] for r in per_seed]),
            "n_members": mean_or_none([r[kind]["n_members"] for r in per_seed]),
        }
        for kind in ("best_single", "all", "banded")
    }
    summary["best_single"]["members"] = [r["best_single"]["members"][0] for r in per_seed]
    best_test = max((r["test_accuracy"] for r in rows if r["test_accuracy"] is not None), default=None)
    return {
        "split": "test", "band": float(band), "temperature": float(temperature), "seeds": scores.seeds,
        "n_members": len(rows), **summary,
        "best_test_member_accuracy": best_test,  # oracle (chosen on test): context only
        "per_seed": per_seed,
    }


def banded_members(ensembles: dict | None) -> set[int]:
    """Members that joined the banded ensemble for at least one seed (none without ensembles).

    Args:
        ensembles: `ensemble_summary`'s dict, or None.

    Returns:
        The member indices.
    """
    if not ensembles:
        return set()
    return set().union(*[set(r["banded"]["members"]) for r in ensembles["per_seed"]])


def hypervolume_on_test(rows: list[dict]) -> float | None:
    """Hypervolume of (test accuracy, active fraction[, test AUROC]) of the members.

    Args:
        rows: the `member_rows`.

    Returns:
        The hypervolume; None when a member has no test accuracy.
    """
    if any(r["test_accuracy"] is None for r in rows):
        return None
    with_auc = all(r["test_auroc"] is not None for r in rows)
    weights = (1.0, -1.0, 1.0) if with_auc else (1.0, -1.0)
    return hypervolume(test_columns(rows, with_auc), weights)


def test_columns(rows: list[dict], with_auroc: bool) -> np.ndarray:
    """(test accuracy, active fraction[, test AUROC]) of the members, one row each."""
    return np.array([[r["test_accuracy"], r["active_fraction"]] + ([r["test_auroc"]] if with_auroc else [])
                     for r in rows])
