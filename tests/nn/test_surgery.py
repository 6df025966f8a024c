"""Filter surgery: pruned model == masked model, exact parameter counts, repairs, save/load."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from evoprune_tf.nn.coupling import filter_groups
from evoprune_tf.nn.cut import cut_points, split_model
from evoprune_tf.nn.surgery import (
    ChannelMask, expected_param_count, mask_filters, prune_filters, repair_masks, set_filter_masks,
)

L = keras.layers
APPS = keras.applications


def randomise_bn(model: keras.Model, seed: int = 0) -> keras.Model:
    """Non-trivial BN statistics, so that a channel masked in the wrong place shows up (beta != 0)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"), rng.normal(0, 0.5, beta.shape).astype("float32"),
                rng.normal(0, 0.2, mean.shape).astype("float32"), rng.uniform(0.5, 1.5, var.shape).astype("float32"),
            ])
    return model


def random_keep(model: keras.Model, seed: int, density: float = 0.5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {g.name: rng.random(g.size) < density for g in filter_groups(model) if g.prunable}


def toy_cnn(widths=(8, 6, 5)) -> keras.Model:
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(widths[0], 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    x = L.MaxPooling2D(name="p1")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Add(name="add")([x, L.BatchNormalization(name="bn_dw")(y)])
    x = L.Conv2D(widths[1], 3, name="c2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(widths[2], activation="relu", name="d1")(x)
    out = L.Dense(3, name="d2")(x)
    return keras.Model(inp, out, name="toy")


def outputs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def assert_prune_equals_mask(model: keras.Model, shape: tuple, seed: int) -> None:
    keep = random_keep(model, seed)
    x = np.random.default_rng(seed).normal(size=(2, *shape)).astype("float32")
    pruned, repairs = prune_filters(model, keep, return_repairs=True)
    masked = mask_filters(model, keep)
    a, b, full = outputs(pruned, x), outputs(masked, x), outputs(model, x)
    scale = float(np.abs(b).max())
    assert scale > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale)
    # The masks must matter, or the comparison above proves nothing.
    assert np.abs(full - b).max() > 1e-2 * scale
    repaired, _ = repair_masks(model, keep)
    assert pruned.count_params() == expected_param_count(model, repaired) < model.count_params()
    assert repairs == 0


def test_toy_cnn_prune_equals_mask_and_direct_build():
    model = randomise_bn(toy_cnn())
    assert_prune_equals_mask(model, (12, 12, 3), seed=1)
    keep = {"c1": np.array([1, 0, 1, 1, 0, 0, 1, 1], bool), "c2": np.array([1, 1, 0, 1, 0, 1], bool),
            "d1": np.array([0, 1, 1, 1, 1], bool)}
    pruned = prune_filters(model, keep)
    direct = toy_cnn(widths=(5, 4, 4))
    assert pruned.count_params() == direct.count_params()
    assert [tuple(w.shape) for w in pruned.weights] == [tuple(w.shape) for w in direct.weights]
    # Dense rows are sliced per spatial position after Flatten: row s * 6 + c for kept c.
    d1 = model.get_layer("d1").get_weights()[0]
    rows = (np.arange(16)[:, None] * 6 + np.flatnonzero(keep["c2"])[None, :]).ravel()
    np.testing.assert_array_equal(pruned.get_layer("d1").get_weights()[0], d1[rows][:, keep["d1"]])


@pytest.mark.parametrize("name,seed", [("MobileNetV2", 0), ("ResNet50", 1), ("VGG16", 2), ("DenseNet121", 3)])
def test_applications_prune_equals_mask(name, seed):
    model = randomise_bn(getattr(APPS, name)(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg"))
    before = [w.copy() for w in model.get_weights()]
    assert_prune_equals_mask(model, (32, 32, 3), seed)
    # The original is untouched.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_all_false_mask_is_repaired_to_strongest_filter():
    model = toy_cnn()
    kernel = model.get_layer("c1").get_weights()[0]
    strongest = int(np.argmax(np.abs(kernel).reshape(-1, 8).sum(0)))
    keep = {"c1": np.zeros(8, bool)}
    fixed, n = repair_masks(model, keep)
    assert n == 1 and np.flatnonzero(fixed["c1"]).tolist() == [strongest]
    assert not keep["c1"].any()  # caller's mask untouched
    pruned, repairs = prune_filters(model, keep, return_repairs=True)
    assert repairs == 1 and pruned.get_layer("c1").filters == 1


def test_bad_masks_raise_one_line_errors():
    model = toy_cnn()
    with pytest.raises(ValueError, match=r"unknown filter group 'nope'"):
        prune_filters(model, {"nope": np.ones(3, bool)})
    with pytest.raises(ValueError, match=r"shape \(3,\): expected \(8,\)"):
        prune_filters(model, {"c1": np.ones(3, bool)})
    with pytest.raises(ValueError, match="not prunable"):
        prune_filters(model, {"d2": np.array([1, 0, 1], bool)})
    with pytest.raises(ValueError, match="other than 0/1"):
        prune_filters(model, {"c1": np.full(8, 2)})


def test_save_load_round_trip(tmp_path):
    model = randomise_bn(toy_cnn())
    keep = random_keep(model, 5)
    x = np.random.default_rng(0).normal(size=(3, 12, 12, 3)).astype("float32")
    pruned = prune_filters(model, keep)
    pruned.save(tmp_path / "pruned.keras")
    again = keras.models.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(outputs(again, x), outputs(pruned, x), atol=1e-6)
    masked = mask_filters(model, keep)
    masked.save(tmp_path / "masked.keras")
    again = keras.models.load_model(tmp_path / "masked.keras")
    assert any(isinstance(lay, ChannelMask) for lay in again.layers)
    np.testing.assert_allclose(outputs(again, x), outputs(masked, x), atol=1e-6)


def test_set_filter_masks_matches_a_new_prune():
    model = randomise_bn(toy_cnn())
    masked = mask_filters(model)
    x = np.random.default_rng(1).normal(size=(2, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(outputs(masked, x), outputs(model, x), rtol=1e-5, atol=1e-5)
    keep, _ = repair_masks(model, random_keep(model, 9))
    assert set_filter_masks(masked, keep) == 3  # c2, d1 and d2 read prunable channels
    np.testing.assert_allclose(outputs(masked, x), outputs(prune_filters(model, keep), x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="all False"):
        set_filter_masks(masked, {"c1": np.zeros(8, bool)})


def test_sequential_and_head_on_backbone():
    seq = keras.Sequential([keras.Input((10, 10, 3)), L.Conv2D(6, 3), L.BatchNormalization(), L.ReLU(),
                            L.GlobalAveragePooling2D(), L.Dense(4), L.Dense(2)])
    randomise_bn(seq)
    assert_prune_equals_mask(seq, (10, 10, 3), seed=3)
    assert prune_filters(seq, {}).name == seq.name


def test_mobilenet_suffix_surgery_is_fast():
    base = APPS.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    head = L.Dense(3, name="head")(L.Dense(32, activation="relu", name="hidden")(base.output))
    model = randomise_bn(keras.Model(base.input, head))
    prefix, suffix = split_model(model, cut_points(model)[-5])  # block_15, block_16, Conv_1, hidden, head
    keep = random_keep(suffix, 4)
    assert set(keep) == {"block_15_expand", "block_16_expand", "block_16_project", "Conv_1", "hidden"}
    # block_15_project is added to the suffix input (the cut tensor), which cannot shrink.
    assert not {g.name: g for g in filter_groups(suffix)}["block_15_project"].prunable
    prune_filters(suffix, keep)  # warm-up
    start = time.perf_counter()
    pruned = prune_filters(suffix, keep)
    elapsed = time.perf_counter() - start
    print(f"MobileNetV2 suffix surgery ({len(suffix.layers)} layers): {elapsed:.3f} s")
    assert elapsed < 3.0
    feats = outputs(prefix, np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32"))
    np.testing.assert_allclose(outputs(pruned, feats), outputs(mask_filters(suffix, keep), feats), rtol=1e-4, atol=1e-5)


def test_nested_model_shared_layer_and_ops_prune_equals_mask(tmp_path):
    stem = keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(6, 3, padding="same", name="s_conv"),
                             L.BatchNormalization(name="s_bn")], name="stem")
    randomise_bn(stem)
    inp = keras.Input((12, 12, 3), name="img")
    x = keras.ops.relu(stem(inp, training=False) + 1.0)  # keras.ops calls recorded in the graph
    shared = L.Conv2D(6, 1, name="shared")
    x = L.GlobalAveragePooling2D(name="gap")(shared(shared(x)))
    model = keras.Model(inp, L.Dense(3, name="out")(L.Dense(5, name="hid")(x)))
    assert {g.name for g in filter_groups(model) if g.prunable} == {"s_conv", "hid"}
    assert_prune_equals_mask(model, (12, 12, 3), seed=4)
    pruned = prune_filters(model, random_keep(model, 4))
    assert "stem" not in [lay.name for lay in pruned.layers] and pruned.get_layer("s_conv").filters < 6
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32")
    pruned.save(tmp_path / "flat.keras")
    np.testing.assert_allclose(outputs(keras.models.load_model(tmp_path / "flat.keras"), x), outputs(pruned, x),
                               atol=1e-6)
