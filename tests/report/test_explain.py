"""Explanations: feature / neuron influence on planted signal, CAMs on a tiny backbone."""

import sys

import numpy as np
import pytest

from evoprune_tf.encodings import FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.report.explain import (
    class_activation_maps,
    explanation_weights,
    feature_influence,
    feature_maps,
    influence_weights,
    neuron_influence,
    save_explanations,
)
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.train.numpy_engine import HeadTrainer, TrainConfig


def _fisher_ratio(data):
    """Between-class variance of the class means over the within-class variance, per feature."""
    x, y = data.x_train, data.y_train
    means = np.stack([x[y == c].mean(axis=0) for c in range(data.n_classes)])
    within = np.mean([x[y == c].var(axis=0) for c in range(data.n_classes)], axis=0)
    return means.var(axis=0) / within


def _planted_head(data, informative, n_noise=12, seed=0):
    rng = np.random.default_rng(seed)
    mask = informative.copy()
    mask[rng.choice(np.flatnonzero(~informative), n_noise, replace=False)] = True
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    head = HeadTrainer(spec, data, TrainConfig(epochs=30, learning_rate=0.02), seed=seed).train(
        [FeatureSelection(spec).decode(mask.astype(int))]
    )[0]
    return head, mask


def test_occlusion_ranks_the_informative_features_first(planted):
    data, informative = planted
    head, mask = _planted_head(data, informative)
    # measure on validation + test rows: more samples, finer accuracy steps
    x = np.concatenate([data.x_val, data.x_test])
    y = np.concatenate([data.y_val, data.y_test])
    ranking = feature_influence(head, x, y, top_k=None)
    features = [i for i, _ in ranking]
    assert sorted(features) == np.flatnonzero(mask).tolist()  # every active feature, no pruned one
    strength = _fisher_ratio(data)
    strongest = set(np.argsort(-strength)[:2].tolist())
    assert set(features[:2]) == strongest
    assert all(informative[i] for i in features[:3])
    scores = dict(ranking)
    assert np.mean([scores[i] for i in np.flatnonzero(informative)]) > 0.05
    assert max(scores[i] for i in features if not informative[i]) < 0.05
    # top_k cuts the same ranking
    assert feature_influence(head, x, y, top_k=4) == ranking[:4]


def test_weight_activation_is_fast_and_agrees_on_the_strongest_features(planted):
    data, informative = planted
    head, mask = _planted_head(data, informative)
    ranking = feature_influence(head, data.x_val, data.y_val, method="weight_activation", top_k=None)
    assert len(ranking) == mask.sum()
    assert set(i for i, _ in ranking[:2]) == set(np.argsort(-_fisher_ratio(data))[:2].tolist())
    assert all(score >= 0 for _, score in ranking)
    weights = influence_weights(ranking, data.n_features)
    assert weights.shape == (data.n_features,) and np.all(weights[~mask] == 0)
    with pytest.raises(ValueError, match="method"):
        feature_influence(head, data.x_val, data.y_val, method="shap")
    with pytest.raises(ValueError, match="top_k"):
        feature_influence(head, data.x_val, data.y_val, top_k=0)
    with pytest.raises(ValueError, match="features have shape"):
        feature_influence(head, data.x_val[:, :5], data.y_val)


def test_neuron_occlusion_matches_zeroing_the_full_model(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (12,))
    genome = np.ones(12, int)
    genome[[1, 5, 6]] = 0
    head = HeadTrainer(spec, data, TrainConfig(epochs=10, learning_rate=0.02), seed=2).train(
        [NeuronPruning(spec).decode(genome)]
    )[0]
    ranking = neuron_influence(head, data.x_val, data.y_val, top_k=None)
    assert sorted(i for i, _ in ranking) == np.flatnonzero(genome).tolist()  # pruned neurons are not listed
    kernels, biases = head.full_weights()
    hidden = np.maximum(data.x_val @ kernels[0], 0)
    base = ((hidden @ kernels[1] + biases[1]).argmax(1) == data.y_val).mean()
    for neuron, drop in ranking:
        occluded = hidden.copy()
        occluded[:, neuron] = 0
        accuracy = ((occluded @ kernels[1] + biases[1]).argmax(1) == data.y_val).mean()
        assert drop == pytest.approx(base - accuracy, abs=1e-9)
    assert len(neuron_influence(head, data.x_val, data.y_val, method="weight_activation", top_k=3)) == 3
    with pytest.raises(ValueError, match="layer=1"):
        neuron_influence(head, data.x_val, data.y_val, layer=1)


def test_explanation_weights_linearise_the_active_path(planted):
    data, informative = planted
    head, mask = _planted_head(data, informative)
    kernels, _ = head.full_weights()
    effective = kernels[0] @ kernels[1]
    np.testing.assert_allclose(explanation_weights(head), np.linalg.norm(effective, axis=1), rtol=1e-5, atol=1e-6)
    per_class = explanation_weights(head, 1)
    np.testing.assert_allclose(per_class, effective[:, 1] - effective.mean(axis=1), rtol=1e-5, atol=1e-6)
    gated = explanation_weights(head, 1, x=data.x_val)
    assert np.all(gated[~mask] == 0) and np.all(per_class[~mask] == 0)
    assert not np.allclose(gated, per_class)
    with pytest.raises(ValueError, match="class_index=3"):
        explanation_weights(head, 3)


# ------------------------------------------------------------------ Keras backbones

SIZE = 96  # MobileNet downsamples 32x: a 3x3 feature map


@pytest.fixture(scope="module")
def backbone():
    pytest.importorskip("keras")
    from evoprune_tf.backbones import build_backbone

    return build_backbone("MobileNet", weights=None, image_size=SIZE, alpha=0.25)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(6, SIZE, SIZE, 3), dtype=np.uint8)


def test_feature_maps_average_to_the_pooled_features(backbone, images):
    maps = feature_maps(backbone, images)
    assert maps.shape == (6, 3, 3, 256)
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
    keras = pytest.importorskip("keras")
    bare = keras.applications.MobileNet(
        alpha=0.25, weights=None, input_shape=(SIZE, SIZE, 3), include_top=False, pooling="avg"
    )
    x = images.astype(np.float32) / 127.5 - 1.0
    maps = feature_maps(bare, x)
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), np.asarray(bare(x, training=False)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        feature_maps(flat, np.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize("plots_module", ["project", "fallback"])
def test_save_explanations_writes_one_figure_per_class(backbone, images, tmp_path, monkeypatch, plots_module):
    if plots_module == "fallback":  # the private matplotlib overlay, used when evoprune_tf.report.plots is absent
        monkeypatch.setitem(sys.modules, "evoprune_tf.report.plots", None)
    rng = np.random.default_rng(0)
    features = np.asarray(backbone(images.astype(np.float32), training=False))
    labels = np.array([0, 0, 1, 1, 2, 1])
    x = np.concatenate([features, features + rng.normal(0, 0.01, features.shape).astype(np.float32)])
    y = np.concatenate([labels, labels])
    data = FeatureSplits(x, y, x, y, x[:0], y[:0], class_names=("rock", "paper", "scissors"))
    spec = HeadSpec(256, 3, (8,))
    genome = (rng.random(256) < 0.5).astype(int)
    head = HeadTrainer(spec, data, TrainConfig(epochs=5), seed=0).train([FeatureSelection(spec).decode(genome)])[0]
    paths = save_explanations(backbone, head, images, labels, data.class_names, tmp_path / "cams", per_class=2)
    assert [p.name for p in paths] == [
        "explanations_00_rock.png", "explanations_01_paper.png", "explanations_02_scissors.png"
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="class names"):
        save_explanations(backbone, head, images, labels, ("a", "b"), tmp_path)
