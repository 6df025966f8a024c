"""DeepPruningES' three trade-off models of a Pareto front: ``heavy``, ``knee`` and ``light``.

`pick_trade_offs` chooses them with `evoprune_tf.search.pareto.trade_off_models` on the
search objectives (three distinct members where there are three), and
`export_trade_offs` saves each as a compact Keras model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evoprune_tf.report.front import FrontMembers
from evoprune_tf.report.single import compact_model
from evoprune_tf.search.pareto import knee_point, trade_off_models
from evoprune_tf.train import TrainedHead

__all__ = [
    "TRADE_OFFS",
    "TradeOffPicks",
    "pick_trade_offs",
    "trade_off_columns",
    "distinct_trade_offs",
    "export_trade_offs",
]


#: The three models handed to the decision maker, in this order.
TRADE_OFFS = ("heavy", "knee", "light")


@dataclasses.dataclass(frozen=True)
class TradeOffPicks:
    """The heavy / knee / light members and how they were chosen.

    Attributes:
        picks: trade-off name -> member index.
        rule: ``"trade_off_models"`` or ``"distinct_fallback"`` (`distinct_trade_offs`).
        knee_all_objectives: `knee_point` over every search objective.
    """

    picks: dict[str, int]
    rule: str
    knee_all_objectives: int

    @property
    def distinct(self) -> bool:
        """True when the three picks are three different members."""
        return len(set(self.picks.values())) == len(TRADE_OFFS)

    def role(self, member: int) -> str:
        """The member's trade-off label; coinciding picks share one, e.g. ``"heavy+knee"``."""
        return "+".join(name for name in TRADE_OFFS if self.picks[name] == member)


def pick_trade_offs(members: FrontMembers, val_accuracy: np.ndarray) -> TradeOffPicks:
    """Heavy, knee and light on the search objectives (three distinct members when there are three).

    Args:
        members: the front.
        val_accuracy: each member's retrained validation accuracy (used when the search
            objectives hold neither accuracy nor loss).

    Returns:
        The `TradeOffPicks`.
    """
    points, weights, acc, cpx = trade_off_columns(members.names, members.points, members.weights,
                                                   members.active, val_accuracy)
    picks = trade_off_models(points, weights, accuracy_index=acc, complexity_index=cpx)
    picks, rule = distinct_trade_offs(points, weights, acc, cpx, picks)
    return TradeOffPicks(picks, rule, int(knee_point(members.points, members.weights)))


def trade_off_columns(names: list[str], points: np.ndarray, weights: tuple, active: np.ndarray,
                       val_accuracy: np.ndarray) -> tuple[np.ndarray, tuple, int, int]:
    """Points, weights, accuracy and complexity columns for `trade_off_models`.

    The search objectives are used as they are; when they lack a complexity objective
    the genome's active fraction is appended (minimised), and when they lack both
    accuracy and loss the retrained validation accuracy is appended (maximised).
    Appending a column never removes a point from the front.
    """
    pts, w = points, tuple(weights)
    if "accuracy" in names:
        acc = names.index("accuracy")
    elif "loss" in names:
        acc = names.index("loss")
    else:
        pts, w, acc = np.column_stack([pts, val_accuracy]), w + (1.0,), pts.shape[1]
    if "active_fraction" in names:
        cpx = names.index("active_fraction")
    else:
        pts, w, cpx = np.column_stack([pts, active]), w + (-1.0,), pts.shape[1]
    return pts, w, acc, cpx


def distinct_trade_offs(points: np.ndarray, weights: tuple, acc: int, cpx: int,
                         picks: dict[str, int]) -> tuple[dict[str, int], str]:
    """Make ``heavy`` / ``knee`` / ``light`` three different members when there are three.

    `trade_off_models` works on the accuracy-complexity projection of the front, where
    the picks coincide when that projection has fewer than three points (e.g. members that
    differ only in robustness) or the knee of a concave projection is one of its ends.
    Then, keeping ``heavy``: a ``light`` equal to it becomes the lightest other member
    (ties: more accurate), and a ``knee`` equal to either becomes the other member
    nearest the ideal point of the accuracy-complexity plane (normalised to the members'
    range). Returns the picks and ``"trade_off_models"`` or ``"distinct_fallback"``.
    """
    n = len(points)
    if n < len(TRADE_OFFS) or len(set(picks.values())) == len(TRADE_OFFS):
        return dict(picks), "trade_off_models"
    signs = np.sign(np.asarray(weights, dtype=np.float64))
    minimised = -points[:, [acc, cpx]] * signs[[acc, cpx]]
    low, high = minimised.min(axis=0), minimised.max(axis=0)
    norm = (minimised - low) / np.where(high > low, high - low, 1.0)
    heavy, light, knee = picks["heavy"], picks["light"], picks["knee"]
    if light == heavy:
        others = [i for i in range(n) if i != heavy]
        light = min(others, key=lambda i: (minimised[i, 1], minimised[i, 0], i))
    if knee in (heavy, light):
        others = [i for i in range(n) if i not in (heavy, light)]
        knee = min(others, key=lambda i: (float(np.linalg.norm(norm[i])), i))
    return {"heavy": heavy, "knee": knee, "light": light}, "distinct_fallback"


def export_trade_offs(heads: Sequence[TrainedHead], picks: TradeOffPicks, rows: list[dict],
                      scaling: tuple[np.ndarray, np.ndarray] | None, folder: Path) -> dict[str, Any]:
    """Save the heavy / knee / light heads as compact Keras models ``<folder>/<name>.keras``.

    Args:
        heads: one retrain seed's heads, one per member.
        picks: the trade-off picks.
        rows: the `member_rows`.
        scaling: the features' standardisation (`FeatureSplits.scaling`), or None.
        folder: where the models go (artifact path ``tradeoff_models``).

    Returns:
        ``distinct``, ``rule`` and per trade-off: member index, active %, search values,
        test accuracy / AUROC, parameters, local file and artifact path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    trade_offs: dict[str, Any] = {"distinct": picks.distinct, "rule": picks.rule}
    for name in TRADE_OFFS:
        i = picks.picks[name]
        model = compact_model(heads[i], scaling)
        path = folder / f"{name}.keras"
        model.save(path)
        trade_offs[name] = {
            "member": i, "active_percent": rows[i]["active_percent"], "search": rows[i]["search"],
            "test_accuracy": rows[i]["test_accuracy"], "test_auroc": rows[i]["test_auroc"],
            "parameters": int(model.count_params()), "file": str(path),
            "artifact": f"tradeoff_models/{name}.keras",
        }
    return trade_offs
