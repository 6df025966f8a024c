"""Analytic MACs/FLOPs: hand counts, parameter totals, and a cross-check with TensorFlow's profiler."""

from __future__ import annotations

import keras
import pytest

from evoprune_tf.nn.flops import count_flops

L = keras.layers
APPS = keras.applications


def test_hand_counted_small_model():
    inp = keras.Input((8, 8, 4))
    x = L.Conv2D(6, 3, strides=2, padding="same", name="conv")(inp)           # out 4x4x6
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)       # out 4x4x6
    x = L.Add(name="add")([x, y])
    x = L.Conv2D(4, 1, groups=2, use_bias=False, name="grouped")(x)            # out 4x4x4, 3 inputs/group
    x = L.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)              # out 2x2x5
    x = L.MaxPooling2D(2, name="pool")(x)                                      # out 1x1x5
    x = L.Flatten(name="flat")(x)
    out = L.Dense(3, name="dense")(x)
    model = keras.Model(inp, out)
    fc = count_flops(model)
    rows = fc.by_layer()
    assert rows["conv"].macs == 4 * 4 * 6 * 9 * 4 and rows["conv"].other_flops == 4 * 4 * 6
    assert rows["bn"].other_flops == 2 * 96 and rows["relu"].other_flops == 96 and rows["bn"].macs == 0
    assert rows["dw"].macs == 96 * 9 and rows["dw"].other_flops == 0
    assert rows["add"].other_flops == 96
    assert rows["grouped"].macs == 16 * 4 * 3
    assert rows["sep"].macs == 4 * (4 * 2 * 9) + 4 * (8 * 5)
    assert rows["pool"].other_flops == 5 * 4 and rows["flat"].other_flops == 0
    assert rows["dense"].macs == 15
    assert fc.macs == sum(r.macs for r in fc.layers) and fc.flops == 2 * fc.macs
    assert all(r.flops == 2 * r.macs for r in fc.layers)
    assert fc.total_flops == fc.flops + fc.other_flops
    assert fc.params == model.count_params()


def test_conv1d_text_model():
    inp = keras.Input((20,), dtype="int32")
    x = L.Embedding(100, 8)(inp)
    x = L.Conv1D(16, 5, name="conv")(x)
    x = L.GlobalMaxPooling1D(name="gmp")(x)
    model = keras.Model(inp, L.Dense(2)(x))
    fc = count_flops(model)
    assert fc.by_layer()["conv"].macs == 16 * 16 * 5 * 8
    assert fc.by_layer()["gmp"].other_flops == 16 * 16
    assert fc.params == model.count_params()


def test_dynamic_shape_and_unknown_layer_raise():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, L.Conv2D(2, 3)(inp))
    with pytest.raises(ValueError, match="dynamic shape"):
        count_flops(model)
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, Doubler(name="dbl")(inp))
    with pytest.raises(ValueError, match=r"cannot count FLOPs of layer 'dbl' \(Doubler\): .*register_channel_rule"):
        count_flops(model)


class Doubler(L.Layer):
    def call(self, x):
        return x * 2.0


def test_normalisation_ops_nested_and_shared_layers_are_counted():
    inner = keras.Sequential([keras.Input((4, 4, 3)), L.Conv2D(5, 1, name="inner_conv"),
                              L.LayerNormalization(name="ln")], name="stem")
    inp = keras.Input((4, 4, 3))
    shared = L.Conv2D(5, 1, name="shared")
    x = inner(inp) + 3.0  # a keras.ops call recorded in the graph
    y = shared(x)
    z = shared(y)  # the same layer (weights) called twice
    model = keras.Model(inp, z)
    fc = count_flops(model)
    rows = fc.by_layer()
    assert rows["inner_conv"].macs == 16 * 5 * 3 and rows["ln"].other_flops == 5 * 16 * 5
    assert rows["shared"].macs == rows["shared#1"].macs == 16 * 5 * 5
    assert rows["shared#1"].params == 0 and fc.params == model.count_params()
    assert [r.other_flops for r in fc.layers if r.class_name == "Add"] == [16 * 5]


@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "VGG16", "DenseNet121"])
def test_params_equal_keras(name):
    model = getattr(APPS, name)(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    fc = count_flops(model)
    assert fc.params == model.count_params()
    assert len(fc.layers) == len(model.layers)


def tf_profiler_flops(model: keras.Model, shape: tuple) -> dict[str, int]:
    """TensorFlow's own float-op count per op type of the frozen inference graph (batch 1)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec((1, *shape), tf.float32))).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph, cmd="graph", options=opts)
    by_type: dict[str, int] = {}
    stack = list(prof.children)
    while stack:
        node = stack.pop()
        if node.float_ops:
            op_type = graph.get_operation_by_name(node.name).type
            by_type[op_type] = by_type.get(op_type, 0) + node.float_ops
        stack.extend(node.children)
    return by_type


@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50"])
def test_kernel_flops_match_tensorflow_profiler(name):
    shape = (32, 32, 3)
    model = getattr(APPS, name)(weights=None, include_top=False, input_shape=shape, pooling="avg")
    tf_ops = tf_profiler_flops(model, shape)
    ours = count_flops(model)
    kernel = tf_ops.get("Conv2D", 0) + tf_ops.get("DepthwiseConv2dNative", 0) + tf_ops.get("MatMul", 0)
    print(f"{name}: ours FLOPs (2*MACs) {ours.flops}, TF profiler conv/depthwise/matmul {kernel}; "
          f"ours other {ours.other_flops}, TF other {sum(tf_ops.values()) - kernel} {tf_ops}")
    assert abs(kernel - ours.flops) <= 0.01 * ours.flops
    # Bias adds (ResNet's convs have biases) agree too, except that TensorFlow rewrites a residual
    # Add on 1x1 feature maps into a BiasAdd: the excess is bounded by our Add count.
    rows = ours.layers
    bias = sum(r.other_flops for r in rows if r.class_name in ("Conv2D", "DepthwiseConv2D", "Dense"))
    adds = sum(r.other_flops for r in rows if r.class_name == "Add")
    assert bias <= tf_ops.get("BiasAdd", 0) <= bias + adds
    assert tf_ops.get("MaxPool", 0) == sum(r.other_flops for r in rows if r.class_name == "MaxPooling2D")
