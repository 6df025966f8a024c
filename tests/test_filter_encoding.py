"""FilterPruning: one bit per prunable filter of the last K blocks, repairs, cut layer, bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.methods.deep_pruning_es.encoding import FilterPruning, searchable_blocks
from evoprune_tf.nn.coupling import filter_groups
from evoprune_tf.search.toolbox import build_toolbox

L = keras.layers


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg",
                                          alpha=0.35)
    return keras.Model(base.input, L.Dense(3, activation="softmax", name="predictions")(base.output))


def test_last_blocks_exclude_the_head_and_set_the_cut(mobilenet):
    enc = FilterPruning(mobilenet, 2)
    assert enc.group_names == ("block_16_expand", "block_16_project", "Conv_1")
    assert enc.searched_blocks == ("block_16", "Conv_1")
    sizes = {g.name: g.size for g in filter_groups(mobilenet)}
    assert enc.genome_length == sizes["block_16_expand"] + sizes["block_16_project"] + sizes["Conv_1"]
    assert enc.cut_layer == "block_15_add"
    one = FilterPruning(mobilenet, 1)  # the softmax head's block has nothing to prune: not counted
    assert one.group_names == ("Conv_1",) and one.cut_layer == "block_16_project_BN"
    assert searchable_blocks(mobilenet)[-1] == "Conv_1"
    every = FilterPruning(mobilenet, "all")
    assert every.cut_layer is None and every.group_names[0] == "Conv1"
    assert every.genome_length > enc.genome_length
    assert enc.config()["cut_layer"] == "block_15_add" and "2 block(s)" in enc.describe()


def test_decode_repairs_all_zero_groups_and_counts_them(mobilenet):
    enc = FilterPruning(mobilenet, 2)
    genome = enc.unpruned()
    start, size = enc.offsets[0], enc.sizes[0]
    genome[start:start + size] = 0  # block_16_expand loses every filter
    genome[enc.offsets[2] + 5] = 0  # Conv_1 loses one
    keep, repairs = enc.decode_with_repairs(genome)
    assert repairs == 1 and keep["block_16_expand"].sum() == 1
    kernel = mobilenet.get_layer("block_16_expand").get_weights()[0]
    strongest = int(np.argmax(np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)))
    assert keep["block_16_expand"][strongest]  # the repair keeps the largest-L1 filter
    assert keep["Conv_1"].sum() == enc.sizes[2] - 1 and not keep["Conv_1"][5]
    raw = enc.raw_masks(genome)
    assert not raw["block_16_expand"].any()  # the genome itself is not changed
    assert np.array_equal(enc.encode(enc.decode(enc.unpruned())), enc.unpruned())
    other = (np.random.default_rng(1).random(enc.genome_length) < 0.6).astype(np.int8)
    assert np.array_equal(enc.encode(enc.decode(other)), other)
    assert enc.active_fraction(other) == pytest.approx(other.mean())


def test_bad_genomes_and_blocks_give_one_line_errors(mobilenet):
    enc = FilterPruning(mobilenet, 1)
    with pytest.raises(ValueError, match=r"expected \(1280,\)"):
        enc.decode(np.ones(3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        enc.decode(np.full(enc.genome_length, 2))
    n = len(searchable_blocks(mobilenet))
    with pytest.raises(ValueError, match=rf"^encoding.blocks=99: network .* has only {n} blocks") as info:
        FilterPruning(mobilenet, 99)
    assert "\n" not in str(info.value)
    for bad in (0, -1, "some", True):
        with pytest.raises(ValueError, match="expected a positive int or 'all'"):
            FilterPruning(mobilenet, bad)


@keras.saving.register_keras_serializable(package="evoprune_tf_tests")
class Swish2(keras.layers.Layer):
    """A layer the coupling analysis does not know."""

    def call(self, inputs):
        return inputs * keras.ops.sigmoid(inputs)


def test_unsupported_layer_is_named():
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, name="c1")(inputs)
    x = Swish2(name="odd_activation")(x)
    x = L.Conv2D(8, 3, name="c2")(x)
    out = L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match=r"cannot analyse layer 'odd_activation' \(Swish2\)"):
        FilterPruning(keras.Model(inputs, out), 2)


def test_resnet50_last_block_and_toolbox():
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    model = keras.Model(base.input, L.Dense(2, activation="softmax", name="predictions")(base.output))
    enc = FilterPruning(model, 1)
    # the stage group (shortcut + every _3_conv) starts in conv5_block1: not in the last block
    assert enc.group_names == ("conv5_block3_1_conv", "conv5_block3_2_conv")
    assert enc.cut_layer == "conv5_block2_out"

    class Evaluator:
        encoding = enc
        weights = (-1.0, -1.0)

        def evaluate(self, genome):
            return (0.0, float(np.mean(genome)))

        def map(self, func, items):
            return list(map(func, items))

    toolbox = build_toolbox(Evaluator(), {"init": "ones", "select": "heavy_knee_light",
                                          "mutate": {"name": "flip_bit", "indpb": 0.2}})
    ind = toolbox.individual()
    assert len(ind) == enc.genome_length == 1024 and ind.all()
    toolbox.mutate(ind)
    assert 0.7 < ind.mean() < 0.9


def test_mobilenet_v1_last_blocks_are_its_units():
    """MobileNet (v1): "the last 2 blocks" are units 12 and 13, not one block of every conv_dw/conv_pw layer."""
    base = keras.applications.MobileNet(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.25,
                                        pooling="avg")
    model = keras.Model(base.input, L.Dense(2, activation="softmax", name="predictions")(base.output))
    enc = FilterPruning(model, 2)
    assert enc.searched_blocks == ("conv_12", "conv_13")
    assert enc.group_names == ("conv_pw_12", "conv_pw_13")
    assert enc.cut_layer == "conv_pw_11_relu"
