"""Explanations of a trade-off model: feature ranking by occlusion and CAM overlays of test images."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from evoprune_tf.backbones import build_backbone
from evoprune_tf.encodings import Encoding
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.records import write_csv
from evoprune_tf.report.cam import save_explanations
from evoprune_tf.report.influence import feature_influence
from evoprune_tf.train import TrainedHead

if TYPE_CHECKING:  # pragma: no cover
    from evoprune_tf.data.images import ImageSplits

__all__ = ["BackboneSpec", "explain_knee", "explain_images"]


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to rebuild the run's backbone for explanations (name, weights, options, batch size)."""

    name: str
    weights: str | None = None
    options: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 64


def explain_knee(backbone: BackboneSpec, encoding: Encoding, features: FeatureSplits, head: TrainedHead,
                 images: ImageSplits, folder: Path, out: TextIO) -> dict:
    """Feature ranking and CAM overlays of one head (feature selection only); errors are reported, not raised.

    Args:
        backbone: the run's backbone.
        encoding: the run's encoding.
        features: the run's features (validation ranks the features).
        head: the head to explain.
        images: the run's images.
        folder: where the files go.
        out: stream for the line saying why explanations were skipped.

    Returns:
        ``model``, ``method``, ``top_features`` and ``files``; or ``skipped`` / ``error``
        with an empty ``files``.
    """
    if encoding.name != "feature_selection":
        return {"skipped": f"explanations need the feature_selection encoding, not {encoding.name}", "files": []}
    try:
        influence = feature_influence(head, features.x_val, features.y_val, top_k=20)
        folder.mkdir(parents=True, exist_ok=True)
        ranking = write_csv(folder / "feature_influence.csv", ["rank", "feature", "val_accuracy_drop"],
                            [[r + 1, f, s] for r, (f, s) in enumerate(influence)])
        paths = explain_images(backbone, head, images, folder, per_class=2)
    except Exception as error:  # noqa: BLE001 - explanations are an extra; the report stands without them
        message = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        print(f"  explanations skipped ({message})", file=out)
        return {"error": message, "files": []}
    return {
        "model": "knee",
        "method": "occlusion",
        "top_features": [{"feature": int(f), "val_accuracy_drop": float(s)} for f, s in influence],
        "files": [str(p) for p in [*paths, ranking]],
    }


def explain_images(backbone: BackboneSpec, head: TrainedHead, images: ImageSplits, folder: str | Path, *,
                   per_class: int = 2) -> list[Path]:
    """CAM overlays of ``per_class`` test images per class (validation images when test is empty).

    The backbone is rebuilt from ``backbone`` at the images' size; the head must have been
    trained on that backbone's pooled features.

    Args:
        backbone: the run's backbone.
        head: the trained head.
        images: the run's images.
        folder: where the PNGs go.
        per_class: images per class.

    Returns:
        The PNG paths, one per class.
    """
    model = build_backbone(backbone.name, weights=backbone.weights, image_size=images.image_size,
                           **(backbone.options or {}))
    pixels, labels = images.test_images, images.test_labels
    if len(labels) == 0:
        pixels, labels = images.val_images, images.val_labels
    return save_explanations(model, head, pixels, labels, list(images.class_names), folder, per_class=per_class,
                             batch_size=max(1, int(backbone.batch_size)))
