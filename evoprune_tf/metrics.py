"""Metrics of a head's outputs: softmax, accuracy and cross-entropy, OOD scores and AUROC.

Every function works on NumPy logits in float64 (float32 loses the differences between
max-softmax scores at temperature 1000). The softmax family is SciPy's.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

__all__ = ["softmax", "log_softmax", "accuracy_and_loss", "accuracy_and_true_prob", "max_softmax_score", "auroc"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64.

    Args:
        logits: array ``(..., n_classes)``.
        temperature: divides the logits first (1: plain softmax).
    """
    return special.softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    return special.log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def accuracy_and_loss(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of logits ``(n, n_classes)`` against integer labels."""
    log_probs = log_softmax(logits)
    labels = np.asarray(labels)
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    accuracy = float((log_probs.argmax(axis=-1) == labels).mean())
    return accuracy, loss


def accuracy_and_true_prob(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and mean true-class probability over the sample axis (second to last) of stacked logits."""
    probs = softmax(logits)
    rows = np.arange(len(labels))
    accuracy = (probs.argmax(axis=-1) == labels).mean(axis=-1)
    return accuracy, probs[..., rows, labels].mean(axis=-1)


def max_softmax_score(logits: np.ndarray, temperature: float = 1000.0) -> np.ndarray:
    """Max softmax probability with temperature scaling (ODIN-style), computed in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(-special.logsumexp(z - z.max(axis=1, keepdims=True), axis=1))


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve for telling in-distribution (positive) from OOD samples.

    Equals the probability that a random in-distribution sample scores higher than a
    random OOD one (ties count one half): the Mann-Whitney U statistic, normalised.
    """
    n_in, n_out = len(in_scores), len(out_scores)
    if n_in == 0 or n_out == 0:
        raise ValueError(f"AUROC needs both in-distribution ({n_in}) and OOD ({n_out}) samples")
    ranks = stats.rankdata(np.concatenate([in_scores, out_scores]))
    u = ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0
    return float(u / (n_in * n_out))
