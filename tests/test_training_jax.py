"""The JAX engine: the NumPy engine's maths as one jitted, population-stacked computation."""

import os
import subprocess
import sys

import numpy as np
import pytest

from evoprune_tf.encodings import ConnectionPruning, FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.train.numpy_engine import HeadTrainer, TrainConfig

pytest.importorskip("jax")

import evoprune_tf.train.jax_engine as training_jax  # noqa: E402

# float32 everywhere; XLA may order sums differently from NumPy/OpenBLAS
TOL = dict(rtol=1e-5, atol=1e-5)


def _genomes(n, length, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random(length) < d).astype(np.int8) for d in rng.uniform(0.25, 0.9, n)]


def _logits(heads, x):
    return [h.logits(x) for h in heads]


@pytest.mark.parametrize("encoding_cls", [FeatureSelection, NeuronPruning])
def test_jax_equals_numpy_alone_in_a_batch_and_in_any_order(planted, encoding_cls):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (24,), use_bias=True)
    enc = encoding_cls(spec)
    masks = [enc.decode(g) for g in _genomes(5, enc.genome_length)]
    common = dict(epochs=3, bucket=16, group_size=4)
    reference = _logits(HeadTrainer(spec, data, TrainConfig(**common), seed=0).train(masks), data.x_val)
    jax_trainer = HeadTrainer(spec, data, TrainConfig(engine="jax", **common), seed=0)
    batch = jax_trainer.train(masks)
    reverse = jax_trainer.train(masks[::-1])[::-1]
    alone = [jax_trainer.train([m])[0] for m in masks]
    for ref, b, r, a in zip(reference, batch, reverse, alone):
        np.testing.assert_allclose(b.logits(data.x_val), ref, **TOL)
        np.testing.assert_allclose(r.logits(data.x_val), ref, **TOL)
        np.testing.assert_allclose(a.logits(data.x_val), ref, **TOL)
    # the same object layout as the NumPy engine: NumPy arrays, compact shapes
    head = batch[0]
    assert all(isinstance(k, np.ndarray) and k.dtype == np.float32 for k in head.kernels)
    assert head.kernels[0].shape == (len(head.indices[0]), len(head.indices[1]))
    assert head.epochs_run == 3


def test_padded_groups_change_nothing(planted, monkeypatch):
    """Inert padding heads (groups rounded up to a power of two, as on GPUs) do not touch real heads."""
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,))
    enc = FeatureSelection(spec)
    masks = [enc.decode(g) for g in _genomes(3, enc.genome_length, seed=5)]
    cfg = TrainConfig(epochs=2, bucket=64, group_size=3, engine="jax")
    plain = HeadTrainer(spec, data, cfg, seed=2).train(masks)
    monkeypatch.setattr(training_jax, "PAD_GROUPS", True)
    padded = HeadTrainer(spec, data, cfg, seed=2).train(masks)
    for a, b in zip(plain, padded):
        np.testing.assert_allclose(a.logits(data.x_val), b.logits(data.x_val), **TOL)


@pytest.mark.parametrize("monitor", ["val_loss", "train_loss"])
def test_early_stopping_matches_numpy(planted, monitor):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (32,))
    enc = FeatureSelection(spec)
    patience = 3 if monitor == "val_loss" else 1
    common = dict(epochs=60, learning_rate=0.05, early_stopping=monitor, patience=patience, group_size=2,
                  bucket=64, min_delta=1e-3)
    masks = [enc.decode(np.ones(64, int)), enc.decode(informative.astype(int))]
    numpy_heads = HeadTrainer(spec, data, TrainConfig(**common), seed=0).train(masks)
    jax_cfg = TrainConfig(engine="jax", **common)
    jax_heads = HeadTrainer(spec, data, jax_cfg, seed=0).train(masks)
    alone = HeadTrainer(spec, data, jax_cfg, seed=0).train(masks[:1])[0]
    assert [h.epochs_run for h in jax_heads] == [h.epochs_run for h in numpy_heads]
    assert alone.epochs_run == jax_heads[0].epochs_run
    if monitor == "val_loss":
        assert all(h.epochs_run < 60 for h in jax_heads)
        assert jax_heads[0].epochs_run != jax_heads[1].epochs_run  # stopped independently
    for a, b in zip(numpy_heads, jax_heads):
        np.testing.assert_allclose(b.logits(data.x_val), a.logits(data.x_val), rtol=1e-4, atol=1e-4)


def test_connection_pruning_keeps_pruned_weights_zero(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (8,))
    enc = ConnectionPruning(spec, layer=0)
    genomes = _genomes(2, enc.genome_length, seed=4)
    cfg = TrainConfig(epochs=2, group_size=2, engine="jax")
    heads = HeadTrainer(spec, data, cfg, seed=0).train([enc.decode(g) for g in genomes])
    reference = HeadTrainer(spec, data, TrainConfig(epochs=2, group_size=2), seed=0).train(
        [enc.decode(g) for g in genomes])
    for genome, head, ref in zip(genomes, heads, reference):
        kernels, _ = head.full_weights()
        mask = enc.kernel_masks(genome)[0]
        assert np.all(kernels[0][mask == 0] == 0)
        assert np.any(kernels[0][mask == 1] != 0)
        np.testing.assert_allclose(head.logits(data.x_val), ref.logits(data.x_val), **TOL)


def test_missing_jax_is_a_one_line_import_error(planted, monkeypatch):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (8,))
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` now raises ImportError
    training_jax._import_jax.cache_clear()
    try:
        assert not training_jax.jax_available()
        with pytest.raises(ImportError, match=r"pip install jax") as info:
            HeadTrainer(spec, data, TrainConfig(epochs=1, engine="jax"), seed=0).train([spec.all_active()])
        assert "\n" not in str(info.value)
    finally:
        monkeypatch.undo()
        training_jax._import_jax.cache_clear()
    assert training_jax.jax_available()


def test_module_import_does_not_import_jax():
    code = "import sys, evoprune_tf.train.jax_engine; assert 'jax' not in sys.modules, 'jax imported'"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
