"""The Keras engine: Keras models, optimizers and losses; population-batched; reproducible."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import head_builders
from evoprune_tf.encodings import FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.train import TrainConfig, make_trainer
from evoprune_tf.train.keras_engine import KerasTrainer

TESTS = pathlib.Path(__file__).resolve().parent


def _genomes(n, length, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random(length) < d).astype(np.int8) for d in rng.uniform(0.3, 0.9, n)]


@pytest.mark.parametrize("optimizer", ["sgd", {"name": "adam", "learning_rate": 0.01}])
def test_population_path_equals_a_lone_plain_keras_model(planted, optimizer):
    """Head 0 of a batched group trains exactly like a plain Keras Dense model with the same optimizer."""
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,), use_bias=True)
    enc = FeatureSelection(spec)
    cfg = TrainConfig(epochs=2, batch_size=32, learning_rate=0.05, optimizer=optimizer, bucket=8, group_size=4)
    trainer = KerasTrainer(spec, data, cfg, seed=3)
    heads = trainer.train([enc.decode(np.ones(64, int))] + [enc.decode(g) for g in _genomes(2, 64)])

    reference = head_builders.lone_keras_logits(spec, data, cfg, trainer._init, seed=3)
    np.testing.assert_allclose(heads[0].logits(data.x_val), reference, atol=1e-5)


def test_user_head_with_dropout_adam_and_l2_trains(planted):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (24,))
    enc = FeatureSelection(spec)
    cfg = TrainConfig(epochs=15, optimizer={"name": "adam", "learning_rate": 0.01}, head="head_builders:dropout_head",
                      class_weight="balanced", label_smoothing=0.1)
    ev = PopulationEvaluator(enc, data, cfg, seed=0)
    good, bad = ev.measure([informative.astype(int), (~informative).astype(int)])
    assert good.accuracy > 0.8 and good.accuracy > bad.accuracy
    head = ev.train_heads([informative.astype(int)])[0]
    assert head.keras_logits is None  # ReLU + dropout + softmax: the NumPy forward reproduces it
    # a head whose layers NumPy cannot reproduce scores through its trained Keras model
    odd = PopulationEvaluator(enc, data, TrainConfig(epochs=5, head=head_builders.tanh_head, dropout=0.0), seed=0)
    head = odd.train_heads([informative.astype(int)])[0]
    assert head.keras_logits is not None and np.isfinite(head.logits(data.x_val)).all()
    # its fitness is the validation accuracy of those Keras logits, and the planted signal is learned
    accuracy = odd.evaluate(informative.astype(int))[0]
    assert accuracy == pytest.approx(float(np.mean(head.logits(data.x_val).argmax(axis=1) == data.y_val)))
    assert accuracy > 1 / data.n_classes + 0.2


def test_default_head_dropout_and_l2_change_training(planted):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    masks = [FeatureSelection(spec).decode(informative.astype(int))]
    plain = make_trainer(spec, data, TrainConfig(epochs=3), seed=0).train(masks)[0].logits(data.x_val)
    reg = make_trainer(spec, data, TrainConfig(epochs=3, dropout=0.3, l2=0.01), seed=0).train(masks)[0]
    again = make_trainer(spec, data, TrainConfig(epochs=3, dropout=0.3, l2=0.01), seed=0).train(masks)[0]
    assert not np.allclose(plain, reg.logits(data.x_val), atol=1e-4)
    np.testing.assert_array_equal(reg.logits(data.x_val), again.logits(data.x_val))


@pytest.mark.parametrize("encoding_cls", [FeatureSelection, NeuronPruning])
def test_same_fitness_alone_batched_and_in_any_order(planted, encoding_cls):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (24,))
    enc = encoding_cls(spec)
    genomes = _genomes(5, enc.genome_length, seed=1)
    cfg = TrainConfig(epochs=3, bucket=8)
    batch = PopulationEvaluator(enc, data, cfg, seed=2).evaluate_population(genomes)
    reverse = PopulationEvaluator(enc, data, cfg, seed=2).evaluate_population(genomes[::-1])[::-1]
    alone = [PopulationEvaluator(enc, data, cfg, seed=2).evaluate(g) for g in genomes]
    for a, b, c in zip(alone, batch, reverse):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=1e-5)
    # the NumPy engine (same initial weights and batch order) agrees
    numpy_fit = PopulationEvaluator(enc, data, TrainConfig(epochs=3, bucket=8, engine="numpy"), seed=2)
    np.testing.assert_allclose(numpy_fit.evaluate_population(genomes), batch, atol=1e-5)


OTHER_PROCESS = textwrap.dedent(
    """
    import json, os, sys, importlib.util
    spec = importlib.util.spec_from_file_location("_c", os.path.join(sys.argv[1], "conftest.py"))
    conftest = importlib.util.module_from_spec(spec); spec.loader.exec_module(conftest)
    import numpy as np
    from evoprune_tf.encodings import HeadSpec, FeatureSelection
    from evoprune_tf.evaluation import PopulationEvaluator
    from evoprune_tf.train import TrainConfig
    import keras
    data, _ = conftest.make_planted_features()
    enc = FeatureSelection(HeadSpec(64, 3, (24,)))
    genomes = [np.array(g) for g in json.loads(sys.argv[2])]
    cfg = TrainConfig(epochs=3, bucket=8, group_size=int(sys.argv[3]), early_stopping=sys.argv[4], patience=1)
    fit = PopulationEvaluator(enc, data, cfg, seed=2).evaluate_population(genomes)
    print("RESULT " + json.dumps({"backend": keras.backend.backend(), "fitness": fit}))
    """
)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_same_fitness_in_another_process_and_on_either_backend(planted, backend, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    data, _ = planted
    enc = FeatureSelection(HeadSpec(64, 3, (24,)))
    genomes = _genomes(4, 64, seed=1)
    here = PopulationEvaluator(enc, data, TrainConfig(epochs=3, bucket=8), seed=2).evaluate_population(genomes)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore",
           "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(tmp_path / "keras")}
    args = [json.dumps([g.tolist() for g in genomes]), "4", "none"]
    proc = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(TESTS), *args], capture_output=True, text=True,
                          env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
    assert out["backend"] == backend
    np.testing.assert_allclose(out["fitness"], here, atol=1e-5)


def test_val_loss_early_stopping_restores_the_best_weights(planted):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (32,))
    enc = FeatureSelection(spec)
    patience = 2
    cfg = TrainConfig(epochs=60, learning_rate=0.05, early_stopping="val_loss", patience=patience)
    masks = [enc.decode(np.ones(64, int)), enc.decode(informative.astype(int))]
    heads = make_trainer(spec, data, cfg, seed=0).train(masks)
    assert heads[0].epochs_run < 60
    alone = make_trainer(spec, data, cfg, seed=0).train(masks[:1])[0]
    assert alone.epochs_run == heads[0].epochs_run
    np.testing.assert_allclose(alone.logits(data.x_val), heads[0].logits(data.x_val), atol=1e-5)
    # the returned weights are those of the best epoch (patience epochs before the stop)
    best_epochs = heads[0].epochs_run - patience
    fixed = make_trainer(spec, data, TrainConfig(epochs=best_epochs, learning_rate=0.05), seed=0).train(masks[:1])[0]
    np.testing.assert_allclose(heads[0].logits(data.x_val), fixed.logits(data.x_val), atol=1e-5)


def test_min_delta_counts_only_decreases_at_least_that_large(planted):
    """A huge ``min_delta``: no epoch improves enough, so training stops after ``patience`` epochs, as on NumPy."""
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    enc = FeatureSelection(spec)
    cfg = TrainConfig(epochs=30, learning_rate=0.05, early_stopping="val_loss", patience=2, min_delta=10.0)
    masks = [enc.decode(np.ones(64, int))]
    keras_head = make_trainer(spec, data, cfg, seed=0).train(masks)[0]
    numpy_head = make_trainer(spec, data, dataclasses.replace(cfg, engine="numpy"), seed=0).train(masks)[0]
    assert keras_head.epochs_run == numpy_head.epochs_run == 3  # the first epoch sets the best, two more fail


def test_bad_input_is_a_one_line_value_error(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (8,))
    cases = [
        (dict(optimizer="adamm"), "train.optimizer='adamm' is not a Keras optimizer"),
        (dict(optimizer={"name": "adam", "betta": 0.9}), "train.optimizer="),
        (dict(loss="cross_entropyy"), "train.loss='cross_entropyy' is not a Keras loss"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            TrainConfig(**kwargs)
        assert "\n" not in str(info.value)
    for builder, message in [(head_builders.no_masked_head, "no MaskedDense layer"),
                             (head_builders.wrong_width_head, "input width 65; expected one input of width 64"),
                             ("head_builders:missing", "cannot be imported")]:
        with pytest.raises(ValueError, match=message) as info:
            make_trainer(spec, data, TrainConfig(head=builder), seed=0)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="engine='numpy' trains the default head"):
        TrainConfig(engine="numpy", dropout=0.2)
    with pytest.raises(ValueError, match="features have width 64; the head expects 10"):
        make_trainer(HeadSpec(10, 3, (4,)), data, TrainConfig(), seed=0)


@pytest.mark.parametrize("route", ["per_head", "stacked"])
@pytest.mark.parametrize("optimizer", ["sgd", {"name": "adam", "learning_rate": 0.01}])
def test_skipping_the_mask_multiply_of_padded_builtin_heads_changes_nothing(planted, monkeypatch, route, optimizer):
    """`MaskedDense.kernel_premasked` on compact built-in heads: bitwise the heads of the multiplied masks."""
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (24, 12), use_bias=True)
    enc = NeuronPruning(spec)
    genomes = _genomes(3, enc.genome_length, seed=4)  # widths padded to the bucket: the masks mark padding
    cfg = TrainConfig(epochs=3, learning_rate=0.05, optimizer=optimizer, dropout=0.2, l2=0.01, bucket=8, group_size=4)

    def train(premasked: bool):
        trainer = KerasTrainer(spec, data, cfg, seed=5)
        trainer.tf_route = route
        if not premasked:
            original = KerasTrainer._compiled

            def multiplied(self, plan):
                entry = original(self, plan)
                for layer in entry.layers:
                    layer.kernel_premasked = False
                return entry

            monkeypatch.setattr(KerasTrainer, "_compiled", multiplied)
        heads = trainer.train([enc.decode(g) for g in genomes])
        monkeypatch.undo()
        flags = {layer.kernel_premasked for entry in trainer._cache.values() for layer in entry.layers}
        return heads, flags

    skipped, on = train(True)
    multiplied, off = train(False)
    assert on == {True} and off == {False}
    assert all(head.kernels[0].shape[1] % 8 == 0 for head in skipped)
    for a, b in zip(skipped, multiplied):
        for ka, kb in zip(a.kernels + a.biases, b.kernels + b.biases):
            np.testing.assert_array_equal(ka, kb)


def test_heads_with_connection_masks_or_user_builders_keep_the_mask_multiply(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    from evoprune_tf.encodings import make_encoding

    conn = make_encoding("connection_pruning", spec)
    for enc, cfg in ((conn, TrainConfig(epochs=1)),
                     (FeatureSelection(spec), TrainConfig(epochs=1, head="head_builders:dropout_head"))):
        trainer = KerasTrainer(spec, data, cfg, seed=0)
        trainer.train([enc.decode(_genomes(1, enc.genome_length)[0])])
        assert {layer.kernel_premasked for e in trainer._cache.values() for layer in e.layers} == {False}
