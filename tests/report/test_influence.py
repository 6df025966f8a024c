"""Influence rankings: feature / neuron occlusion and weight x activation on planted signal."""

import subprocess
import sys

import numpy as np
import pytest

from evoprune_tf.encodings import FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.report.influence import explanation_weights, feature_influence, influence_weights, neuron_influence
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
    # the score is mean |x_j| times the norm of feature j's outgoing weights, best first
    kernels, _ = head.full_weights()
    expected = np.abs(data.x_val).mean(axis=0) * np.linalg.norm(kernels[0], axis=1)
    for feature, score in ranking:
        assert score == pytest.approx(expected[feature], rel=1e-5)
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    weights = influence_weights(ranking, data.n_features)
    assert weights.shape == (data.n_features,) and np.all(weights[~mask] == 0)
    np.testing.assert_allclose(weights[[i for i, _ in ranking]], [s for _, s in ranking], rtol=1e-6)
    # negative scores (an occlusion that helps) give no CAM weight
    np.testing.assert_array_equal(influence_weights([(2, -0.5), (0, 0.25)], 4), [0.25, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"feature index 4 in influence; expected \[0, 3\]"):
        influence_weights([(4, 1.0)], 4)
    with pytest.raises(ValueError, match="method"):
        feature_influence(head, data.x_val, data.y_val, method="shap")
    with pytest.raises(ValueError, match="top_k"):
        feature_influence(head, data.x_val, data.y_val, top_k=0)
    with pytest.raises(ValueError, match="features have shape"):
        feature_influence(head, data.x_val[:, :5], data.y_val)
    with pytest.raises(ValueError, match="labels have shape"):
        feature_influence(head, data.x_val, data.y_val[:-1])
    with pytest.raises(ValueError, match=r"labels lie in \[9, 9\]; expected \[0, 2\]"):
        feature_influence(head, data.x_val, np.full(len(data.y_val), 9))
    with pytest.raises(ValueError, match="0 rows"):
        feature_influence(head, data.x_val[:0], data.y_val[:0])


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
    by_weight = neuron_influence(head, data.x_val, data.y_val, method="weight_activation", top_k=None)
    expected = np.abs(hidden).mean(axis=0) * np.linalg.norm(kernels[1], axis=1)
    for neuron, score in by_weight:
        assert score == pytest.approx(expected[neuron], rel=1e-5)
    assert neuron_influence(head, data.x_val, data.y_val, method="weight_activation", top_k=3) == by_weight[:3]
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


def test_influence_stays_numpy_only():
    """Rankings run on cached features: importing them must not start Keras or TensorFlow."""
    code = (
        "import sys, evoprune_tf.report.influence; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
