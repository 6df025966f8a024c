"""The NumPy head trainer: same maths as Keras, cost follows sparsity, deterministic."""

import numpy as np
import pytest

from evoprune_tf.encodings import ConnectionPruning, FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.train.numpy_engine import HeadTrainer, TrainConfig, derive_seed, training_flops


def _random_genomes(n, length, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random(length) < rng.uniform(0.2, 0.9)).astype(np.int8) for _ in range(n)]


def test_matches_keras_sgd_nesterov_on_the_same_batches(planted):
    """Our hand-written backprop equals a Keras model trained with SGD(nesterov) step for step."""
    import keras

    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (16,), use_bias=True)
    cfg = TrainConfig(epochs=2, batch_size=32, learning_rate=0.05)
    trainer = HeadTrainer(spec, data, cfg, seed=3)
    head = trainer.train([spec.all_active()])[0]

    inputs = keras.Input((spec.n_features,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    model.set_weights([w for pair in trainer._init for w in pair])
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    order = np.random.default_rng(derive_seed(3, "batches"))
    for _ in range(cfg.epochs):
        perm = order.permutation(len(data.y_train))
        model.fit(data.x_train[perm], data.y_train[perm], batch_size=32, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(head.logits(data.x_val), model.predict(data.x_val, verbose=0), atol=2e-4)


@pytest.mark.parametrize("encoding_cls", [FeatureSelection, NeuronPruning])
def test_same_result_alone_in_a_batch_and_in_any_order(planted, encoding_cls):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (24,))
    enc = encoding_cls(spec)
    genomes = _random_genomes(6, enc.genome_length)
    cfg = TrainConfig(epochs=3, bucket=8, group_size=4)
    trainer = HeadTrainer(spec, data, cfg, seed=0)
    alone = [trainer.train([enc.decode(g)])[0].logits(data.x_val) for g in genomes]
    batch = trainer.train([enc.decode(g) for g in genomes])
    reverse = trainer.train([enc.decode(g) for g in genomes[::-1]])[::-1]
    for a, b, c in zip(alone, batch, reverse):
        np.testing.assert_array_equal(a, b.logits(data.x_val))
        np.testing.assert_array_equal(a, c.logits(data.x_val))
    # exact shapes (bucket 1, one head at a time) agree with padded groups to float rounding
    exact = HeadTrainer(spec, data, TrainConfig(epochs=3), seed=0).train([enc.decode(genomes[0])])[0]
    np.testing.assert_allclose(exact.logits(data.x_val), alone[0], atol=1e-5)


def test_pruned_connections_stay_zero_and_full_weights_round_trip(planted):
    data, _ = planted
    spec = HeadSpec(data.n_features, data.n_classes, (8,))
    enc = ConnectionPruning(spec, layer=0)
    genome = _random_genomes(1, enc.genome_length, seed=4)[0]
    head = HeadTrainer(spec, data, TrainConfig(epochs=2), seed=0).train([enc.decode(genome)])[0]
    kernels, biases = head.full_weights()
    mask = enc.kernel_masks(genome)[0]
    assert np.all(kernels[0][mask == 0] == 0)
    assert np.any(kernels[0][mask == 1] != 0)
    # the full-size weights reproduce the compact head's logits
    hidden = np.maximum(data.x_val @ kernels[0], 0)
    np.testing.assert_allclose(hidden @ kernels[1] + biases[1], head.logits(data.x_val), atol=1e-4)


def test_padding_is_inert(planted):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (10,))
    masks = FeatureSelection(spec).decode(informative.astype(int))
    plain = HeadTrainer(spec, data, TrainConfig(epochs=3), seed=1).train([masks])[0]
    padded = HeadTrainer(spec, data, TrainConfig(epochs=3, bucket=16), seed=1).train([masks])[0]
    assert len(padded.indices[0]) == 16 and len(plain.indices[0]) == informative.sum()  # bucket 0 = 1 (NumPy)
    np.testing.assert_allclose(plain.logits(data.x_val), padded.logits(data.x_val), atol=1e-5)


def test_early_stopping_on_validation_loss_stops_heads_independently(planted):
    data, informative = planted
    spec = HeadSpec(data.n_features, data.n_classes, (32,))
    enc = FeatureSelection(spec)
    cfg = TrainConfig(epochs=200, learning_rate=0.05, early_stopping="val_loss", patience=3, group_size=2)
    heads = HeadTrainer(spec, data, cfg, seed=0).train([enc.decode(np.ones(64, int)), enc.decode(informative.astype(int))])
    assert all(h.epochs_run < 200 for h in heads)
    alone = HeadTrainer(spec, data, cfg, seed=0).train([enc.decode(np.ones(64, int))])[0]
    assert alone.epochs_run == heads[0].epochs_run


def test_reference_recipe_and_config_errors():
    ref = TrainConfig.reference()
    assert (ref.epochs, ref.early_stopping, ref.patience, ref.batch_size) == (600, "train_loss", 10, 32)
    with pytest.raises(ValueError, match=r"train.epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"early_stopping='sometimes'"):
        TrainConfig(early_stopping="sometimes")


def test_training_flops_follow_active_units():
    spec = HeadSpec(100, 3, (50,))
    enc = FeatureSelection(spec)
    full = training_flops(spec.all_active(), 10, 1)
    genome = np.zeros(100, int)
    genome[:20] = 1
    assert training_flops(enc.decode(genome), 10, 1) == pytest.approx(10 * (4 * 20 * 50 + 6 * 50 * 3))
    assert full == pytest.approx(10 * (4 * 100 * 50 + 6 * 50 * 3))
