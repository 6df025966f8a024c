"""TASCNet pair selection, the pair-similarity loss and pair pruning, on planted inputs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from evoprune_tf.methods.tascnet.similarity import (
    PairSimilarityModel,
    PairSimilarityRegularizer,
    assign_pruned_weights,
    cosine_similarity_matrix,
    filters_to_remove,
    n_pairs,
    pair_similarities,
    select_layer_pairs,
    select_pairs,
)
from evoprune_tf.methods.tascnet.trajectories import conv_kernels


def _planted(n: int = 40, length: int = 30, seed: int = 0) -> np.ndarray:
    """Random trajectories with filter 7 == filter 21 (scaled), 3 ~ 30, and 12 == -5."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, length))
    t[21] = 2.5 * t[7]  # identical direction: cosine exactly 1
    t[30] = t[3] + 0.05 * rng.normal(size=length)  # nearly identical
    t[12] = -t[5]  # opposite: cosine -1
    return t


def test_cosine_matrix_of_planted_rows():
    s = cosine_similarity_matrix(_planted())
    assert s.shape == (40, 40)
    assert s[7, 21] == pytest.approx(1.0) and s[12, 5] == pytest.approx(-1.0)
    np.testing.assert_allclose(np.diag(s), 1.0)
    zero = cosine_similarity_matrix(np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert zero[0, 1] == 0.0 and np.isfinite(zero).all()


@pytest.mark.parametrize(
    ("n_filters", "percent", "expected"),
    [(100, 5, 5), (1280, 5, 64), (30, 5, 1), (10, 5, 1), (100, 29, 29), (41, 50, 20), (1, 50, 0), (256, 12.5, 32)],
)
def test_percent_to_pairs_rounds_down_with_at_least_one(n_filters, percent, expected):
    assert n_pairs(n_filters, percent) == expected


@pytest.mark.parametrize("bad", [0, -5, 50.5, 100, True, "5"])
def test_prune_percent_outside_range_is_rejected(bad):
    with pytest.raises(ValueError, match="prune_percent") as info:
        select_layer_pairs(_planted(), bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="prune_percent"):
        select_pairs({"a": _planted()}, bad)


def test_most_similar_pairs_are_the_planted_ones_in_order():
    pairs = select_layer_pairs(_planted(), 5.0)  # 5 % of 40 -> 2 pairs
    assert pairs == [(7, 21), (3, 30)]


def test_least_similar_pairs_reproduce_the_authors_order():
    pairs = select_layer_pairs(_planted(), 5.0, order="least_similar")
    assert pairs[0] == (5, 12)
    s = cosine_similarity_matrix(_planted())
    assert s[pairs[1]] < -0.3  # the next most opposite disjoint pair, far below the average
    with pytest.raises(ValueError, match="order='similar'"):
        select_layer_pairs(_planted(), 5.0, order="similar")


def test_greedy_pairs_are_disjoint_and_greedy():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(1, 20))
    # Filters 0, 1, 2 are all close to each other: (0, 1) is the best pair, and 2 must
    # then pair with something else although (0, 2) and (1, 2) beat every other pair.
    t = rng.normal(size=(12, 20))
    t[:3] = base + 0.01 * rng.normal(size=(3, 20))
    pairs = select_layer_pairs(t, 50.0)
    members = [i for p in pairs for i in p]
    assert len(pairs) == 6 and len(set(members)) == 12
    s = cosine_similarity_matrix(t)
    best = max(((s[i, j], (i, j)) for i in range(3) for j in range(i + 1, 3)))[1]
    assert pairs[0] == best
    # Every later pair is the best one among filters still free at that point.
    free = set(range(12))
    for i, j in pairs:
        candidates = [(s[a, b], (a, b)) for a in free for b in free if a < b]
        assert s[i, j] == pytest.approx(max(candidates)[0])
        free -= {i, j}


def test_select_pairs_per_layer():
    out = select_pairs({"conv_k3": _planted(), "conv_k4": _planted(seed=1)}, 2.5)
    assert list(out) == ["conv_k3", "conv_k4"]
    assert out["conv_k3"] == [(7, 21)] and len(out["conv_k4"]) == 1
    with pytest.raises(ValueError, match="mapping"):
        select_pairs(_planted(), 5.0)


def _kernel_with_pairs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 4, 6))  # Conv1D: width 3, 4 input channels, 6 filters
    kernel[..., 4] = 0.5 * kernel[..., 1]  # filter 4: smaller L1 than filter 1
    bias = np.arange(6, dtype=float)
    return kernel, bias


def test_delete_removes_the_smaller_l1_member():
    kernel, bias = _kernel_with_pairs()
    l1 = np.abs(kernel).reshape(-1, 6).sum(axis=0)
    plan = filters_to_remove({"c": [(1, 4), (0, 5)]}, {"c": kernel}, {"c": bias})
    smaller = 0 if l1[0] < l1[5] else 5
    assert plan.removed["c"] == [4, smaller]
    expected = np.ones(6, bool)
    expected[[4, smaller]] = False
    assert plan.keep["c"].dtype == bool and np.array_equal(plan.keep["c"], expected)
    assert plan.n_removed == 2 and plan.mode == "delete"
    np.testing.assert_array_equal(plan.kernels["c"], kernel)  # delete changes no value
    # Pair order does not matter.
    assert filters_to_remove({"c": [(4, 1)]}, {"c": kernel}).removed["c"] == [4]


def test_merge_writes_the_l1_weighted_average_into_the_kept_filter():
    kernel, bias = _kernel_with_pairs()
    kernel[..., 2] = np.random.default_rng(5).normal(size=(3, 4)) * 3
    l1 = np.abs(kernel).reshape(-1, 6).sum(axis=0)
    plan = filters_to_remove({"c": [(2, 3)]}, {"c": kernel}, {"c": bias}, mode="merge")
    kept, gone = (2, 3) if l1[2] >= l1[3] else (3, 2)
    assert plan.removed["c"] == [gone]
    w = l1[kept] / (l1[kept] + l1[gone])
    np.testing.assert_allclose(plan.kernels["c"][..., kept], w * kernel[..., kept] + (1 - w) * kernel[..., gone])
    assert plan.biases["c"][kept] == pytest.approx(w * bias[kept] + (1 - w) * bias[gone])
    untouched = [i for i in range(6) if i != kept]
    np.testing.assert_array_equal(plan.kernels["c"][..., untouched], kernel[..., untouched])
    assert kernel[0, 0, kept] != plan.kernels["c"][0, 0, kept]  # input not modified


def test_filters_to_remove_rejects_bad_pairs():
    kernel, _ = _kernel_with_pairs()
    with pytest.raises(ValueError, match="reuses a filter"):
        filters_to_remove({"c": [(1, 2), (2, 3)]}, {"c": kernel})
    with pytest.raises(ValueError, match="index past its 6 filters"):
        filters_to_remove({"c": [(1, 6)]}, {"c": kernel})
    with pytest.raises(ValueError, match="no kernel"):
        filters_to_remove({"d": [(1, 2)]}, {"c": kernel})
    with pytest.raises(ValueError, match="mode="):
        filters_to_remove({"c": [(1, 2)]}, {"c": kernel}, mode="average")


def test_regularizer_value_matches_numpy():
    kernel, _ = _kernel_with_pairs()
    pairs = {"c": [(1, 4), (0, 5)]}
    cos = pair_similarities({"c": kernel}, pairs)["c"]
    assert cos[0] == pytest.approx(1.0)
    reg = PairSimilarityRegularizer(pairs, weight=2.0)
    term = float(keras.ops.convert_to_numpy(reg({"c": kernel.astype("float32")})))
    assert term == pytest.approx(2.0 * np.exp(-cos.sum()), rel=1e-5)
    per_layer = PairSimilarityRegularizer({**pairs, "d": [(0, 1)]}, per_layer=True)
    value = float(keras.ops.convert_to_numpy(per_layer({"c": kernel, "d": kernel})))
    assert value == pytest.approx(np.exp(-cos.sum()) + np.exp(-pair_similarities({"d": kernel}, {"d": [(0, 1)]})["d"].sum()))
    with pytest.raises(ValueError, match="weight"):
        PairSimilarityRegularizer(pairs, weight=-1)


def _tiny_conv_model() -> keras.Model:
    inputs = keras.Input((16, 3))
    x = keras.layers.Conv1D(12, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv1D(10, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))


def _train(with_term: bool, pairs) -> tuple[keras.Model, dict[str, np.ndarray]]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 16, 3)).astype("float32")
    y = (x[:, :, 0].max(axis=1) > 1.5).astype("int64")
    model = _tiny_conv_model()
    trained = PairSimilarityModel(model, pairs, weight=1.0) if with_term else model
    trained.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    trained.fit(x, y, batch_size=32, epochs=4, verbose=0)
    return model, pair_similarities(conv_kernels(model, list(pairs))[0], pairs)


def test_training_with_the_term_raises_the_pairs_similarity():
    keras.utils.set_random_seed(0)
    probe = _tiny_conv_model()
    kernels, _ = conv_kernels(probe, ["conv_a", "conv_b"])
    # The least similar pairs at initialisation: the term has the most to do.
    pairs = {
        name: select_layer_pairs(kernels[name].reshape(-1, kernels[name].shape[-1]).T, 20.0, "least_similar")
        for name in kernels
    }
    before = pair_similarities(kernels, pairs)
    _, plain = _train(False, pairs)
    model, pulled = _train(True, pairs)
    for name in pairs:
        assert pulled[name].mean() > plain[name].mean() + 0.3, (name, before[name], plain[name], pulled[name])
        assert np.all(pulled[name] > before[name])
    # The wrapper trained the inner model's own variables.
    assert model.get_layer("conv_a").kernel is model.get_layer("conv_a").kernel


def test_wrapper_rejects_unknown_layers_and_out_of_range_pairs():
    model = _tiny_conv_model()
    with pytest.raises(ValueError, match="not Conv1D/Conv2D"):
        PairSimilarityModel(model, {"out": [(0, 1)]})
    with pytest.raises(ValueError, match="index past its 10 filters"):
        PairSimilarityModel(model, {"conv_b": [(0, 10)]})


def test_wrapper_saves_and_loads(tmp_path):
    model = _tiny_conv_model()
    wrapped = PairSimilarityModel(model, {"conv_a": [(0, 1)]}, weight=0.5)
    x = np.random.default_rng(0).normal(size=(4, 16, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(wrapped(x, training=False))  # eager: no predict function to trace
    path = tmp_path / "wrapped.keras"
    wrapped.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, PairSimilarityModel)
    assert loaded.regularizer.pairs == {"conv_a": [(0, 1)]} and loaded.regularizer.weight == 0.5
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), expected, rtol=1e-5)


def test_assign_pruned_weights_writes_merged_filters():
    model = _tiny_conv_model()
    kernels, biases = conv_kernels(model, ["conv_b"])
    plan = filters_to_remove({"conv_b": [(0, 1), (2, 3)]}, kernels, biases, mode="merge")
    assign_pruned_weights(model, plan)
    after, _ = conv_kernels(model, ["conv_b"])
    np.testing.assert_allclose(after["conv_b"], plan.kernels["conv_b"], rtol=1e-6)
    assert not np.allclose(after["conv_b"], kernels["conv_b"])


_JAX_SCRIPT = textwrap.dedent(
    """
    import numpy as np, keras
    assert keras.backend.backend() == "jax"
    from evoprune_tf.methods.tascnet.similarity import PairSimilarityModel, pair_similarities
    from evoprune_tf.methods.tascnet.trajectories import KernelTrajectoryRecorder, conv_kernels
    pairs = {"c": [(0, 1), (2, 3)]}
    x = np.random.default_rng(0).normal(size=(64, 16, 3)).astype("float32")
    y = (x[:, 0, 0] > 0).astype("int64")
    result = {}
    for with_term in (False, True):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16, 3))
        h = keras.layers.Conv1D(8, 3, activation="relu", name="c")(inputs)
        out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalMaxPooling1D()(h))
        model = keras.Model(inputs, out)
        trained = PairSimilarityModel(model, pairs) if with_term else model
        trained.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        recorder = KernelTrajectoryRecorder(min_filters=4)
        trained.fit(x, y, epochs=3, verbose=0, callbacks=[recorder])
        assert recorder.trajectories()["c"].shape == (8, 4 * 9)
        result[with_term] = pair_similarities(conv_kernels(model, ["c"])[0], pairs)["c"]
    assert np.all(result[True] > result[False] + 0.1), result
    print("JAX-OK")
    """
)


@pytest.mark.slow  # ~20 s: a fresh interpreter importing Keras on JAX
def test_term_and_recorder_work_on_the_jax_backend():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0 and "JAX-OK" in result.stdout, result.stderr[-2000:]
