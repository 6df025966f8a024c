"""Soft-vote ensembles of pruned heads vs the best single member."""

import json

import numpy as np
import pytest

from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.report.ensembles import evaluate_ensembles, soft_vote
from evoprune_tf.metrics import accuracy_and_loss
from evoprune_tf.train.numpy_engine import HeadTrainer, TrainConfig

CONFIG = TrainConfig(epochs=15, learning_rate=0.01, engine="numpy")


def _heads(data, masks, seeds):
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    enc = FeatureSelection(spec)
    heads = []
    for mask, seed in zip(masks, seeds):
        heads += HeadTrainer(spec, data, CONFIG, seed=seed).train([enc.decode(mask.astype(int))])
    return heads


def _scores(heads, data):
    out = []
    for head in heads:
        accuracy, loss = accuracy_and_loss(head.logits(data.x_val), data.y_val)
        out.append({"accuracy": accuracy, "loss": loss})
    return out


def _ood(data, informative, n=80, seed=1):
    rng = np.random.default_rng(seed)
    ood = rng.normal(0, 3.0, size=(n, data.n_features)).astype(np.float32)
    ood[:, informative] = rng.normal(0, 0.3, size=(n, informative.sum()))
    return ood


def _by_hand(heads, data, ood, temperature=1000.0):
    """Soft-vote test accuracy and max-softmax OOD AUROC, with SciPy's softmax and scikit-learn's AUROC."""
    from scipy.special import softmax
    from sklearn.metrics import roc_auc_score

    def vote(x, t):
        return np.mean([softmax(np.asarray(h.logits(x), np.float64) / t, axis=1) for h in heads], axis=0)

    accuracy = float(np.mean(vote(data.x_test, 1.0).argmax(axis=1) == data.y_test))
    scores = np.concatenate([vote(data.x_test, temperature).max(axis=1), vote(ood, temperature).max(axis=1)])
    labels = np.concatenate([np.ones(len(data.x_test)), np.zeros(len(ood))])
    return accuracy, float(roc_auc_score(labels, scores))


def test_soft_vote_of_identical_heads_is_the_head(planted):
    data, informative = planted
    head = _heads(data, [informative], [0])[0]
    np.testing.assert_allclose(soft_vote([head, head, head], data.x_val), head.predict_proba(data.x_val), atol=1e-6)
    hot = soft_vote([head], data.x_val, temperature=1000.0)
    np.testing.assert_allclose(hot, head.predict_proba(data.x_val, temperature=1000.0), atol=1e-6)
    np.testing.assert_allclose(hot.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="empty"):
        soft_vote([], data.x_val)
    with pytest.raises(ValueError, match="temperature"):
        soft_vote([head], data.x_val, temperature=0.0)


def test_evaluate_ensembles_reports_members_and_bands(planted):
    data, informative = planted
    rng = np.random.default_rng(0)
    # differently pruned members: the informative features plus a few random noise features
    masks = [informative | (rng.random(data.n_features) < p) for p in (0.05, 0.1, 0.2, 0.4, 0.8)]
    heads = _heads(data, masks, seeds=range(5))
    scores = _scores(heads, data)
    report = evaluate_ensembles(heads, scores, data, _ood(data, informative), band=0.02)
    json.dumps(report)  # JSON-able
    assert report["n_members"] == 5 and report["split"] == "test"
    assert set(report) >= {"best_single", "all", "banded", "members"}
    best_val = max(s["accuracy"] for s in scores)
    assert report["best_single"]["val_accuracy"] == best_val
    assert report["all"]["n_members"] == 5 and report["all"]["members"] == [0, 1, 2, 3, 4]
    expected_band = [i for i, s in enumerate(scores) if s["accuracy"] >= best_val - 0.02]
    assert report["banded"]["members"] == expected_band
    assert report["banded"]["n_members"] == len(expected_band)
    assert report["best_single"]["members"][0] in expected_band
    ood = _ood(data, informative)
    for key in ("best_single", "all", "banded"):
        expected_acc, expected_auroc = _by_hand([heads[i] for i in report[key]["members"]], data, ood)
        assert report[key]["accuracy"] == pytest.approx(expected_acc, abs=1e-12), key
        assert report[key]["auroc"] == pytest.approx(expected_auroc, abs=1e-9), key
    # the planted signal: every ensemble is far above chance (1/3) and detects the OOD points
    assert report["all"]["accuracy"] > 0.6 and report["all"]["auroc"] > 0.7
    assert [m["index"] for m in report["members"]] == list(range(5))
    # the best single member's test accuracy is its own, not an ensemble's
    assert report["best_single"]["accuracy"] == report["members"][report["best_single"]["members"][0]]["accuracy"]
    # band 0 keeps only the members tied with the best; a huge band keeps them all
    assert evaluate_ensembles(heads, scores, data, None, band=1.0)["banded"]["n_members"] == 5
    no_ood = evaluate_ensembles(heads, scores, data, None, band=0.0)
    assert no_ood["all"]["auroc"] is None and no_ood["banded"]["n_members"] >= 1


def test_ensemble_of_seeds_is_at_least_as_accurate_as_its_worst_member(planted):
    data, informative = planted
    masks = [np.ones(data.n_features, bool)] * 4  # unpruned heads overfit the noise differently per seed
    heads = _heads(data, masks, seeds=[10, 11, 12, 13])
    report = evaluate_ensembles(heads, _scores(heads, data), data, _ood(data, informative))
    worst = min(m["accuracy"] for m in report["members"])
    assert report["all"]["accuracy"] >= worst
    assert report["banded"]["accuracy"] >= min(report["members"][i]["accuracy"] for i in report["banded"]["members"])


def test_invalid_arguments_name_the_problem(planted):
    data, informative = planted
    heads = _heads(data, [informative], [0])
    scores = _scores(heads, data)
    with pytest.raises(ValueError, match="one per head"):
        evaluate_ensembles(heads, scores * 2, data, None)
    with pytest.raises(ValueError, match="'accuracy'"):
        evaluate_ensembles(heads, [{"loss": 1.0}], data, None)
    with pytest.raises(ValueError, match="band"):
        evaluate_ensembles(heads, scores, data, None, band=-0.1)
    with pytest.raises(ValueError, match="ood has shape"):
        evaluate_ensembles(heads, scores, data, np.zeros((5, 3)))
    val = evaluate_ensembles(heads, scores, data, None, split="val")
    assert val["best_single"]["accuracy"] == pytest.approx(scores[0]["accuracy"])
