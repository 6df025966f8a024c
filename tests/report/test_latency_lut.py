"""The NetAdapt-style latency table: buckets, keys, lazy measurement, storage, the ``latency`` objective."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning
from evoprune_tf.methods.deep_pruning_es.evaluation import FilterEvaluator, validate_filter_objectives
from evoprune_tf.nn.surgery import prune_filters
from evoprune_tf.report.latency_lut import LatencyTable, bucket, layer_key, spearman
from evoprune_tf.train.config import TrainConfig

L = keras.layers


def test_buckets_are_four_per_octave_and_never_below_the_width():
    assert [bucket(c) for c in (1, 2, 3, 4, 5, 7, 8, 9, 11, 17, 33, 100, 1000, 1280)] == \
        [1, 2, 3, 4, 5, 7, 8, 10, 12, 20, 40, 112, 1024, 1280]
    for c in range(1, 3000):
        b = bucket(c)
        assert c <= b <= max(c, 1.25 * c + 1)
    with pytest.raises(ValueError, match="channels=0; expected a positive channel count"):
        bucket(0)


def _net(width: int = 24) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(width, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(4, name="fc")(x))


def test_keys_follow_bucketed_widths_and_skip_free_layers():
    table = LatencyTable(None, backend="keras", runs=3)
    times = table.layer_ms(_net(24))
    assert sorted(times) == ["conv", "dw", "fc"]  # batch norm and pooling are not summed
    keys = sorted(table.entries)
    assert keys[0].startswith("Conv2D|16x16|3|24|") and keys[1].startswith("Dense||24|4|")
    assert keys[2].startswith("DepthwiseConv2D|16x16|24|24|")
    # 23 filters fall in the same bucket as 24: nothing new is measured
    measured = len(table.measured)
    table.predict_ms(_net(23))
    assert len(table.measured) == measured
    table.predict_ms(_net(9))  # bucket 10: three new keys
    assert len(table.measured) == measured + 3
    assert table.predict_ms(_net(24)) == pytest.approx(sum(times.values()))


def test_nested_models_are_walked_through():
    inner = _net(16)
    inputs = keras.Input((16, 16, 3))
    outer = keras.Model(inputs, L.Dense(2, name="outer_fc")(inner(inputs)))
    table = LatencyTable(None, backend="keras", runs=3)
    assert sorted(table.layer_ms(outer)) == ["conv", "dw", "fc", "outer_fc"]


def test_the_table_is_stored_per_machine_and_reused(tmp_path):
    first = LatencyTable(tmp_path, backend="keras", runs=3)
    predicted = first.predict_ms(_net(16))
    stored = json.loads(first.path.read_text())
    assert stored["backend"] == "keras" and len(stored["entries"]) == 3
    again = LatencyTable(tmp_path, backend="keras", runs=3)
    assert again.predict_ms(_net(16)) == pytest.approx(predicted) and again.measured == []
    first.path.write_text("{torn")  # a torn file is measured again, not trusted
    assert LatencyTable(tmp_path, backend="keras", runs=3).entries == {}


def test_bad_settings_fail_in_one_line():
    with pytest.raises(ValueError, match="backend='tpu'; expected 'auto', 'litert' or 'keras'"):
        LatencyTable(None, backend="tpu")
    with pytest.raises(ValueError, match="threads=0"):
        LatencyTable(None, threads=0)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2], [1, 2])) and np.isnan(spearman([1, 1, 1], [1, 2, 3]))


class _FakeTable:
    """A table whose 'measurements' are each layer's MACs: the objective must follow them exactly."""

    backend = "fake"

    def predict_ms(self, model):
        from evoprune_tf.nn.flops import count_flops

        return float(count_flops(model).flops)


def test_latency_objective_is_the_predicted_fraction_of_the_unpruned_suffix():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg",
                                          alpha=0.35)
    network = keras.Model(base.input, L.Dense(3, activation="softmax", name="predictions")(base.output))
    rng = np.random.default_rng(0)
    splits = {s: (rng.normal(size=(n, 32, 32, 3)).astype(np.float32), rng.integers(0, 3, n))
              for s, n in (("train", 16), ("val", 8))}
    enc = FilterPruning(network, 1)
    evaluator = FilterEvaluator(enc, splits, TrainConfig(epochs=1, batch_size=8), seed=1,
                                objectives=("error", "latency"), latency_table=_FakeTable())
    assert evaluator.evaluate(enc.unpruned())[1] == pytest.approx(1.0)
    genes = (rng.random(enc.genome_length) < 0.5).astype(np.int8)
    _, latency = evaluator.evaluate(genes)
    pruned = prune_filters(evaluator.suffix, enc.decode(genes))
    expected = _FakeTable().predict_ms(pruned) / _FakeTable().predict_ms(evaluator.suffix)
    assert latency == pytest.approx(expected) and latency < 0.75
    assert evaluator.lookup(genes).latency_ms == pytest.approx(_FakeTable().predict_ms(pruned))
    assert validate_filter_objectives(["error", "latency"]) == ("error", "latency")
    with pytest.raises(ValueError, match="'latency'"):
        validate_filter_objectives(["error", "speed"])
