"""Resampled fitness with every partition's heads in one trainer call equals the per-partition loop."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import make_planted_features
from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.resampling import ResampledEvaluator, partition_splits, partitions
from evoprune_tf.train import TrainConfig, make_trainer
from evoprune_tf.train.plan import RowSplit

TESTS = pathlib.Path(__file__).resolve().parent


def _data():
    # 183 pooled samples: 4 folds of unequal sizes, so partitions of several sizes meet in one call
    return make_planted_features(n_features=32, n_train=121, n_val=62, n_test=30, seed=4)[0]


def _genomes(n: int, length: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [(rng.random(length) < d).astype(np.int8) for d in np.linspace(0.25, 0.9, n - 1)]
    return out + [np.ones(length, np.int8)]  # the all-ones genome takes the full-input path


def _pair(data, cfg, method, **options):
    enc = FeatureSelection(HeadSpec(data.n_features, data.n_classes, (8,)))
    kwargs = dict(method=method, folds=4, repeats=3, val_fraction=0.25, seed=3, **options)
    return (ResampledEvaluator(enc, data, cfg, batched=True, **kwargs),
            ResampledEvaluator(enc, data, cfg, batched=False, **kwargs))


def _assert_same(batched, looped, *, exact: bool) -> None:
    for b, l in zip(batched, looped):
        assert b.accuracy == l.accuracy and b.epochs_run == l.epochs_run
        assert b.active_fraction == l.active_fraction and b.active_parameters == l.active_parameters
        if exact:
            assert b.loss == l.loss
        else:
            assert b.loss == pytest.approx(l.loss, abs=1e-5)


@pytest.mark.parametrize("method", ["cv", "repeated"])
@pytest.mark.parametrize("early_stopping", ["none", "val_loss", "train_loss"])
def test_numpy_engine_batched_equals_the_partition_loop_bit_for_bit(method, early_stopping):
    data = _data()
    cfg = TrainConfig(epochs=12, learning_rate=0.05, engine="numpy", group_size=4, bucket=4,
                      early_stopping=early_stopping, patience=1, min_delta=0.02)  # min_delta: heads do stop
    batched, looped = _pair(data, cfg, method)
    genomes = _genomes(4, data.n_features)
    got, want = batched.measure(genomes), looped.measure(genomes)
    _assert_same(got, want, exact=True)
    if method == "cv":  # partitions of different sizes were in the same call
        assert len({len(tr) for tr, _ in batched.parts}) > 1
    if early_stopping != "none":  # the stopping path ran: some head stopped before the budget
        heads = batched.pooled_trainer.train([batched.encoding.decode(genomes[-1])] * len(batched.parts),
                                             [RowSplit(tr, va) for tr, va in batched.parts])
        assert min(h.epochs_run for h in heads) < cfg.epochs


@pytest.mark.parametrize("method", ["cv", "repeated"])
def test_keras_engine_batched_equals_the_partition_loop(method):
    data = _data()
    cfg = TrainConfig(epochs=4, learning_rate=0.05, bucket=8, early_stopping="val_loss", patience=1,
                      class_weight="balanced")
    batched, looped = _pair(data, cfg, method)
    genomes = _genomes(3, data.n_features, seed=1)
    # TensorFlow trains head by head through the same compiled step: the same bits
    _assert_same(batched.measure(genomes), looped.measure(genomes), exact=True)


def test_each_head_trains_on_its_own_rows_exactly_like_a_trainer_on_those_rows():
    data = _data()
    spec = HeadSpec(data.n_features, data.n_classes, (8,))
    enc = FeatureSelection(spec)
    cfg = TrainConfig(epochs=3, engine="numpy", group_size=8, bucket=4)
    labels = np.concatenate([data.y_train, data.y_val])
    parts = partitions(labels, "cv", folds=3, seed=0)
    pooled = FeatureSplits(np.concatenate([data.x_train, data.x_val]), labels, data.x_val, data.y_val,
                           data.x_test, data.y_test, class_names=data.class_names)
    masks = [enc.decode(g) for g in _genomes(3, spec.n_features, seed=2)]
    heads = make_trainer(spec, pooled, cfg, seed=1).train([m for m in masks for _ in parts],
                                                          [RowSplit(tr, va) for _ in masks for tr, va in parts])
    for j, split in enumerate(partition_splits(data, parts)):
        alone = make_trainer(spec, split, cfg, seed=1).train(masks)
        for i, head in enumerate(alone):
            np.testing.assert_array_equal(heads[i * len(parts) + j].logits(data.x_test), head.logits(data.x_test))
    # the partitions really differ: the test could fail
    assert not np.allclose(heads[0].logits(data.x_test), heads[1].logits(data.x_test), atol=1e-4)
    with pytest.raises(ValueError, match="got 1 row splits for 2 heads"):
        make_trainer(spec, pooled, cfg, seed=1).train(masks[:2], [RowSplit(parts[0][0], parts[0][1])])


def test_same_fitness_alone_in_a_batch_and_in_any_order_and_the_counters():
    data = _data()
    cfg = TrainConfig(epochs=3, engine="numpy", group_size=4, bucket=4)
    genomes = _genomes(4, data.n_features, seed=3)
    batch = _pair(data, cfg, "cv")[0].evaluate_population(genomes)
    reverse = _pair(data, cfg, "cv")[0].evaluate_population(genomes[::-1])[::-1]
    alone = [_pair(data, cfg, "cv")[0].evaluate(g) for g in genomes]
    assert batch == reverse == alone
    evaluator, looped = _pair(data, cfg, "cv")
    evaluator.evaluate_population(genomes[:2] + genomes[:1])
    evaluator.evaluate_population(genomes)
    stats = evaluator.stats()
    assert stats["trained"] == 4 and stats["cache_hits"] == 3 and stats["heads_trained"] == 4 * 4
    assert len(evaluator.cache) == 4 and evaluator._members is None  # the loop's evaluators were never built
    assert looped.evaluate_population(genomes) == batch and looped.stats()["heads_trained"] == 4 * 4
    assert evaluator.options()["batched"] is True and looped.options()["batched"] is False


JAX_PROCESS = textwrap.dedent(
    """
    import json, os, sys, importlib.util
    spec = importlib.util.spec_from_file_location("_c", os.path.join(sys.argv[1], "conftest.py"))
    conftest = importlib.util.module_from_spec(spec); spec.loader.exec_module(conftest)
    import keras
    import numpy as np
    from evoprune_tf.encodings import FeatureSelection, HeadSpec
    from evoprune_tf.resampling import ResampledEvaluator
    from evoprune_tf.train import TrainConfig
    data = conftest.make_planted_features(n_features=32, n_train=121, n_val=62, n_test=30, seed=4)[0]
    enc = FeatureSelection(HeadSpec(32, 3, (8,)))
    genomes = [np.array(g, np.int8) for g in json.loads(sys.argv[2])]
    out = {"backend": keras.backend.backend()}
    for method in ("cv", "repeated"):
        # bucket 32: one compact shape for every genome, so few programs to compile
        cfg = TrainConfig(epochs=4, learning_rate=0.05, bucket=32, early_stopping="val_loss", patience=1)
        fits = [ResampledEvaluator(enc, data, cfg, method=method, folds=4, repeats=3, seed=3,
                                   batched=batched).measure(genomes) for batched in (True, False)]
        out[method] = [[[e.accuracy, e.loss, e.epochs_run] for e in fit] for fit in fits]
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow  # ~35 s on 2 busy cores, almost all of it XLA compiling the groups' programs
def test_keras_jax_route_batched_equals_the_partition_loop(tmp_path):
    pytest.importorskip("jax")
    genomes = _genomes(3, 32, seed=1)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore",
           "KERAS_HOME": str(tmp_path / "keras")}
    proc = subprocess.run([sys.executable, "-c", JAX_PROCESS, str(TESTS), json.dumps([g.tolist() for g in genomes])],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
    assert out["backend"] == "jax"
    for method in ("cv", "repeated"):
        batched, looped = (np.asarray(f) for f in out[method])
        np.testing.assert_array_equal(batched[:, [0, 2]], looped[:, [0, 2]])  # accuracy, epochs
        np.testing.assert_allclose(batched[:, 1], looped[:, 1], rtol=0, atol=1e-5)  # loss
