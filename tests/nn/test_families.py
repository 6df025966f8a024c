"""Every Keras Applications family prunes: pruned == masked, and the parameter count drops as the masks say."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from evoprune_tf.nn.coupling import filter_groups
from evoprune_tf.nn.flops import count_flops
from evoprune_tf.nn.surgery import expected_param_count, mask_filters, prune_filters, repair_masks

L = keras.layers
APPS = keras.applications

#: The smallest member of each family and the smallest input side it accepts. Where Keras'
#: family builder takes the depth, the member is a shallower one built by that builder
#: (`_shallow`): the same stem, block kinds, transitions and head, each repeated block kind
#: at least twice in a row (so every block-to-block coupling of the family is there), with
#: about half the layers: building, cutting, masking and running a model costs in
#: proportion to its layers (NASNetMobile: 20 s). The full-depth DenseNet121, ResNet50,
#: MobileNetV2 and VGG16: tests/nn/test_surgery.py::test_applications_prune_equals_mask.
FAMILIES = [
    ("VGG16", 32), ("ResNet50", 32), ("ResNet50V2", 32), pytest.param("DenseNet121", 32, marks=pytest.mark.slow),
    ("MobileNet", 32),
    ("MobileNetV2", 32), ("MobileNetV3Small", 32), ("EfficientNetB0", 32), ("EfficientNetV2B0", 32),
    ("InceptionV3", 75), pytest.param("InceptionResNetV2", 75, marks=pytest.mark.slow), ("Xception", 71),
    pytest.param("NASNetMobile", 32, marks=pytest.mark.slow), ("ConvNeXtTiny", 32),
]


def _shallow(name: str, shape: tuple[int, int, int]) -> keras.Model | None:
    """``name``'s family at about half its depth (see FAMILIES), or None to build ``name`` itself.

    The family builders are Keras' own, from ``keras.src.applications`` (not public API):
    where a Keras release moves or renames them, the test builds the full-depth member.
    """
    try:
        return _shallow_member(name, shape)
    except (ImportError, AttributeError, TypeError):
        return None


def _shallow_member(name: str, shape: tuple[int, int, int]) -> keras.Model | None:
    from keras.src.applications import convnext, densenet, efficientnet, efficientnet_v2, nasnet, resnet

    common = {"include_top": False, "weights": None, "input_shape": shape, "pooling": "avg"}
    if name == "ResNet50":  # stacks of 3, 4, 6, 3 blocks: 2 each (a projection and an identity block)
        def stacks(x):
            for i, filters in enumerate((64, 128, 256, 512)):
                x = resnet.stack_residual_blocks_v1(x, filters, 2, stride1=1 if i == 0 else 2, name=f"conv{i + 2}")
            return x

        return resnet.ResNet(stacks, False, True, name="resnet50_shallow", **common)
    if name == "ResNet50V2":  # v2 stacks need 3 blocks for the plain identity block: 3 in the second
        def stacks_v2(x):
            for i, (filters, blocks) in enumerate(((64, 2), (128, 3), (256, 2), (512, 2))):
                x = resnet.stack_residual_blocks_v2(x, filters, blocks, stride1=1 if i == 3 else 2,
                                                    name=f"conv{i + 2}")
            return x

        return resnet.ResNet(stacks_v2, True, True, name="resnet50v2_shallow", **common)
    if name == "DenseNet121":  # dense blocks of 6, 12, 24, 16 conv blocks: 2 each
        return densenet.DenseNet([2, 2, 2, 2], name="densenet_shallow", **common)
    if name == "EfficientNetB0":  # stage repeats 1, 2, 2, 3, 3, 4, 1: at most 2
        blocks = [{**b, "repeats": min(b["repeats"], 2)} for b in efficientnet.DEFAULT_BLOCKS_ARGS]
        return efficientnet.EfficientNet(1.0, 1.0, 224, 0.2, blocks_args=blocks, name="efficientnetb0_shallow",
                                         **common)
    if name == "EfficientNetV2B0":  # stage repeats 1, 2, 2, 3, 5, 8: at most 2
        blocks = [{**b, "num_repeat": min(b["num_repeat"], 2)}
                  for b in efficientnet_v2.DEFAULT_BLOCKS_ARGS["efficientnetv2-b0"]]
        return efficientnet_v2.EfficientNetV2(1.0, 1.0, 224, blocks_args=blocks, name="efficientnetv2_b0_shallow",
                                              **common)
    if name == "NASNetMobile":  # 4 normal cells per stage: 2
        return nasnet.NASNet(shape, penultimate_filters=1056, num_blocks=2, stem_block_filters=32,
                             skip_reduction=False, filter_multiplier=2, include_top=False, weights=None,
                             pooling="avg", default_size=224, name="nasnet_mobile_shallow")
    if name == "ConvNeXtTiny":  # 3, 3, 9, 3 blocks per stage: 2 each
        return convnext.ConvNeXt(depths=[2, 2, 2, 2], projection_dims=[96, 192, 384, 768], drop_path_rate=0.0,
                                 layer_scale_init_value=1e-6, default_size=224, name="convnext_tiny_shallow",
                                 **common)
    return None


def calibrate_batchnorm(model: keras.Model, x: np.ndarray, seed: int) -> None:
    """Random gamma/beta, then moving statistics set to one batch's statistics.

    At random initialisation the moving statistics (0, 1) do not normalise anything, and
    after a few dozen ReLU layers the features of some families are around 1e-12: any two
    models would compare equal. With the statistics of a real batch every BatchNormalization
    gives unit-scale activations, so the comparison below sees every channel.
    """
    rng = np.random.default_rng(seed)
    norms = [lay for lay in model.layers if isinstance(lay, L.BatchNormalization)]
    for lay in norms:
        for w in lay.weights:  # InceptionV3 has no gamma (scale=False)
            if w.name == "gamma":
                w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
            elif w.name == "beta":
                w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
        lay.momentum = 0.0  # the next training call stores the batch statistics
    for lay in model.layers:  # ConvNeXt's residual branches start at 1e-6 x: let them count
        if type(lay).__name__ == "LayerScale":
            lay.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in lay.weights])
    model(x, training=True)
    for lay in norms:
        lay.momentum = 0.99


def outputs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("name,size", FAMILIES)
def test_family_prunes_half_of_every_group(name, size):
    began = time.perf_counter()
    keras.utils.set_random_seed(0)
    model = _shallow(name, (size, size, 3)) or getattr(APPS, name)(
        weights=None, include_top=False, input_shape=(size, size, 3), pooling="avg")
    rng = np.random.default_rng(1)
    calibrate_batchnorm(model, rng.normal(0, 1, (4, size, size, 3)).astype("float32"), seed=2)
    groups = filter_groups(model)
    prunable = [g for g in groups if g.prunable]
    assert prunable, f"{name}: no prunable group"
    keep = {}
    for g in prunable:  # a random half of every prunable group
        mask = np.zeros(g.size, bool)
        mask[rng.choice(g.size, max(1, g.size // 2), replace=False)] = True
        keep[g.name] = mask
    pruned, repairs = prune_filters(model, keep, return_repairs=True)
    masked = mask_filters(model, keep)
    x = rng.normal(0, 1, (2, size, size, 3)).astype("float32")
    a, b, full = outputs(pruned, x), outputs(masked, x), outputs(model, x)
    scale = float(np.abs(b).max())
    # VGG has no normalisation: its features are ~1e-4 at random init, still far above round-off.
    assert scale > 1e-6, f"{name}: features vanish ({scale:.2e}), the comparison would prove nothing"
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)
    assert np.abs(full - b).max() > 1e-2 * scale  # the masks matter
    repaired, _ = repair_masks(model, keep)
    assert repairs == 0
    assert pruned.count_params() == expected_param_count(model, repaired) < model.count_params()
    # The FLOPs count follows the surgery (it reads the pruned graph's shapes).
    assert count_flops(pruned).flops < count_flops(model).flops
    print(f"{model.name}@{size}: {len(model.layers)} layers, {len(prunable)}/{len(groups)} groups, params {model.count_params()} -> "
          f"{pruned.count_params()}, {time.perf_counter() - began:.1f} s")
