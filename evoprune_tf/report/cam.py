"""Which parts of an image a pruned head looks at: class activation maps (CAMs).

`class_activation_maps` runs the backbone up to its last convolutional feature map (the
input of its global average pooling, see `feature_map_model`), weights the channels by
per-feature weights (one channel per pooled feature; zero for pruned features) and sums
them. The weights come from `evoprune_tf.report.influence`: `explanation_weights`
(a head linearised along its active path) or `influence_weights` (an influence
ranking). `save_explanations` writes overlays per class.

Keras is imported inside the functions that run a backbone, not at module level:
`evoprune_tf.report.pareto` imports this module at its top, and `evoprune_tf.app.build`
/ `evoprune_tf.app.run` (hence the CLI) import that one, so a module-level Keras import
would load TensorFlow (seconds) on every start and fix the Keras backend early.
"""

from __future__ import annotations

import pathlib
import re
import weakref
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from evoprune_tf.report.influence import explanation_weights
from evoprune_tf.plots import overlay_heatmaps
from evoprune_tf.train.heads import TrainedHead

if TYPE_CHECKING:  # pragma: no cover - annotations only; see the module docstring
    import keras

__all__ = [
    "feature_map_model",
    "feature_maps",
    "class_activation_maps",
    "save_explanations",
]


# ------------------------------------------------------------------ feature maps


def _is_gap(layer: Any) -> bool:
    import keras  # local: keeps this module light (see the module docstring)

    return isinstance(layer, keras.layers.GlobalAveragePooling2D)


def _contains_gap(model: Any) -> bool:
    import keras

    return any(_is_gap(l) or (isinstance(l, keras.Model) and _contains_gap(l)) for l in model.layers)


# One feature-map model per backbone: building a Keras model per call costs time and
# memory (fresh models leak on the TensorFlow backend), and a CAM call needs it twice.
_FMAP_CACHE: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def feature_map_model(backbone_model: keras.Model) -> keras.Model:
    """A model from the backbone's input to the feature map its global pooling averages.

    Handles a functional model that contains the ``GlobalAveragePooling2D`` layer
    itself (``keras.applications.<Name>(include_top=False, pooling="avg")``) and a chain
    of layers that ends in such a model (`evoprune_tf.backbones.build_backbone`: image ->
    preprocessing -> application). When several layers average globally (e.g. the
    squeeze-excite blocks of EfficientNet), the last one is the head's pooling.

    The outer chain is replayed layer by layer on a new input (each layer applied to the
    previous one's output), so the outer model must be a single-input chain. The result
    is cached per backbone (weakly: it goes when the backbone does).

    Args:
        backbone_model: a pooled Keras backbone.

    Returns:
        A model ``image -> (batch, h, w, channels)`` sharing the backbone's layers.

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


def _run(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    import keras

    parts = [
        keras.ops.convert_to_numpy(model(images[start : start + batch_size].astype(np.float32), training=False))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


def feature_maps(backbone_model: keras.Model, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """The backbone's last feature maps ``(n, h, w, channels)`` for RGB ``images``.

    ``images`` go in as the backbone expects them: raw 0..255 pixels for a model from
    `build_backbone`, preprocessed ones for a bare Keras application. Averaging the
    result over ``h, w`` gives the backbone's pooled features.

    Args:
        backbone_model: a pooled Keras backbone (see `feature_map_model`).
        images: ``(n, H, W, 3)`` RGB images.
        batch_size: images per backbone call.

    Returns:
        ``(n, h, w, channels)`` float32.

    Raises:
        ValueError: images that are not a non-empty ``(n, H, W, 3)`` batch, or a backbone
            without global average pooling.
    """
    return _run(feature_map_model(backbone_model), _check_images(images), batch_size)


def class_activation_maps(
    backbone_model: keras.Model,
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

    Raises:
        ValueError: bad images, or weights that do not match the feature map's channels.
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


# ------------------------------------------------------------------ overlays


def save_explanations(
    backbone_model: keras.Model,
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
    read ``true -> predicted (probability)``. Drawn by
    `evoprune_tf.plots.overlay_heatmaps`.

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

    Raises:
        ValueError: bad images or labels, a class-name count that differs from the
            head's classes, a bad ``per_class``, or a backbone whose pooled features do
            not fit the head.
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
        paths.append(pathlib.Path(overlay_heatmaps(picked[rows], cams[rows], path, titles=titles)))
    return paths
