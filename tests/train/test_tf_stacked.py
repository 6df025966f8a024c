"""The TensorFlow population-stacked route of the Keras engine (`evoprune_tf.train.tf_stacked`)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import head_builders
from evoprune_tf.encodings import FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.train import TrainConfig
from evoprune_tf.train import keras_engine, tf_stacked
from evoprune_tf.train.keras_engine import KerasTrainer
from evoprune_tf.train.plan import RowSplit

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow route")

ADAM = {"name": "adam", "learning_rate": 0.01}


def _genomes(n, length, seed=0, low=0.3, high=0.9):
    rng = np.random.default_rng(seed)
    return [(rng.random(length) < d).astype(np.int8) for d in rng.uniform(low, high, n)]


def _trainer(spec, data, cfg, route="stacked", seed=3):
    trainer = KerasTrainer(spec, data, cfg, seed=seed)
    trainer.tf_route = route
    trainer.tf_jit_compile = True  # these heads are below JIT_MIN_WORK: force the XLA path under test
    return trainer


def _evaluator(enc, data, cfg, route="stacked"):
    ev = PopulationEvaluator(enc, data, cfg, seed=2)
    ev.trainer.tf_route = route
    ev.trainer.tf_jit_compile = True
    return ev


def _stacked_sizes(trainer):
    """The group sizes the stacked route compiled programs for (empty: it never ran)."""
    return sorted({key[1] for entry in trainer._cache.values() for key in entry.functions
                   if isinstance(key, tuple) and key[0] == "tf_stacked"})


@pytest.mark.parametrize("optimizer", ["sgd", ADAM])
def test_stacked_group_equals_the_per_head_route_and_a_lone_plain_keras_model(planted, optimizer):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,), use_bias=True)
    enc = FeatureSelection(spec)
    # bucket 64 on 64 features: every head has one compact shape, so the four train stacked
    cfg = TrainConfig(epochs=2, batch_size=32, learning_rate=0.02, optimizer=optimizer, bucket=64, group_size=4)
    masks = [enc.decode(np.ones(64, int))] + [enc.decode(g) for g in _genomes(3, 64)]
    stacked = _trainer(spec, data, cfg)
    heads = stacked.train(masks)
    assert _stacked_sizes(stacked) == [4]
    per_head = _trainer(spec, data, cfg, "per_head").train(masks)
    for a, b in zip(heads, per_head):
        np.testing.assert_allclose(a.logits(data.x_val), b.logits(data.x_val), atol=1e-5)
        assert a.epochs_run == b.epochs_run == 2

    reference = head_builders.lone_keras_logits(spec, data, cfg, stacked._init, seed=3)
    np.testing.assert_allclose(heads[0].logits(data.x_val), reference, atol=1e-5)


@pytest.mark.parametrize("encoding_cls", [FeatureSelection, NeuronPruning])
def test_same_fitness_alone_in_a_group_and_in_reverse_order(planted, encoding_cls):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (24,))
    enc = encoding_cls(spec)
    genomes = _genomes(5, enc.genome_length, seed=1, low=0.5, high=0.7)
    cfg = TrainConfig(epochs=3, bucket=16, group_size=4, l2=1e-3)
    grouped = _evaluator(enc, data, cfg)
    batch = grouped.evaluate_population(genomes)
    assert max(_stacked_sizes(grouped.trainer)) > 1  # some heads really were stacked together
    grouped.cache.clear()
    reverse = grouped.evaluate_population(genomes[::-1])[::-1]
    one_by_one = _evaluator(enc, data, cfg)
    alone = [one_by_one.evaluate(g) for g in genomes]
    assert _stacked_sizes(one_by_one.trainer) == [1]
    reference = _evaluator(enc, data, cfg, "per_head").evaluate_population(genomes)
    for a, b, c, d in zip(alone, batch, reverse, reference):
        # (measured: equal to the last bit or within 2e-8; another group size is another program)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a, c, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a, d, atol=1e-5, rtol=0)


@pytest.mark.parametrize("early_stopping, lr", [("val_loss", 0.05), ("train_loss", 0.1)])
def test_early_stopping_stops_and_restores_each_head_on_its_own(planted, early_stopping, lr):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (32,))
    enc = FeatureSelection(spec)
    patience = 2
    cfg = TrainConfig(epochs=40, learning_rate=lr, early_stopping=early_stopping, patience=patience, bucket=64,
                      group_size=2)
    masks = [enc.decode(np.ones(64, int)), enc.decode(informative.astype(int))]
    trainer = _trainer(spec, data, cfg)
    heads = trainer.train(masks)
    assert _stacked_sizes(trainer) == [2]
    runs = [h.epochs_run for h in heads]
    assert min(runs) < 40 and runs[0] != runs[1]  # both stop, at different epochs
    per_head = _trainer(spec, data, cfg, "per_head").train(masks)
    # The stacked route with XLA (the default) rounds differently from the per-head one in the
    # last bits, and so, on some CPUs (AMD EPYC), does the stacked route without XLA (batched
    # and plain matmul kernels); 13 epochs at lr 0.1 amplify that to ~8e-4 on logits up to 30,
    # so across routes the logits are compared at 2e-3 (one step is pinned to 1e-5 elsewhere).
    plain = _trainer(spec, data, cfg)
    plain.tf_jit_compile = False
    plain_heads = plain.train(masks)
    for p, mask in enumerate(masks):
        alone = _trainer(spec, data, cfg).train([mask])[0]
        assert alone.epochs_run == heads[p].epochs_run == per_head[p].epochs_run == plain_heads[p].epochs_run
        np.testing.assert_allclose(alone.logits(data.x_val), heads[p].logits(data.x_val), atol=1e-5, rtol=0)
        np.testing.assert_allclose(per_head[p].logits(data.x_val), plain_heads[p].logits(data.x_val), atol=2e-3)
    if early_stopping == "val_loss":  # each head returns its best epoch's weights, patience epochs before its stop
        for p, mask in enumerate(masks):
            fixed = TrainConfig(epochs=heads[p].epochs_run - patience, learning_rate=lr, bucket=64)
            again = _trainer(spec, data, fixed).train([mask])[0]
            np.testing.assert_allclose(heads[p].logits(data.x_val), again.logits(data.x_val), atol=1e-5)


def test_own_rows_train_like_the_per_head_route(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    enc = NeuronPruning(spec)
    cfg = TrainConfig(epochs=4, learning_rate=0.05, bucket=8, group_size=4, class_weight="balanced",
                      early_stopping="val_loss", patience=1)
    rng = np.random.default_rng(0)
    n = len(data.y_train)
    parts = [np.sort(rng.permutation(n)[: n // 2]) for _ in range(4)]
    rows = [RowSplit(tr, np.setdiff1d(np.arange(n), tr)[:60]) for tr in parts]
    masks = [enc.decode(np.ones(16, int))] * 2 + [enc.decode(g) for g in _genomes(2, 16, seed=4, low=0.9, high=1.0)]
    stacked = _trainer(spec, data, cfg)
    heads = stacked.train(masks, rows)
    assert max(_stacked_sizes(stacked)) > 1
    per_head = _trainer(spec, data, cfg, "per_head").train(masks, rows)
    for a, b in zip(heads, per_head):
        assert a.epochs_run == b.epochs_run
        np.testing.assert_allclose(a.logits(data.x_val), b.logits(data.x_val), atol=1e-5)
    # a head on its own rows equals the same head trained alone on those rows
    alone = _trainer(spec, data, cfg).train(masks[1:2], rows[1:2])[0]
    np.testing.assert_allclose(alone.logits(data.x_val), heads[1].logits(data.x_val), atol=1e-5, rtol=0)


def test_heads_that_cannot_be_stacked_fall_back_to_the_per_head_route(planted):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    enc = FeatureSelection(spec)
    masks = [enc.decode(np.ones(64, int)), enc.decode(informative.astype(int) | 1)]
    cases = {
        "dropout": TrainConfig(epochs=2, head="head_builders:dropout_head", bucket=64, group_size=2),
        "clipnorm": TrainConfig(epochs=2, optimizer={"name": "sgd", "global_clipnorm": 1.0}, bucket=64,
                                group_size=2),
        "adafactor": TrainConfig(epochs=2, optimizer="adafactor", bucket=64, group_size=2),
    }
    for name, cfg in cases.items():
        trainer = _trainer(spec, data, cfg)
        heads = trainer.train(masks)
        assert _stacked_sizes(trainer) == [], name
        assert all(np.isfinite(h.logits(data.x_val)).all() for h in heads), name
    # a chain of MaskedDense layers with a tanh hidden layer and softmax-free logits is stacked
    cfg = TrainConfig(epochs=2, head=head_builders.tanh_head, optimizer=ADAM, bucket=64, group_size=2)
    trainer = _trainer(spec, data, cfg)
    heads = trainer.train(masks)
    assert _stacked_sizes(trainer) == [2]
    per_head = _trainer(spec, data, cfg, "per_head").train(masks)
    for a, b in zip(heads, per_head):
        np.testing.assert_allclose(a.logits(data.x_val), b.logits(data.x_val), atol=1e-5)


def test_unsupported_reason_names_the_obstacle(planted):
    spec = HeadSpec(8, 3, (4,))
    model = head_builders.dropout_head(spec)
    layers = [layer for layer in model.layers if type(layer).__name__ == "MaskedDense"]
    opt = keras.optimizers.SGD()
    assert "Dropout" in tf_stacked.unsupported_reason(model, layers, opt)
    plain = head_builders.tanh_head(spec)
    plain_layers = [layer for layer in plain.layers if type(layer).__name__ == "MaskedDense"]
    assert tf_stacked.unsupported_reason(plain, plain_layers, opt) is None
    assert "norm" in tf_stacked.unsupported_reason(plain, plain_layers, keras.optimizers.Adam(clipnorm=1.0))
    assert "element-wise" in tf_stacked.unsupported_reason(plain, plain_layers, keras.optimizers.Adafactor())
    data = planted[0]
    full = HeadSpec(data.n_features, data.n_classes, (4,))
    trainer = _trainer(full, data, TrainConfig(epochs=1), route="fast")
    with pytest.raises(ValueError, match="tf_route='fast'"):
        trainer.train([FeatureSelection(full).decode(np.ones(data.n_features, int))])


def test_auto_takes_the_stacked_xla_route_only_where_xla_pays(planted):
    """The default route: a short fit of a small head trains per head; a long fit stacked, with XLA."""
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    enc = FeatureSelection(spec)
    assert keras_engine.TF_ROUTE == "auto" and tf_stacked.JIT_COMPILE == "auto"

    def keys_with(min_work: float, min_steps: int) -> list:
        trainer = KerasTrainer(spec, data, TrainConfig(epochs=2, bucket=64), seed=0)
        old = tf_stacked.JIT_MIN_WORK, tf_stacked.JIT_MIN_STEPS
        try:
            tf_stacked.JIT_MIN_WORK, tf_stacked.JIT_MIN_STEPS = min_work, min_steps
            trainer.train([enc.decode(np.ones(64, int))])
        finally:
            tf_stacked.JIT_MIN_WORK, tf_stacked.JIT_MIN_STEPS = old
        return [k for e in trainer._cache.values() for k in e.functions if isinstance(k, tuple)]

    # 2 x 300 x (64x16 + 16x3) MACs in 2 x 10 steps: per head (its own ("tf", ...) program)
    assert keys_with(tf_stacked.JIT_MIN_WORK, tf_stacked.JIT_MIN_STEPS) == [("tf", True)]
    assert keys_with(1e5, 1) == [("tf_stacked", 1, "full", False, True)]
    assert keys_with(1e5, 1000) == [("tf", True)]  # enough work, too few steps
