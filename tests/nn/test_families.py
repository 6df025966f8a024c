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

#: The smallest member of each family and the smallest input side it accepts.
FAMILIES = [
    ("VGG16", 32), ("ResNet50", 32), ("ResNet50V2", 32), pytest.param("DenseNet121", 32, marks=pytest.mark.slow),
    ("MobileNet", 32),
    ("MobileNetV2", 32), ("MobileNetV3Small", 32), ("EfficientNetB0", 32), ("EfficientNetV2B0", 32),
    ("InceptionV3", 75), pytest.param("InceptionResNetV2", 75, marks=pytest.mark.slow), ("Xception", 71),
    pytest.param("NASNetMobile", 32, marks=pytest.mark.slow), ("ConvNeXtTiny", 32),
]


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
    model = getattr(APPS, name)(weights=None, include_top=False, input_shape=(size, size, 3), pooling="avg")
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
    print(f"{name}@{size}: {len(prunable)}/{len(groups)} groups, params {model.count_params()} -> "
          f"{pruned.count_params()}, {time.perf_counter() - began:.1f} s")
