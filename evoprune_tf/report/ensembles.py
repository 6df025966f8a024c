"""Ensembles of differently pruned heads (MO-EvoPruneDeepTL's Pareto ensemble).

A soft vote averages the members' class probabilities. `evaluate_ensembles` compares,
on held-out data, the best single member (chosen on validation), the ensemble of all
members and the ensemble of the members whose validation accuracy is within a band of
the best one, reporting accuracy and, when OOD features are given, the OOD-detection
AUROC of the ensemble's max-softmax score. NumPy only.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from evoprune_tf.metrics import auroc, softmax
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.train.numpy_engine import TrainedHead

__all__ = ["soft_vote", "evaluate_ensembles"]


def _probabilities(head: TrainedHead, x: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``logits / temperature`` in float64 (float32 loses the differences at T=1000)."""
    return softmax(head.logits(x), temperature)


def soft_vote(heads: Sequence[TrainedHead], x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Mean of the members' (temperature-scaled) softmax probabilities.

    Args:
        heads: the members; all must have the same number of classes.
        x: full-width features ``(n, n_features)``.
        temperature: softmax temperature applied to every member's logits.

    Returns:
        ``(n, n_classes)`` float64 probabilities (rows sum to one).
    """
    heads = list(heads)
    if not heads:
        raise ValueError("heads is empty; expected at least one trained head")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}; expected a positive number")
    classes = {h.spec.n_classes for h in heads}
    if len(classes) != 1:
        raise ValueError(f"heads have {sorted(classes)} classes; expected the same number for every member")
    total = _probabilities(heads[0], x, temperature)
    for head in heads[1:]:
        total += _probabilities(head, x, temperature)
    return total / len(heads)


def _score(
    heads: Sequence[TrainedHead],
    x: np.ndarray,
    y: np.ndarray,
    ood: np.ndarray | None,
    temperature: float,
) -> dict:
    """Accuracy (soft vote at T=1) and AUROC (max of the soft vote at ``temperature``)."""
    probs = soft_vote(heads, x)
    accuracy = float((probs.argmax(axis=1) == y).mean()) if len(y) else float("nan")
    result: dict = {"accuracy": accuracy, "auroc": None}
    if ood is not None:
        in_scores = soft_vote(heads, x, temperature).max(axis=1)
        out_scores = soft_vote(heads, ood, temperature).max(axis=1)
        result["auroc"] = auroc(in_scores, out_scores)
    return result


def evaluate_ensembles(
    heads: Sequence[TrainedHead],
    member_scores: Sequence[dict],
    data: FeatureSplits,
    ood: np.ndarray | None,
    *,
    band: float = 0.02,
    temperature: float = 1000.0,
    split: Literal["test", "val"] = "test",
) -> dict:
    """Best single member vs soft-vote ensembles, scored on held-out data.

    Members are chosen on *validation* scores (``member_scores``) and reported on
    ``split`` (the test split by default), so the choice never sees the reported data.

    Args:
        heads: the trained members (e.g. the heads of a Pareto front).
        member_scores: one dict per head with at least ``"accuracy"`` (validation
            accuracy); an optional ``"loss"`` (validation loss) breaks accuracy ties for
            the best single member (lower wins, then the first member).
        data: the features; ``split`` is scored.
        ood: out-of-distribution features ``(m, n_features)`` for the AUROC, or None.
        band: the banded ensemble holds every member with validation accuracy
            ``>= best - band``.
        temperature: softmax temperature of the OOD score (MO-EvoPruneDeepTL: 1000).
            Accuracy always uses the plain (T=1) averaged probabilities.
        split: ``"test"`` (default) or ``"val"``.

    Returns:
        A JSON-able dict::

            {"split", "band", "temperature", "n_members",
             "members": [{"index", "val_accuracy", "accuracy", "auroc"}, ...],
             "best_single": {"members": [i], "n_members": 1, "val_accuracy", "accuracy", "auroc"},
             "all":         {"members": [...], "n_members", "accuracy", "auroc"},
             "banded":      {"members": [...], "n_members", "accuracy", "auroc"}}

        ``auroc`` is None without ``ood``.

    Raises:
        ValueError: empty or mismatched members, a score without ``"accuracy"``, a
            negative band, an empty split or OOD features of the wrong width.
    """
    heads = list(heads)
    x, y, ood = _checked_inputs(heads, member_scores, data, ood, band=band, temperature=temperature, split=split)

    val_acc = np.array([float(s["accuracy"]) for s in member_scores])
    val_loss = np.array([float(s.get("loss", 0.0)) for s in member_scores])
    best = int(np.lexsort((np.arange(len(heads)), val_loss, -val_acc))[0])
    banded = [i for i in range(len(heads)) if val_acc[i] >= val_acc[best] - band - 1e-12]

    members = []
    for i, head in enumerate(heads):
        scored = _score([head], x, y, ood, temperature)
        members.append({"index": i, "val_accuracy": float(val_acc[i]), **scored})

    def ensemble(indices: list[int]) -> dict:
        return {
            "members": indices,
            "n_members": len(indices),
            **_score([heads[i] for i in indices], x, y, ood, temperature),
        }

    return {
        "split": split,
        "band": float(band),
        "temperature": float(temperature),
        "n_members": len(heads),
        "members": members,
        "best_single": {
            "members": [best],
            "n_members": 1,
            "val_accuracy": float(val_acc[best]),
            "accuracy": members[best]["accuracy"],
            "auroc": members[best]["auroc"],
        },
        "all": ensemble(list(range(len(heads)))),
        "banded": ensemble(banded),
    }


def _checked_inputs(heads: list[TrainedHead], member_scores: Sequence[dict], data: FeatureSplits,
                    ood: np.ndarray | None, *, band: float, temperature: float,
                    split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The scored split's ``(x, y)`` and the OOD features as float32, after checking every argument."""
    if not heads:
        raise ValueError("heads is empty; expected at least one trained head")
    if len(member_scores) != len(heads):
        raise ValueError(f"{len(member_scores)} member scores for {len(heads)} heads; expected one per head")
    missing = [i for i, s in enumerate(member_scores) if "accuracy" not in s]
    if missing:
        raise ValueError(f"member_scores {missing[:5]} have no 'accuracy'; expected validation accuracy per member")
    if not band >= 0:
        raise ValueError(f"band={band!r}; expected a non-negative accuracy difference")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}; expected a positive number")
    if split not in ("test", "val"):
        raise ValueError(f"split={split!r}; expected 'test' or 'val'")
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    if len(y) == 0:
        raise ValueError(f"the {split} split of {data.name!r} is empty; expected samples to score the ensembles on")
    if ood is not None:
        ood = np.asarray(ood, dtype=np.float32)
        if ood.ndim != 2 or ood.shape[1] != data.n_features or len(ood) == 0:
            raise ValueError(f"ood has shape {ood.shape}; expected (n > 0, {data.n_features}) like the dataset")
    return x, y, ood
