"""Class activation maps on a tiny backbone: feature maps, CAMs and the per-class overlays."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import evoprune_tf.report.cam as cam
from conftest import assert_real_plot
from evoprune_tf.backbones import build_backbone
from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.report.cam import class_activation_maps, feature_map_model, feature_maps, save_explanations
from evoprune_tf.report.influence import explanation_weights
from evoprune_tf.train.numpy_engine import HeadTrainer, TrainConfig


SIZE = 96  # MobileNet downsamples 32x: a 3x3 feature map


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("MobileNet", weights=None, image_size=SIZE, alpha=0.25)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(6, SIZE, SIZE, 3), dtype=np.uint8)


def test_feature_maps_average_to_the_pooled_features(backbone, images):
    maps = feature_maps(backbone, images)
    assert maps.shape == (6, 3, 3, 256) and maps.dtype == np.float32
    assert feature_map_model(backbone) is feature_map_model(backbone)  # built once per backbone
    np.testing.assert_array_equal(feature_maps(backbone, images, batch_size=4), maps)  # batching changes nothing
    pooled = np.asarray(backbone(images.astype(np.float32), training=False))
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), pooled, rtol=1e-4, atol=1e-5)


def test_cams_are_normalised_per_image(backbone, images):
    weights = np.random.default_rng(1).normal(size=256).astype(np.float32)
    weights[::2] = 0  # pruned features
    cams = class_activation_maps(backbone, images, weights)
    assert cams.shape == (6, 3, 3) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    peaks = cams.max(axis=(1, 2))
    assert np.all((peaks == 0) | np.isclose(peaks, 1))
    # one weight per feature: the CAM is that channel's (ReLU'd, normalised) map
    one = np.zeros(256, np.float32)
    maps = feature_maps(backbone, images)
    channel = int(np.argmax(maps.mean(axis=(0, 1, 2))))
    one[channel] = 1
    expected = maps[..., channel] / maps[..., channel].max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(class_activation_maps(backbone, images, one), expected, rtol=1e-5, atol=1e-6)
    # per-image weights
    assert class_activation_maps(backbone, images, np.tile(weights, (6, 1))).shape == (6, 3, 3)
    with pytest.raises(ValueError, match="feature_weights"):
        class_activation_maps(backbone, images, np.ones(10))
    with pytest.raises(ValueError, match="images"):
        class_activation_maps(backbone, images[0], weights)


def test_bare_keras_application_works_too(images):
    bare = keras.applications.MobileNet(
        alpha=0.25, weights=None, input_shape=(SIZE, SIZE, 3), include_top=False, pooling="avg"
    )
    x = images.astype(np.float32) / 127.5 - 1.0
    maps = feature_maps(bare, x)
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), np.asarray(bare(x, training=False)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        feature_maps(flat, np.zeros((1, 4, 4, 3)))


def _trained_head(backbone, images):
    rng = np.random.default_rng(0)
    features = np.asarray(backbone(images.astype(np.float32), training=False))
    labels = np.array([0, 0, 1, 1, 2, 1])
    x = np.concatenate([features, features + rng.normal(0, 0.01, features.shape).astype(np.float32)])
    y = np.concatenate([labels, labels])
    data = FeatureSplits(x, y, x, y, x[:0], y[:0], class_names=("rock", "paper", "scissors"))
    spec = HeadSpec(256, 3, (8,))
    genome = (rng.random(256) < 0.5).astype(int)
    head = HeadTrainer(spec, data, TrainConfig(epochs=5), seed=0).train([FeatureSelection(spec).decode(genome)])[0]
    return head, labels, data.class_names


def test_save_explanations_writes_one_figure_per_class(backbone, images, tmp_path, monkeypatch):
    head, labels, class_names = _trained_head(backbone, images)
    drawn = []
    real_overlay = cam.overlay_heatmaps  # evoprune_tf.plots.overlay_heatmaps

    def recording_overlay(pictures, heatmaps, path, titles=None):
        drawn.append((np.array(pictures), np.array(heatmaps), list(titles)))
        return real_overlay(pictures, heatmaps, path, titles=titles)

    monkeypatch.setattr(cam, "overlay_heatmaps", recording_overlay)

    paths = save_explanations(backbone, head, images, labels, class_names, tmp_path / "cams", per_class=2)

    assert [p.name for p in paths] == [
        "explanations_00_rock.png", "explanations_01_paper.png", "explanations_02_scissors.png"
    ]
    assert all(p.parent == tmp_path / "cams" for p in paths)
    for path in paths:
        assert_real_plot(path)
    # What each figure shows: the first two images of its class (one for scissors), each
    # with the CAM of its predicted class, gated on the images shown.
    chosen = [0, 1, 2, 3, 4]
    features = np.asarray(backbone(images[chosen].astype(np.float32), training=False))
    probs = head.predict_proba(features)
    predicted = probs.argmax(axis=1)
    weights = np.stack([explanation_weights(head, int(c), x=features) for c in predicted])
    expected_cams = class_activation_maps(backbone, images[chosen], weights)
    rows_per_class = [[0, 1], [2, 3], [4]]
    assert len(drawn) == 3
    for c, ((pictures, heatmaps, titles), rows) in enumerate(zip(drawn, rows_per_class)):
        np.testing.assert_array_equal(pictures, images[[chosen[r] for r in rows]])
        np.testing.assert_allclose(heatmaps, expected_cams[rows], rtol=1e-5, atol=1e-6)
        assert titles == [
            f"{class_names[c]} -> {class_names[predicted[r]]} ({probs[r, predicted[r]]:.2f})" for r in rows
        ]
    # the figures differ: each draws its own images
    with Image.open(paths[0]) as a, Image.open(paths[1]) as b:
        first, second = np.asarray(a.convert("RGB"), np.float32), np.asarray(b.convert("RGB"), np.float32)
    assert first.shape != second.shape or np.abs(first - second).mean() > 1.0


def test_save_explanations_checks_its_inputs(backbone, images, tmp_path):
    head, labels, class_names = _trained_head(backbone, images)
    with pytest.raises(ValueError, match="class names"):
        save_explanations(backbone, head, images, labels, ("a", "b"), tmp_path)
    with pytest.raises(ValueError, match="labels have shape"):
        save_explanations(backbone, head, images, labels[:3], class_names, tmp_path)
    with pytest.raises(ValueError, match="per_class=0"):
        save_explanations(backbone, head, images, labels, class_names, tmp_path, per_class=0)
    with pytest.raises(ValueError, match="no image has a label"):
        save_explanations(backbone, head, images, np.full(6, 7), class_names, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written on a bad call


def test_importing_cam_does_not_load_keras():
    """report.pareto (hence app.build, app.run and the CLI) imports this module at its top."""
    code = (
        "import sys, evoprune_tf.report.cam; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
