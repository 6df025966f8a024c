"""Which kept features and neurons of a pruned head matter: influence rankings.

As in MO-EvoPruneDeepTL's analysis of its pruned networks, `feature_influence` and
`neuron_influence` rank the active units of a trained head, either by **occlusion**
(the drop in validation accuracy when the unit is zeroed; ties broken by the drop in
the mean probability of the true class, so the ranking stays informative where
accuracy does not move) or by **weight x activation** (mean ``|activation| *
||outgoing weights||``, one forward pass). `influence_weights` turns a ranking into
dense per-feature weights and `explanation_weights` linearises a head into such weights;
`evoprune_tf.report.cam` turns them into class activation maps.

Everything here works on cached features with NumPy only: no Keras, no TensorFlow.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from evoprune_tf.metrics import accuracy_and_true_prob
from evoprune_tf.train.heads import TrainedHead

__all__ = [
    "feature_influence",
    "neuron_influence",
    "influence_weights",
    "explanation_weights",
]

Method = Literal["occlusion", "weight_activation"]

# elements of the (units, samples, width) block of one occlusion chunk
_CHUNK_ELEMENTS = 4_000_000


# ------------------------------------------------------------------ NumPy forward


def _check_xy(head: TrainedHead, x: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != head.spec.n_features:
        raise ValueError(f"features have shape {x.shape}; expected (n, {head.spec.n_features}) for this head")
    if y is not None:
        y = np.asarray(y, dtype=np.int64)
        if y.shape != (len(x),):
            raise ValueError(f"labels have shape {y.shape}; expected ({len(x)},) like the features")
        if len(y) and (y.min() < 0 or y.max() >= head.spec.n_classes):
            raise ValueError(f"labels lie in [{y.min()}, {y.max()}]; expected [0, {head.spec.n_classes - 1}]")
    if len(x) == 0:
        raise ValueError("features have 0 rows; expected samples to measure influence on")
    return x, y


def _compact_input(head: TrainedHead, x: np.ndarray) -> np.ndarray:
    """The head's compact input ``(n, K0)``: active features, zeros in padded slots."""
    idx = head.indices[0]
    out = np.zeros((len(x), len(idx)), dtype=np.float32)
    keep = idx >= 0
    out[:, keep] = x[:, idx[keep]]
    return out


def _layer(head: TrainedHead, layer: int, a: np.ndarray) -> np.ndarray:
    """Pre-activation of ``layer`` for (possibly stacked) activations ``a``."""
    z = np.matmul(a, head.kernels[layer])
    if head.biases[layer] is not None:
        z = z + head.biases[layer]
    return z


def _activations(head: TrainedHead, x: np.ndarray) -> list[np.ndarray]:
    """Compact activations at every boundary: input, hidden layers (after ReLU), logits."""
    acts = [_compact_input(head, x)]
    for layer in range(head.spec.n_layers):
        z = _layer(head, layer, acts[-1])
        acts.append(np.maximum(z, 0) if layer < head.spec.n_layers - 1 else z)
    return acts


def _finish(head: TrainedHead, z: np.ndarray, layer: int) -> np.ndarray:
    """Logits from the pre-activation ``z`` of ``layer`` (stacked or not)."""
    for nxt in range(layer + 1, head.spec.n_layers):
        z = _layer(head, nxt, np.maximum(z, 0))
    return z


def _unit_influence(
    head: TrainedHead, x: np.ndarray, y: np.ndarray, boundary: int, method: Method, top_k: int | None
) -> list[tuple[int, float]]:
    """Rank the active units at ``boundary`` (0 = input features, l+1 = hidden layer l)."""
    if method not in ("occlusion", "weight_activation"):
        raise ValueError(f"method={method!r}; expected 'occlusion' or 'weight_activation'")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k={top_k!r}; expected a positive integer or None")
    acts = _activations(head, x)
    a = acts[boundary]
    kernel = head.kernels[boundary]
    slots = np.flatnonzero(head.indices[boundary] >= 0)
    full_index = head.indices[boundary][slots]
    if method == "weight_activation":
        out_norm = np.linalg.norm(kernel[slots], axis=1)
        score = np.abs(a[:, slots]).mean(axis=0) * out_norm
        order = np.lexsort((full_index, -score))
        ranked = [(int(full_index[i]), float(score[i])) for i in order]
        return ranked[:top_k] if top_k else ranked

    base_acc, base_prob = accuracy_and_true_prob(acts[-1], y)
    pre = _layer(head, boundary, a)  # (n, width of the next boundary)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, pre.size))
    acc_drop = np.empty(len(slots))
    prob_drop = np.empty(len(slots))
    for start in range(0, len(slots), chunk):
        part = slots[start : start + chunk]
        # zeroing unit j removes its contribution a[:, j] * kernel[j] from the next layer
        occluded = pre[None] - a[:, part].T[:, :, None] * kernel[part][:, None, :]
        acc, prob = accuracy_and_true_prob(_finish(head, occluded, boundary), y)
        acc_drop[start : start + len(part)] = base_acc - acc
        prob_drop[start : start + len(part)] = base_prob - prob
    order = np.lexsort((full_index, -prob_drop, -np.round(acc_drop, 12)))
    ranked = [(int(full_index[i]), float(acc_drop[i])) for i in order]
    return ranked[:top_k] if top_k else ranked


def feature_influence(
    head: TrainedHead,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    method: Method = "occlusion",
    top_k: int | None = 20,
) -> list[tuple[int, float]]:
    """Rank the head's active input features by their influence on validation data.

    Args:
        head: a trained head.
        x_val: full-width validation features ``(n, n_features)``.
        y_val: validation labels ``(n,)``.
        method: ``"occlusion"``: score = drop in validation accuracy when the feature is
            set to zero (ranking ties broken by the drop in the mean true-class
            probability, then by index); ``"weight_activation"``: score = mean
            ``|x_j|`` times the L2 norm of the feature's outgoing weights (one forward
            pass, no labels needed beyond validation).
        top_k: keep the first ``top_k`` (None: every active feature).

    Returns:
        ``[(feature index in the full feature space, score), ...]``, most influential
        first. Pruned features are not listed.

    Raises:
        ValueError: features or labels of the wrong shape or range, an unknown method or
            a top_k that is not a positive integer.
    """
    x, y = _check_xy(head, x_val, y_val)
    return _unit_influence(head, x, y, 0, method, top_k)


def neuron_influence(
    head: TrainedHead,
    x_val: np.ndarray,
    y_val: np.ndarray,
    layer: int = 0,
    *,
    method: Method = "occlusion",
    top_k: int | None = 20,
) -> list[tuple[int, float]]:
    """Rank the active neurons of hidden layer ``layer`` by zeroing their outputs.

    Same scores as `feature_influence`, with the neuron's ReLU output in place of the
    feature value.

    Args:
        head: a trained head with at least one hidden layer.
        x_val: full-width validation features ``(n, n_features)``.
        y_val: validation labels ``(n,)``.
        layer: index of the hidden layer (0 = the first).
        method: ``"occlusion"`` or ``"weight_activation"``, as in `feature_influence`.
        top_k: keep the first ``top_k`` (None: every active neuron).

    Returns:
        ``[(neuron index in the full hidden layer, score), ...]``, most influential first.
        Pruned neurons are not listed.

    Raises:
        ValueError: no such hidden layer, or bad features, labels, method or top_k.
    """
    n_hidden = len(head.spec.hidden)
    if not n_hidden:
        raise ValueError(f"layer={layer!r}; expected a hidden layer, but this head has none")
    if not isinstance(layer, (int, np.integer)) or not 0 <= layer < n_hidden:
        raise ValueError(f"layer={layer!r}; expected a hidden-layer index in [0, {n_hidden - 1}]")
    x, y = _check_xy(head, x_val, y_val)
    return _unit_influence(head, x, y, int(layer) + 1, method, top_k)


def influence_weights(influence: Sequence[tuple[int, float]], n_features: int) -> np.ndarray:
    """Dense per-feature CAM weights from an influence ranking (negative scores -> 0).

    Args:
        influence: ``[(feature index, score), ...]`` as returned by `feature_influence`.
        n_features: width of the feature space.

    Returns:
        ``(n_features,)`` float32, zero for unlisted (e.g. pruned) features.

    Raises:
        ValueError: a feature index outside ``[0, n_features)``.
    """
    weights = np.zeros(n_features, dtype=np.float32)
    for index, score in influence:
        if not 0 <= index < n_features:
            raise ValueError(f"feature index {index} in influence; expected [0, {n_features - 1}]")
        weights[index] = max(float(score), 0.0)
    return weights


def explanation_weights(
    head: TrainedHead,
    class_index: int | None = None,
    *,
    x: np.ndarray | None = None,
) -> np.ndarray:
    """Per-feature weights of a head for class activation maps.

    The head is linearised along its active path: ``E = W1 @ diag(g1) @ W2 @ ... @ WL``
    (full feature space, zero rows for pruned features), where ``g`` is 1 for every
    active hidden neuron, or, when features ``x`` are given, the fraction of samples in
    which the neuron's ReLU is on (a better approximation of the network on that data).

    Args:
        head: a trained head.
        class_index: None: the L2 norm of each feature's row of ``E`` (how strongly the
            head uses the feature at all, non-negative). A class: ``E[:, c] -
            mean_k E[:, k]``, the feature's evidence for class ``c`` against the average
            class (softmax ignores what all classes share); may be negative.
        x: optional full-width features ``(n, n_features)`` for the ReLU gates.

    Returns:
        ``(n_features,)`` float32.
    """
    n_classes = head.spec.n_classes
    if class_index is not None and not (isinstance(class_index, (int, np.integer)) and 0 <= class_index < n_classes):
        raise ValueError(f"class_index={class_index!r}; expected None or a class in [0, {n_classes - 1}]")
    gates: list[np.ndarray] = []
    if x is not None:
        x, _ = _check_xy(head, x, None)
        acts = _activations(head, x)
        gates = [(acts[b] > 0).mean(axis=0) for b in range(1, head.spec.n_layers)]
    effective = head.kernels[0].astype(np.float64)
    for layer in range(1, head.spec.n_layers):
        gate = gates[layer - 1] if gates else (head.indices[layer] >= 0).astype(np.float64)
        effective = (effective * gate) @ head.kernels[layer]
    if class_index is None:
        rows = np.linalg.norm(effective, axis=1)
    else:
        rows = effective[:, class_index] - effective.mean(axis=1)
    weights = np.zeros(head.spec.n_features, dtype=np.float32)
    keep = head.indices[0] >= 0
    weights[head.indices[0][keep]] = rows[keep]
    return weights
