"""FilterEvaluator: prefix cache, physical surgery per genome, FLOPs, cache hits, purity, bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning
from evoprune_tf.methods.deep_pruning_es.evaluation import FilterEvaluator, validate_filter_objectives
from evoprune_tf.nn.flops import count_flops
from evoprune_tf.nn.surgery import expected_param_count, prune_filters
from evoprune_tf.train.config import TrainConfig

L = keras.layers


@pytest.fixture(scope="module")
def network():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg",
                                          alpha=0.35)
    return keras.Model(base.input, L.Dense(3, activation="softmax", name="predictions")(base.output))


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 48), ("val", 24), ("test", 12)):
        y = rng.integers(0, 3, n)
        x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32) + y[:, None, None, None].astype(np.float32)
        out[split] = (x, y)
    return out


@pytest.fixture(scope="module")
def evaluator(network, splits, tmp_path_factory):
    enc = FilterPruning(network, 2)
    return FilterEvaluator(enc, splits, TrainConfig(epochs=1, batch_size=16), seed=5,
                           cache_dir=tmp_path_factory.mktemp("acts"), cache_key="tiny-mobilenet")


def genome(enc, density, seed):
    return (np.random.default_rng(seed).random(enc.genome_length) < density).astype(np.int8)


def test_prefix_runs_once_and_is_cached_on_disk(evaluator, network, splits):
    x, y = evaluator.activations["train"]
    assert x.shape[0] == 48 and x.shape[1:] == tuple(evaluator.suffix.inputs[0].shape[1:])
    assert np.array_equal(y, splits["train"][1])
    expected = keras.ops.convert_to_numpy(evaluator.prefix(splits["train"][0][:4], training=False))
    np.testing.assert_allclose(x[:4], expected, rtol=1e-5, atol=1e-5)
    assert not evaluator.activations_from_disk
    again = FilterEvaluator(evaluator.encoding, splits, TrainConfig(epochs=1), seed=5,
                            cache_dir=evaluator.cache_dir, cache_key="tiny-mobilenet")
    assert again.activations_from_disk and again.prefix_seconds == 0.0
    np.testing.assert_array_equal(again.activations["val"][0], evaluator.activations["val"][0])


def test_flops_and_params_follow_the_surgered_model(evaluator, network):
    enc = evaluator.encoding
    base = evaluator.evaluate(enc.unpruned())
    assert base[1] == pytest.approx(1.0)
    g = genome(enc, 0.5, 1)
    error, flops = evaluator.evaluate(g)
    record = evaluator.lookup(g)
    keep = enc.decode(g)
    pruned = prune_filters(evaluator.suffix, keep)
    assert record.flops == count_flops(pruned).flops
    assert record.params == expected_param_count(evaluator.suffix, keep) == pruned.count_params()
    assert flops == pytest.approx(record.flops / count_flops(evaluator.suffix).flops) and flops < 0.6
    # whole network: frozen prefix + pruned suffix == the whole model pruned the same way
    assert record.network_flops == count_flops(prune_filters(network, keep)).flops
    assert 0.0 <= error <= 1.0 and record.error == pytest.approx(1 - record.accuracy)
    assert record.kept_filters == sum(int(m.sum()) for m in keep.values())


def test_cache_hits_repairs_and_map(evaluator):
    enc = evaluator.encoding
    g = genome(enc, 0.7, 2)
    z = genome(enc, 0.7, 3)
    z[enc.offsets[1]:enc.offsets[1] + enc.sizes[1]] = 0  # block_16_project all off: repaired
    trained, hits, repairs = evaluator.n_trained, evaluator.n_cache_hits, evaluator.n_repairs
    first = evaluator.evaluate_population([g, g, z])
    assert evaluator.n_trained == trained + 2 and evaluator.n_cache_hits == hits + 1
    assert evaluator.n_repairs == repairs + 1 and evaluator.lookup(z).repairs == 1
    assert evaluator.map(evaluator.evaluate, [g]) == [first[0]]
    assert evaluator.n_trained == trained + 2 and evaluator.n_cache_hits == hits + 2
    stats = evaluator.stats()
    assert stats["cache_hits"] == evaluator.n_cache_hits and stats["rss_mb"] > 0
    assert evaluator.weights == (-1.0, -1.0)


def test_fitness_is_a_pure_function_of_genome_and_seed(evaluator, splits):
    enc = evaluator.encoding
    g = genome(enc, 0.8, 4)
    fresh = FilterEvaluator(enc, splits, TrainConfig(epochs=1, batch_size=16), seed=5)
    assert fresh.evaluate(g) == pytest.approx(evaluator.evaluate(g), abs=1e-9)
    loss_a = fresh.lookup(g).loss
    # Another seed reads the activations from the module evaluator's disk cache (the fresh one computes its own).
    other = FilterEvaluator(enc, splits, TrainConfig(epochs=1, batch_size=16), seed=6,
                            cache_dir=evaluator.cache_dir, cache_key="tiny-mobilenet")
    assert other.activations_from_disk
    other.evaluate(g)
    assert other.lookup(g).loss != loss_a  # another seed, another fine-tune


def test_evaluations_leave_no_traced_graph_behind(evaluator):
    """Each fine-tune traces its own train step; none may outlive its evaluation (flat RSS, issue 24)."""
    import gc

    from evoprune_tf.train.tf_registry import custom_gradient_count

    def live_graphs():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o).__name__ == "FuncGraph")

    enc = evaluator.encoding
    evaluator.evaluate(genome(enc, 0.55, 20))  # warm-up
    graphs, registered = live_graphs(), custom_gradient_count()
    evaluator.evaluate(genome(enc, 0.55, 21))  # one more evaluation: a leak shows after one
    assert live_graphs() == graphs  # the old code kept 2 graphs (~10 MB) per evaluation
    assert custom_gradient_count() == registered


def test_fine_tune_trains_a_pruned_copy(evaluator):
    enc = evaluator.encoding
    keep = enc.decode(genome(enc, 0.6, 7))
    untrained = evaluator.fine_tune(keep, epochs=0, seed=1)
    trained = evaluator.fine_tune(keep, epochs=1, seed=1)
    a = untrained.get_layer("predictions").get_weights()
    b = trained.get_layer("predictions").get_weights()
    assert a[0].shape == b[0].shape and a[0].shape[0] == keep["Conv_1"].sum()
    # Random-weight MobileNetV2 features all but vanish (BatchNorm statistics of ImageNet
    # scale): the bias is what one epoch visibly moves.
    assert not np.array_equal(a[1], b[1])
    # BatchNormalization statistics stay frozen; the suffix of the evaluator is untouched.
    bn = "block_16_expand_BN"
    np.testing.assert_array_equal(untrained.get_layer(bn).get_weights()[2], trained.get_layer(bn).get_weights()[2])
    assert evaluator.suffix.get_layer("Conv_1").filters == enc.sizes[2]


def test_bad_objectives_and_splits(evaluator, splits):
    with pytest.raises(ValueError, match="expected 'error' and at least one of"):
        validate_filter_objectives(["accuracy", "flops"])
    with pytest.raises(ValueError, match="expected 'error' and at least one of"):
        validate_filter_objectives(["error"])
    assert validate_filter_objectives(["error", "flops", "params"]) == ("error", "flops", "params")
    with pytest.raises(ValueError, match=r"splits \['val'\] are missing"):
        FilterEvaluator(evaluator.encoding, {"train": splits["train"]}, seed=0)


def test_fine_tune_optimizer_clips_gradients_unless_the_recipe_does():
    from evoprune_tf.train.keras_engine import make_optimizer

    assert make_optimizer(TrainConfig(), global_clipnorm=1.0).global_clipnorm == 1.0
    sgd = make_optimizer(TrainConfig())
    assert sgd.global_clipnorm is None and sgd.nesterov and sgd.momentum == pytest.approx(0.9)
    own = make_optimizer(TrainConfig(optimizer={"name": "sgd", "clipvalue": 0.5}), global_clipnorm=1.0)
    assert own.global_clipnorm is None and own.clipvalue == 0.5
