"""Coupling groups from the functional graph: Keras Applications, toy CNNs, Sequential, text CNN."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.nn.coupling import block_key, filter_groups, model_blocks, select_groups

L = keras.layers
APPS = keras.applications


@pytest.fixture(scope="module")
def mobilenet() -> keras.Model:
    return APPS.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")


@pytest.fixture(scope="module")
def resnet() -> keras.Model:
    return APPS.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")


@pytest.fixture(scope="module")
def densenet() -> keras.Model:
    return APPS.DenseNet121(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")


def toy_cnn() -> keras.Model:
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    x = L.MaxPooling2D(name="p1")(x)
    x = L.Conv2D(6, 3, name="c2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(5, activation="relu", name="d1")(x)
    out = L.Dense(3, name="d2")(x)
    return keras.Model(inp, out, name="toy")


def by_name(groups):
    return {g.name: g for g in groups}


def test_toy_cnn_groups_members_consumers_and_flatten_rows():
    groups = by_name(filter_groups(toy_cnn()))
    assert set(groups) == {"c1", "c2", "d1", "d2"}
    c1, c2, d1, d2 = groups["c1"], groups["c2"], groups["d1"], groups["d2"]
    assert c1.size == 8 and c1.producers == ("c1",) and [m.layer for m in c1.members] == ["bn1"]
    assert [(c.layer, c.offset) for c in c1.consumers] == [("c2", 0)]
    # After Flatten each of the 4x4 positions repeats c2's 6 channels in the Dense rows.
    (flat_ref,) = c2.consumers
    assert (flat_ref.layer, flat_ref.offset, flat_ref.period, flat_ref.repeats) == ("d1", 0, 6, 16)
    assert flat_ref.rows(6)[1, 0] == 6
    assert d1.prunable and [c.layer for c in d1.consumers] == ["d2"]
    assert not d2.prunable and "output" in d2.reason
    assert [g.index for g in filter_groups(toy_cnn())] == sorted(g.index for g in groups.values())


def test_sequential_is_analysed_like_functional():
    seq = keras.Sequential([
        keras.Input((10, 10, 2)), L.Conv2D(4, 3), L.BatchNormalization(), L.Activation("relu"),
        L.GlobalAveragePooling2D(), L.Dense(7), L.Dropout(0.1), L.Dense(2),
    ])
    groups = filter_groups(seq)
    assert [g.size for g in groups] == [4, 7, 2]
    assert [g.prunable for g in groups] == [True, True, False]
    assert groups[0].consumers[0].layer == groups[1].producers[0]


def test_text_cnn_conv1d_after_embedding():
    inp = keras.Input((20,), dtype="int32")
    x = L.Embedding(50, 8, name="emb")(inp)
    x = L.Conv1D(16, 3, activation="relu", name="conv")(x)
    x = L.GlobalMaxPooling1D()(x)
    out = L.Dense(2, name="head")(x)
    groups = by_name(filter_groups(keras.Model(inp, out)))
    assert groups["conv"].prunable and groups["conv"].consumers[0].layer == "head"
    assert not groups["head"].prunable


def test_mobilenet_depthwise_ties_and_residual_merges(mobilenet):
    groups = by_name(filter_groups(mobilenet))
    expand = groups["block_1_expand"]
    assert {m.layer for m in expand.members} == {"block_1_expand_BN", "block_1_depthwise", "block_1_depthwise_BN"}
    assert [c.layer for c in expand.consumers] == ["block_1_project"]
    # block_2_add sums block_1_project's and block_2_project's outputs: one group.
    proj = groups["block_1_project"]
    assert proj.producers == ("block_1_project", "block_2_project")
    assert "block_2_project" not in groups
    assert {c.layer for c in proj.consumers} == {"block_2_expand", "block_3_expand"}
    stage = groups["block_13_project"]
    assert stage.producers == ("block_13_project", "block_14_project", "block_15_project")
    assert not groups["Conv_1"].prunable and "output" in groups["Conv_1"].reason
    assert sum(g.prunable for g in groups.values()) == len(groups) - 1


def test_resnet_one_group_per_stage(resnet):
    groups = by_name(filter_groups(resnet))
    blocks = {2: 3, 3: 4, 4: 6, 5: 3}
    for stage, n in blocks.items():
        g = groups[f"conv{stage}_block1_0_conv"]
        assert set(g.producers) == {f"conv{stage}_block1_0_conv"} | {f"conv{stage}_block{k}_3_conv" for k in range(1, n + 1)}
        for k in range(1, n + 1):
            for inner in (1, 2):
                assert groups[f"conv{stage}_block{k}_{inner}_conv"].producers == (f"conv{stage}_block{k}_{inner}_conv",)
    assert len(groups) == 1 + 4 + 2 * sum(blocks.values())
    assert not groups["conv5_block1_0_conv"].prunable
    assert groups["conv4_block1_0_conv"].prunable
    consumers = {c.layer for c in groups["conv3_block1_0_conv"].consumers}
    assert consumers == {"conv3_block2_1_conv", "conv3_block3_1_conv", "conv3_block4_1_conv",
                         "conv4_block1_0_conv", "conv4_block1_1_conv"}


def test_densenet_concat_offsets(densenet):
    groups = by_name(filter_groups(densenet))
    g = groups["conv2_block1_2_conv"]
    offsets = {c.layer: c.offset for c in g.consumers}
    # conv1's 64 channels come first, then block 1's 32 growth channels, then block 2's...
    assert offsets["conv2_block2_1_conv"] == 64 and offsets["conv2_block3_1_conv"] == 64
    assert offsets["pool2_conv"] == 64
    g2 = groups["conv2_block2_2_conv"]
    assert {c.layer: c.offset for c in g2.consumers}["conv2_block3_1_conv"] == 96
    bn_offsets = {m.layer: (m.offset, m.period) for m in g2.members}
    assert bn_offsets["conv2_block3_0_bn"] == (96, 128)
    # Growth channels of the last dense block reach the output through bn -> relu -> avg_pool.
    assert not groups["conv5_block16_2_conv"].prunable and not groups["pool4_conv"].prunable
    assert groups["conv4_block24_2_conv"].prunable


def test_vgg_chain():
    vgg = APPS.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    groups = filter_groups(vgg)
    assert len(groups) == 13 and [g.prunable for g in groups] == [True] * 12 + [False]
    assert [b.name for b in model_blocks(vgg)] == [f"block{i}" for i in range(1, 6)]


class Weird(L.Layer):
    def call(self, x):
        return x * 2.0


def test_unknown_layer_raises_one_line_error():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    x = Weird(name="foo")(x)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"^cannot analyse layer 'foo' \(Weird\): no channel rule for Weird; "
                       r"declare one with evoprune_tf.nn.register_channel_rule\(Weird, ") as err:
        filter_groups(model)
    assert "\n" not in str(err.value)


def test_barrier_makes_groups_unprunable():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Conv2D(5, 3, name="c2")(x)
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    groups = by_name(filter_groups(model))
    assert not groups["c"].prunable and "ln" in groups["c"].reason
    assert groups["c2"].prunable


def test_nested_model_is_analysed_through(mobilenet):
    inp = keras.Input((32, 32, 3))
    model = keras.Model(inp, L.Dense(2, name="head")(L.Dense(8, name="hidden")(mobilenet(inp, training=False))))
    flat = keras.Model(mobilenet.input, L.Dense(2, name="head")(L.Dense(8, name="hidden")(mobilenet.output)))
    nested, expected = by_name(filter_groups(model)), by_name(filter_groups(flat))
    assert list(nested) == list(expected)
    # Conv_1 now feeds a prunable head instead of the model output.
    assert nested["Conv_1"].prunable and [c.layer for c in nested["Conv_1"].consumers] == ["hidden"]
    assert [(g.size, g.prunable, g.consumers) for g in nested.values()] == [
        (g.size, g.prunable, g.consumers) for g in expected.values()]


def test_registered_rule_places_a_custom_layer():
    from evoprune_tf.nn import register_channel_rule

    class Halve(L.Layer):
        def call(self, x):
            return x * 0.5

    inp = keras.Input((8, 8, 3))
    x = Halve(name="half")(L.Conv2D(4, 3, name="c")(inp))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    with pytest.raises(ValueError, match="no channel rule for Halve"):
        filter_groups(model)
    register_channel_rule(Halve, "channelwise")
    assert by_name(filter_groups(keras.Model(inp, L.Dense(2)(L.Flatten()(x)))))["c"].prunable
    register_channel_rule(Halve, "barrier")
    groups = by_name(filter_groups(keras.Model(inp, L.Dense(2)(L.Flatten()(x)))))
    assert not groups["c"].prunable and "'half' (Halve)" in groups["c"].reason
    with pytest.raises(ValueError, match="kind='mix' for Halve: expected one of channelwise, merge, barrier"):
        register_channel_rule(Halve, "mix")


def test_layer_called_on_several_graphs_and_twice_in_one():
    relu = L.ReLU(name="shared_relu")
    other_in = keras.Input((6, 6, 3))
    keras.Model(other_in, relu(other_in))  # the same layer in another graph
    inp = keras.Input((6, 6, 3))
    conv = L.Conv2D(4, 1, name="twice")
    x = relu(L.Conv2D(4, 3, padding="same", name="c1")(inp))
    y = conv(conv(x))  # shared weights: input and output channels of both calls are one group
    model = keras.Model(inp, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y)))
    groups = by_name(filter_groups(model))
    assert set(groups) == {"c1", "out"}
    assert groups["c1"].producers == ("c1", "twice") and groups["c1"].prunable
    assert {c.layer for c in groups["c1"].consumers} == {"twice", "twice#1", "out"}


def test_block_keys_and_blocks(mobilenet, resnet, densenet):
    assert block_key("block_3_expand") == "block_3"
    assert block_key("conv4_block2_1_conv") == "conv4_block2"
    assert block_key("pool2_conv") == "pool2"
    assert block_key("expanded_conv_project") == "expanded_conv"
    assert block_key("dense_1") is None
    names = [b.name for b in model_blocks(mobilenet)]
    assert names == ["Conv1", "expanded_conv"] + [f"block_{i}" for i in range(1, 17)] + ["Conv_1"]
    rnames = [b.name for b in model_blocks(resnet)]
    assert rnames[0] == "conv1" and rnames[-1] == "conv5_block3" and len(rnames) == 17
    dblocks = model_blocks(densenet)
    assert len(dblocks) == 1 + 58 + 3 and "pool3" in [b.name for b in dblocks]
    # Every layer is in exactly one block, in order.
    assert sum(len(b.layers) for b in dblocks) == len(densenet.layers)
    assert all(a.stop == b.start for a, b in zip(dblocks, dblocks[1:]))


def test_mobilenet_v1_units_are_blocks():
    """MobileNet (v1) names its units ``conv_dw_<N>``/``conv_pw_<N>``: one block per unit."""
    assert [block_key(n) for n in ("conv_dw_3", "conv_pw_3_bn", "conv_pad_4", "conv_pw_13_relu")] == [
        "conv_3", "conv_3", "conv_4", "conv_13"]
    v1 = APPS.MobileNet(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.25, pooling="avg")
    assert [b.name for b in model_blocks(v1)] == ["conv1"] + [f"conv_{i}" for i in range(1, 14)]
    groups = filter_groups(v1)
    # conv_pw_13 feeds the model's output, so the last two blocks hold one prunable group.
    assert [g.name for g in select_groups(groups, v1, 2)] == ["conv_pw_12"]
    assert [g.name for g in select_groups(groups, v1, 3)] == ["conv_pw_11", "conv_pw_12"]


def test_efficientnet_and_mobilenet_v3_units_are_blocks():
    """A unit's squeeze-excite and depthwise layers belong to the unit, not to blocks of their own."""
    names = ("block1a_dwconv", "block2b_se_reduce", "block4a_dwconv2", "block6h_project_conv", "top_conv")
    assert [block_key(n) for n in names] == ["block1a", "block2b", "block4a", "block6h", None]
    assert block_key("expanded_conv_3_squeeze_excite_conv_1") == "expanded_conv_3"
    v3 = APPS.MobileNetV3Small(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg",
                               include_preprocessing=False)
    assert [b.name for b in model_blocks(v3)] == (
        ["conv", "expanded_conv"] + [f"expanded_conv_{i}" for i in range(1, 11)] + ["conv_1"])


def test_select_groups_last_blocks(resnet, mobilenet):
    groups = filter_groups(resnet)
    assert [g.name for g in select_groups(groups, resnet, 1)] == ["conv5_block3_1_conv", "conv5_block3_2_conv"]
    last3 = select_groups(groups, resnet, 3)
    assert {g.name for g in last3} == {f"conv5_block{k}_{i}_conv" for k in (1, 2, 3) for i in (1, 2)}
    assert len(select_groups(groups, resnet, 3, prunable_only=False)) == 7  # + the conv5 stage group
    assert select_groups(groups, resnet, "all") == [g for g in groups if g.prunable]
    with pytest.raises(ValueError, match="has only 17 blocks"):
        select_groups(groups, resnet, 18)
    with pytest.raises(ValueError, match="expected a positive int"):
        select_groups(groups, resnet, 0)
    mgroups = filter_groups(mobilenet)
    assert [g.name for g in select_groups(mgroups, mobilenet, 2)] == ["block_16_expand", "block_16_project"]
    assert np.all(np.diff([g.index for g in mgroups]) > 0)
