"""Tests for evoprune_tf.nn.export: compact export of masked heads and its parameter count."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import evoprune_tf.nn.export as export_module
import evoprune_tf.nn.layers as layers_module
from evoprune_tf.encodings import ConnectionPruning, FeatureSelection, HeadSpec, NeuronPruning
from evoprune_tf.nn.export import compact, count_active_parameters, strip_masks
from evoprune_tf.nn.layers import FeatureGather, MaskedDense, build_masked_head, masked_dense_layers, set_head_masks

from masked_heads import HIDDEN, N_CLASSES, N_FEATURES, numpy_forward, predict, randomize, trainable_count


def head_types(model: keras.Model) -> list[type]:
    return [type(layer) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def random_mask(shape: tuple[int, int], seed: int, p: float = 0.5) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, size=32)
    return x, y


# --------------------------------------------------------------------------- compact


def assert_compact_matches(model: keras.Model, x: np.ndarray) -> keras.Model:
    small = compact(model)
    np.testing.assert_allclose(predict(small, x), predict(model, x), atol=1e-5)
    np.testing.assert_allclose(predict(small, x), numpy_forward(model, x), atol=1e-5)
    assert not any(isinstance(layer, MaskedDense) for layer in small.layers)
    return small


def test_compact_drops_pruned_input_features(data):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,), use_bias=True)
    genome = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1])
    masks = FeatureSelection(spec).decode(genome)
    model = build_masked_head(N_FEATURES, N_CLASSES, spec.hidden, use_bias=True, kernel_masks=masks.kernel_masks())
    randomize(model)

    small = assert_compact_matches(model, x)

    assert head_types(small) == [FeatureGather, keras.layers.Dense, keras.layers.Dense]
    assert small.get_layer("feature_gather").indices == tuple(np.flatnonzero(genome))
    assert [tuple(layer.kernel.shape) for layer in dense_layers(small)] == [(7, HIDDEN), (HIDDEN, N_CLASSES)]
    assert small.count_params() == masks.active_parameters(spec) < spec.n_parameters()
    assert count_active_parameters(model) == masks.active_parameters(spec)
    assert [layer.name for layer in dense_layers(small)] == ["compact_dense_0", "compact_output"]


@pytest.mark.parametrize("use_bias", [False, True])
def test_compact_removes_pruned_neurons(data, use_bias):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN, 6), use_bias=use_bias)
    genome = np.array([1, 0, 1, 1, 0, 0, 1, 1] + [0, 1, 1, 0, 1, 0])
    masks = NeuronPruning(spec).decode(genome)
    model = build_masked_head(
        N_FEATURES, N_CLASSES, spec.hidden, use_bias=use_bias, kernel_masks=masks.kernel_masks()
    )
    randomize(model)

    small = assert_compact_matches(model, x)

    assert head_types(small) == [keras.layers.Dense] * 3  # every feature is still used
    assert [tuple(layer.kernel.shape) for layer in dense_layers(small)] == [(N_FEATURES, 5), (5, 3), (3, 3)]
    assert [layer.bias is not None for layer in dense_layers(small)] == [use_bias, use_bias, True]
    assert small.count_params() == masks.active_parameters(spec) == count_active_parameters(model)
    assert small.count_params() < spec.n_parameters()


def test_compact_folds_constant_neurons_into_the_next_bias(data):
    """A neuron that receives nothing still outputs activation(bias or 0): keep its effect."""
    x, _ = data
    model = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN, 6), use_bias=False, hidden_activation="sigmoid")
    masks = [np.ones(layer.kernel_shape, np.float32) for layer in masked_dense_layers(model)]
    masks[0][:, [2, 5]] = 0  # hidden-0 neurons 2 and 5 receive nothing: sigmoid(0) = 0.5
    masks[1][3, :] = 0  # hidden-0 neuron 3 sends nothing
    masks[1][:, 4] = 0  # hidden-1 neuron 4 receives nothing ...
    masks[2][1, :] = 0  # ... and hidden-1 neuron 1 sends nothing
    set_head_masks(model, masks)
    randomize(model)

    small = assert_compact_matches(model, x)

    dense = dense_layers(small)
    assert [tuple(layer.kernel.shape) for layer in dense] == [(N_FEATURES, 5), (5, 4), (4, 3)]
    # The masked hidden layers had no bias; the compact ones gain one to hold the constants.
    assert dense[1].bias is not None and dense[2].bias is not None and dense[0].bias is None


def test_compact_bakes_single_pruned_connections_and_drops_dead_rows(data):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,))
    connections = random_mask((N_FEATURES, HIDDEN), seed=8, p=0.6)
    connections[[0, 7], :] = 0  # two features lose every connection
    encoding = ConnectionPruning(spec, layer=0)
    masks = encoding.decode(connections.ravel().astype(int))
    model = build_masked_head(N_FEATURES, N_CLASSES, spec.hidden, kernel_masks=masks.kernel_masks())
    randomize(model)

    small = assert_compact_matches(model, x)

    assert small.get_layer("feature_gather").indices == tuple(i for i in range(N_FEATURES) if i not in (0, 7))
    kernel = keras.ops.convert_to_numpy(small.get_layer("compact_dense_0").kernel)
    kept_mask = connections[[i for i in range(N_FEATURES) if i not in (0, 7)]]
    assert np.all(kernel[kept_mask == 0] == 0) and np.all(kernel[kept_mask == 1] != 0)
    assert small.count_params() == 10 * HIDDEN + HIDDEN * N_CLASSES + N_CLASSES < spec.n_parameters()
    # The dense storage still holds the zeros inside kept rows; the sparse count does not.
    assert count_active_parameters(model) == masks.active_parameters(spec) < small.count_params()


def test_compact_of_a_fully_pruned_input_keeps_a_valid_constant_model(data):
    x, _ = data
    model = build_masked_head(N_FEATURES, N_CLASSES, (HIDDEN,), use_bias=True)
    set_head_masks(model, [np.zeros((N_FEATURES, HIDDEN)), np.ones((HIDDEN, N_CLASSES))])
    randomize(model)
    small = assert_compact_matches(model, x)
    assert [tuple(layer.kernel.shape) for layer in dense_layers(small)] == [(1, 1), (1, N_CLASSES)]
    # nothing reaches the output from the input: every sample gets the same prediction
    out = predict(small, x)
    np.testing.assert_allclose(out, np.broadcast_to(out[:1], out.shape), atol=1e-6)
    # no kernel entry is active: only the biases of the placeholder unit and of the output remain
    assert count_active_parameters(model) == 1 + N_CLASSES


def test_compact_model_saves_and_loads_as_keras_file(tmp_path, data):
    x, _ = data
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,))
    model = build_masked_head(
        N_FEATURES, N_CLASSES, spec.hidden, kernel_masks=FeatureSelection(spec).kernel_masks([0, 1] * 6)
    )
    randomize(model)
    small = strip_masks(model)
    path = tmp_path / "compact.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(predict(loaded, x), predict(small, x))
    assert head_types(loaded) == [FeatureGather, keras.layers.Dense, keras.layers.Dense]


def _backbone_then_head(kind: str, head: keras.Model) -> tuple[keras.Model, keras.layers.Layer]:
    backbone = keras.layers.Dense(N_FEATURES, activation="tanh", name="backbone")
    if kind == "sequential":
        return keras.Sequential([keras.Input((5,)), backbone, head]), backbone
    if kind == "functional_nested":
        inputs = keras.Input((5,))
        return keras.Model(inputs, head(backbone(inputs))), backbone
    inputs = keras.Input((5,))
    x = backbone(inputs)
    for layer in masked_dense_layers(head):  # the head's layers inlined in the outer graph
        x = layer(x)
    return keras.Model(inputs, x), backbone


@pytest.mark.parametrize("kind", ["sequential", "functional_nested", "functional_flat"])
def test_compact_keeps_a_backbone_in_front_of_the_head(kind):
    x = np.random.default_rng(9).normal(size=(16, 5)).astype(np.float32)
    spec = HeadSpec(N_FEATURES, N_CLASSES, (HIDDEN,))
    head = build_masked_head(
        N_FEATURES, N_CLASSES, spec.hidden, kernel_masks=FeatureSelection(spec).kernel_masks([1, 1, 0] * 4)
    )
    randomize(head)
    model, backbone = _backbone_then_head(kind, head)

    small = compact(model)

    np.testing.assert_allclose(predict(small, x), predict(model, x), atol=1e-5)
    assert small.get_layer("backbone") is backbone  # shared, not copied
    assert head_types(small) == [keras.layers.Dense, FeatureGather, keras.layers.Dense, keras.layers.Dense]
    # The masked model's count_params() includes the masks: compare trainable weights.
    assert small.count_params() == trainable_count(model) - 4 * HIDDEN
    # the backbone in front is not counted
    assert count_active_parameters(model) == count_active_parameters(head) == compact(head).count_params()


def test_compact_rejects_a_model_without_a_masked_head():
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="does not end with MaskedDense"):
        compact(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    with pytest.raises(ValueError, match="does not end with MaskedDense"):
        count_active_parameters(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    two = keras.Model(inputs, [MaskedDense(2)(inputs), MaskedDense(3)(inputs)], name="two")
    with pytest.raises(ValueError, match=r"^model 'two' has 2 outputs; expected one \(a head\)$"):
        compact(two)


# ------------------------------------------------------------------------ module roles

_PRIVATE_GRAPH = {"_keras_history", "_inbound_nodes"}


def _private_graph_uses(module) -> dict[str, set[str]]:
    """Keras-private graph attributes read by each top-level function of ``module``."""
    uses: dict[str, set[str]] = {}
    for node in ast.parse(inspect.getsource(module)).body:
        found = {
            n.attr if isinstance(n, ast.Attribute) else n.value
            for n in ast.walk(node)
            if (isinstance(n, ast.Attribute) and n.attr in _PRIVATE_GRAPH)
            or (isinstance(n, ast.Constant) and n.value in _PRIVATE_GRAPH)
        }
        if found:
            uses[getattr(node, "name", type(node).__name__)] = found
    return uses


def test_keras_private_graph_access_stays_in_one_export_helper():
    assert _private_graph_uses(export_module) == {"_producer": _PRIVATE_GRAPH}
    assert _private_graph_uses(layers_module) == {}


def test_layers_do_not_import_the_export():
    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(layers_module))):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not any(name.startswith("evoprune_tf") for name in imported), imported
    assert not hasattr(layers_module, "compact") and not hasattr(layers_module, "count_active_parameters")
    assert export_module.MaskedDense is layers_module.MaskedDense  # one class, imported from layers


# ------------------------------------------------------------------------ other backend

_JAX_SCRIPT = textwrap.dedent(
    """
    import numpy as np, keras
    from evoprune_tf.nn.export import compact
    from evoprune_tf.nn.layers import build_masked_head, masked_dense_layers, set_head_masks
    assert keras.backend.backend() == "jax"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12)).astype("float32"); y = rng.integers(0, 3, 16)
    model = build_masked_head(12, 3, (8,), use_bias=True, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", jit_compile=True)
    before = model.predict(x, verbose=0)
    masks = [(rng.random(l.kernel_shape) < 0.5).astype("float32") for l in masked_dense_layers(model)]
    masks[0][[1, 4], :] = 0
    set_head_masks(model, masks)
    assert np.abs(model.predict(x, verbose=0) - before).max() > 1e-4  # the jitted predict sees the new mask
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for layer, mask in zip(masked_dense_layers(model), masks):
        assert np.all(keras.ops.convert_to_numpy(layer.kernel)[mask == 0] == 0)
    small = compact(model)
    a, b = model.predict(x, verbose=0), small.predict(x, verbose=0)
    assert np.abs(a - b).max() < 1e-5, np.abs(a - b).max()
    kept = small.get_layer("feature_gather").indices
    assert 1 not in kept and 4 not in kept and small.count_params() < 12 * 8 + 8 + 8 * 3 + 3, kept
    print("ok")
    """
)


@pytest.mark.slow  # a fresh interpreter importing JAX and Keras: 20-30 s on the shared 2-core machine
@pytest.mark.skipif(
    keras.backend.backend() == "jax" or importlib.util.find_spec("jax") is None,
    reason="needs jax, and a session on another backend",
)
def test_masked_heads_and_compact_work_on_the_jax_backend():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
