"""Cutting backbones into a shared prefix and a cloned suffix; the suffix supports groups, surgery and FLOPs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.nn.coupling import filter_groups, model_blocks
from evoprune_tf.nn.cut import cut_points, split_model
from evoprune_tf.nn.flops import count_flops
from evoprune_tf.nn.surgery import mask_filters, prune_filters

L = keras.layers
APPS = keras.applications


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "VGG16", "DenseNet121"])
def test_split_reproduces_model(name):
    model = getattr(APPS, name)(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    cuts = cut_points(model)
    assert len(cuts) == len(model_blocks(model)) - 1  # every block boundary of these nets is a single tensor
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    prefix, suffix = split_model(model, cuts[-2])
    np.testing.assert_allclose(outputs(suffix, outputs(prefix, x)), outputs(model, x), rtol=1e-5, atol=1e-5)
    assert len(prefix.layers) + len(suffix.layers) == len(model.layers) + 1  # + the suffix's Input
    # The suffix owns new layers: changing them leaves the original alone.
    conv = next(lay for lay in suffix.layers if lay.weights)
    original = model.get_layer(conv.name)
    assert conv is not original
    conv.set_weights([w + 1.0 for w in conv.get_weights()])
    assert not np.array_equal(conv.get_weights()[0], original.get_weights()[0])


def test_invalid_cut_inside_residual_block():
    model = APPS.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    with pytest.raises(ValueError, match=r"^cannot cut at layer 'conv5_block3_1_conv'"):
        split_model(model, "conv5_block3_1_conv")
    with pytest.raises(ValueError, match="no such layer"):
        split_model(model, "nope")
    assert "conv5_block2_out" in cut_points(model)
    assert "conv5_block3_1_relu" not in cut_points(model, granularity="layer")
    with pytest.raises(ValueError, match="granularity"):
        cut_points(model, granularity="stage")


def test_suffix_with_head_supports_groups_surgery_and_flops():
    base = APPS.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    out = L.Dense(4, name="head")(L.Dropout(0.2)(L.Dense(16, activation="relu", name="hidden")(base.output)))
    model = keras.Model(base.input, out)
    cut = cut_points(model)[-4]
    assert cut == "block_15_add"
    prefix, suffix = split_model(model, cut)
    assert suffix.inputs[0].shape[1:] == prefix.outputs[0].shape[1:]
    groups = {g.name: g for g in filter_groups(suffix)}
    assert groups["Conv_1"].prunable and groups["hidden"].prunable and not groups["head"].prunable
    rng = np.random.default_rng(2)
    keep = {n: rng.random(g.size) < 0.5 for n, g in groups.items() if g.prunable}
    pruned = prune_filters(suffix, keep)
    feats = outputs(prefix, rng.normal(size=(2, 32, 32, 3)).astype("float32"))
    np.testing.assert_allclose(outputs(pruned, feats), outputs(mask_filters(suffix, keep), feats), rtol=1e-4, atol=1e-5)
    whole, part, small = count_flops(model), count_flops(suffix), count_flops(pruned)
    assert small.macs < part.macs < whole.macs
    assert part.params == suffix.count_params() and small.params == pruned.count_params()
    # The suffix's MACs are exactly those of the same layers in the whole model.
    rows = whole.by_layer()
    assert part.macs == sum(rows[r.name].macs for r in part.layers if r.name in rows)


def test_sequential_split():
    seq = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c1"), L.ReLU(name="r1"),
                            L.Conv2D(5, 3, name="c2"), L.Flatten(name="f"), L.Dense(2, name="d")])
    assert cut_points(seq) == ["r1", "f"]
    prefix, suffix = split_model(seq, "r1")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(outputs(suffix, outputs(prefix, x)), outputs(seq, x), rtol=1e-5, atol=1e-6)
