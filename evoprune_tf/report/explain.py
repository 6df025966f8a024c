"""Explanations of pruned heads: influential features and neurons, class activation maps.

Two questions, as in MO-EvoPruneDeepTL's analysis of its pruned networks:

* *Which kept features / neurons matter?* `feature_influence` and `neuron_influence`
  rank the active units of a trained head, either by **occlusion** (the drop in
  validation accuracy when the unit is zeroed; ties broken by the drop in the mean
  probability of the true class, so the ranking stays informative where accuracy does
  not move) or by **weight x activation** (mean ``|activation| * ||outgoing weights||``,
  one forward pass). Both work on cached features with NumPy only.
* *Which parts of the image do they look at?* `class_activation_maps` runs the backbone
  up to its last convolutional feature map (the input of its global average pooling),
  weights the channels by per-feature weights (one channel per pooled feature; zero for
  pruned features) and sums them: a CAM. `explanation_weights` turns a head into such
  weights; `save_explanations` writes overlays per class.

Keras is imported only inside the functions that need a backbone.
"""

from __future__ import annotations

import pathlib
import re
import weakref
from typing import Any, Literal, Sequence

import numpy as np

from evoprune_tf.metrics import accuracy_and_true_prob
from evoprune_tf.train.numpy_engine import TrainedHead

__all__ = [
    "feature_influence",
    "neuron_influence",
    "influence_weights",
    "explanation_weights",
    "feature_map_model",
    "feature_maps",
    "class_activation_maps",
    "save_explanations",
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

    Returns:
        ``[(neuron index in the full hidden layer, score), ...]``, most influential first.
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


# ------------------------------------------------------------- Keras: feature maps


def _is_gap(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.layers.GlobalAveragePooling2D)


def _contains_gap(model: Any) -> bool:
    import keras

    return any(_is_gap(l) or (isinstance(l, keras.Model) and _contains_gap(l)) for l in model.layers)


_FMAP_CACHE: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def feature_map_model(backbone_model: Any) -> Any:
    """A model from the backbone's input to the feature map its global pooling averages.

    Handles a functional model that contains the ``GlobalAveragePooling2D`` layer
    itself (``keras.applications.<Name>(include_top=False, pooling="avg")``) and a chain
    of layers that ends in such a model (`evoprune_tf.backbones.build_backbone`: image ->
    preprocessing -> application). When several layers average globally (e.g. the
    squeeze-excite blocks of EfficientNet), the last one is the head's pooling.

    The outer chain is replayed layer by layer on a new input (each layer applied to the
    previous one's output), so the outer model must be a single-input chain.

    Raises:
        ValueError: the model has no global average pooling, not even in a nested model.
    """
    import keras

    try:
        cached = _FMAP_CACHE.get(backbone_model)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    layers = list(backbone_model.layers)
    gaps = [l for l in layers if _is_gap(l)]
    if gaps:
        inputs = backbone_model.inputs
        result = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, gaps[-1].input, name=f"{backbone_model.name}_feature_map"
        )
    else:
        nested = [l for l in layers if isinstance(l, keras.Model) and _contains_gap(l)]
        if not nested or len(backbone_model.inputs) != 1:
            raise ValueError(
                f"model {backbone_model.name!r} has no GlobalAveragePooling2D layer; "
                "expected a Keras Applications backbone built with pooling='avg'"
            )
        inner = feature_map_model(nested[-1])
        source = backbone_model.inputs[0]
        inputs = keras.Input(shape=tuple(source.shape[1:]), dtype=source.dtype, name="image")
        x = inputs
        for layer in layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer is nested[-1]:
                x = inner(x, training=False)
                break
            x = layer(x)
        result = keras.Model(inputs, x, name=f"{backbone_model.name}_feature_map")
    try:
        _FMAP_CACHE[backbone_model] = result
    except TypeError:
        pass
    return result


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images have shape {images.shape}; expected (n > 0, height, width, 3) RGB pixels")
    return images


def _run(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    import keras

    parts = [
        keras.ops.convert_to_numpy(model(images[start : start + batch_size].astype(np.float32), training=False))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


def feature_maps(backbone_model: Any, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """The backbone's last feature maps ``(n, h, w, channels)`` for RGB ``images``.

    ``images`` go in as the backbone expects them: raw 0..255 pixels for a model from
    `build_backbone`, preprocessed ones for a bare Keras application. Averaging the
    result over ``h, w`` gives the backbone's pooled features.
    """
    return _run(feature_map_model(backbone_model), _check_images(images), batch_size)


def class_activation_maps(
    backbone_model: Any,
    images: np.ndarray,
    feature_weights: np.ndarray,
    *,
    batch_size: int = 32,
) -> np.ndarray:
    """CAM-style heatmaps: feature-map channels weighted by per-feature weights.

    ``cam = relu(sum_c weight_c * map_c)``, normalised to ``[0, 1]`` per image (an image
    whose map is nowhere positive gets zeros).

    Args:
        backbone_model: a pooled Keras backbone (see `feature_map_model`).
        images: ``(n, H, W, 3)`` RGB images (uint8 or float), as the backbone expects.
        feature_weights: ``(n_features,)`` weights, one per pooled feature (= channel of
            the last feature map; zero for pruned features), or ``(n, n_features)`` for a
            different weighting per image (e.g. each image's predicted class).
        batch_size: images per backbone call.

    Returns:
        ``(n, h, w)`` float32 in ``[0, 1]``, at the feature map's resolution.
    """
    images = _check_images(images)
    weights = np.asarray(feature_weights, dtype=np.float32)
    maps = feature_maps(backbone_model, images, batch_size=batch_size)
    channels = maps.shape[-1]
    if weights.shape not in ((channels,), (len(images), channels)):
        raise ValueError(
            f"feature_weights have shape {weights.shape}; expected ({channels},) or ({len(images)}, {channels}) "
            "for this backbone's feature map"
        )
    if weights.ndim == 1:
        cams = np.tensordot(maps, weights, axes=([3], [0]))
    else:
        cams = np.einsum("nhwc,nc->nhw", maps, weights)
    cams = np.maximum(cams, 0)
    peak = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peak, out=np.zeros_like(cams), where=peak > 0).astype(np.float32)


# ------------------------------------------------------------------- saving images


def _overlay_heatmaps(
    images: np.ndarray, heatmaps: np.ndarray, path: str | pathlib.Path, titles: Sequence[str] | None = None
) -> pathlib.Path:
    """Minimal overlay (used when `evoprune_tf.report.plots` is not available): one row of panels."""
    from matplotlib.figure import Figure

    n = len(images)
    fig = Figure(figsize=(2.6 * n, 2.9))
    for i in range(n):
        ax = fig.add_subplot(1, n, i + 1)
        height, width = images[i].shape[:2]
        ax.imshow(images[i].astype(np.uint8) if images[i].dtype != np.uint8 else images[i])
        ax.imshow(heatmaps[i], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0,
                  extent=(0, width, height, 0), interpolation="bilinear")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100)
    return path


def _overlay_function():
    try:
        from evoprune_tf.report.plots import overlay_heatmaps
    except ImportError:
        return _overlay_heatmaps
    return overlay_heatmaps


def save_explanations(
    backbone_model: Any,
    head: TrainedHead,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path_dir: str | pathlib.Path,
    per_class: int = 2,
    *,
    batch_size: int = 32,
) -> list[pathlib.Path]:
    """Write one CAM overlay figure per class (the first ``per_class`` images of each).

    Each image's heatmap explains the head's *predicted* class for it
    (`explanation_weights` with the ReLU gates measured on these images); panel titles
    read ``true -> predicted (probability)``. Uses `evoprune_tf.report.plots.overlay_heatmaps`
    when that module exists, else a minimal matplotlib overlay.

    Args:
        backbone_model: the pooled backbone the head's features came from.
        head: a trained head over that backbone's features.
        images: ``(n, H, W, 3)`` RGB images as the backbone expects them.
        labels: ``(n,)`` true labels.
        class_names: one name per class.
        path_dir: output folder (created if missing).
        per_class: images per class (classes without images are skipped).
        batch_size: images per backbone call.

    Returns:
        The written PNG paths, in class order.
    """
    images = _check_images(images)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f"labels have shape {labels.shape}; expected ({len(images)},) like the images")
    if len(class_names) != head.spec.n_classes:
        raise ValueError(f"{len(class_names)} class names; expected {head.spec.n_classes}, one per class of the head")
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class={per_class!r}; expected a positive integer")
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(head.spec.n_classes)])
    if len(chosen) == 0:
        raise ValueError("no image has a label of the head's classes; expected labels in [0, n_classes)")
    picked = images[chosen]
    features = _run(backbone_model, picked, batch_size)
    if features.ndim != 2 or features.shape[1] != head.spec.n_features:
        raise ValueError(
            f"the backbone gives features of shape {features.shape[1:]}; "
            f"expected ({head.spec.n_features},) for this head"
        )
    probs = head.predict_proba(features)
    predicted = probs.argmax(axis=1)
    by_class = {c: explanation_weights(head, int(c), x=features) for c in np.unique(predicted)}
    cams = class_activation_maps(backbone_model, picked, np.stack([by_class[c] for c in predicted]),
                                 batch_size=batch_size)
    out_dir = pathlib.Path(path_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay = _overlay_function()
    paths = []
    for c in range(head.spec.n_classes):
        rows = np.flatnonzero(labels[chosen] == c)
        if not len(rows):
            continue
        titles = [
            f"{class_names[c]} -> {class_names[predicted[r]]} ({probs[r, predicted[r]]:.2f})" for r in rows
        ]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(class_names[c])).strip("_") or "class"
        path = out_dir / f"explanations_{c:02d}_{safe}.png"
        paths.append(pathlib.Path(overlay(picked[rows], cams[rows], path, titles=titles)))
    return paths
