"""TASCNet stage 1: search space, candidate networks on the paper backbones, the search loop, the app runner."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import new_mlflow_store
from helpers_eager import EAGER_DATA_WARNING, eager_functions

from evoprune_tf.methods.tascnet.models import (
    Configuration,
    PrefixFeatures,
    SearchSpace,
    build_base,
    build_candidate,
    make_search_space,
)
from evoprune_tf.methods.tascnet.stage1 import CandidateEvaluator, _encode, make_toolbox, search_configuration


@pytest.fixture(scope="module")
def mobilenet() -> keras.Model:
    return build_base("MobileNetV2", weights=None, image_size=32)


def test_space_genes_decode_and_encode(mobilenet) -> None:
    space = make_search_space(mobilenet, levels=2)
    assert space.boundaries == ("block_15_add", "block_16_project_BN") and space.top == "out_relu"
    assert space.choices() == [3, 3, 4, 2, 4, 2, 2, 5, 10, 5, 10]
    assert len(space.gene_names()) == len(space.choices())
    config = space.decode([2, 2, 3, 1, 0, 0, 1, 4, 9, 0, 3])
    # unfreeze is clipped: 2 levels replaced leave none to unfreeze.
    assert config == Configuration(2, 0, ((256, 3), (32, 1)), ((1024, 0.9), (64, 0.3)))
    assert space.decode(_encode(space, config)) == config
    assert Configuration.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="does not fit the search space"):
        space.decode([3] + [0] * 10)
    assert space.level_layer(0) == "out_relu" and space.level_layer(1) == "block_16_project_BN"


def test_space_rejects_layers_that_are_not_conv_or_dense(mobilenet) -> None:
    with pytest.raises(ValueError, match=r"'block_16_depthwise' \(DepthwiseConv2D\) of the configuration space "
                                         r"is not a conv or dense layer"):
        make_search_space(mobilenet, layers=["Conv_1", "block_16_depthwise"])
    with pytest.raises(ValueError, match="'nope' of the configuration space is not in model"):
        make_search_space(mobilenet, layers=["nope"])
    space = make_search_space(mobilenet, layers=["Conv_1", "block_16_expand", "block_16_project"])
    # Each layer's level is the last separating layer below it (block 16 has no residual).
    assert space.boundaries == ("block_15_add", "block_16_depthwise_relu", "block_16_project_BN")
    shared = make_search_space(mobilenet, layers=["block_16_expand", "block_16_depthwise_relu" and "Conv_1"])
    assert shared.boundaries == ("block_15_add", "block_16_project_BN")


def _no_nested_models(model: keras.Model) -> bool:
    return not any(isinstance(layer, keras.Model) for layer in model.layers)


@pytest.mark.parametrize("name", ["VGG16", "ResNet50", "DenseNet121", "MobileNetV2"])
def test_candidates_on_paper_backbones(name: str) -> None:
    base = build_base(name, weights=None, image_size=32)
    space = make_search_space(base, levels=2)
    config = Configuration(1, 1, ((64, 3),), ((64, 0.2), (32, 0.0)))
    candidate = build_candidate(base, config, space, 5, seed=0)
    model = candidate.model
    assert _no_nested_models(model) and candidate.cut == space.boundaries[0]
    assert not candidate.prefix.trainable
    names = {layer.name for layer in model.layers}
    assert {"tascnet_conv1", "tascnet_bn1", "tascnet_pool", "tascnet_dense1", "tascnet_dense2", "predictions"} <= names
    assert space.top not in names  # the replaced top level is gone
    # Kept (unfrozen) pretrained layers keep the backbone's weights; their BN stays frozen.
    kept = [layer for layer in model.layers if layer.name in {l.name for l in base.layers} and layer.weights]
    assert kept
    for layer in kept:
        for mine, theirs in zip(layer.get_weights(), base.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
        assert layer.trainable == (not isinstance(layer, keras.layers.BatchNormalization))
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 32, 32, 3)).astype("float32")
    # Called eagerly: `predict` would trace the whole prefix (~3 s for DenseNet121) for the same shape.
    assert tuple(model(candidate.prefix(x, training=False), training=False).shape) == (2, 5)


def test_nothing_replaced_nothing_unfrozen(mobilenet) -> None:
    space = make_search_space(mobilenet, levels=2)
    candidate = build_candidate(mobilenet, Configuration(), space, 3)
    assert candidate.prefix is mobilenet and candidate.cut == "out_relu"
    assert [type(l).__name__ for l in candidate.model.layers] == [
        "InputLayer", "GlobalAveragePooling2D", "Dense", "Dropout", "Dense",
    ]
    with pytest.raises(ValueError, match="does not fit 2 levels"):
        build_candidate(mobilenet, Configuration(2, 1, ((32, 1), (32, 1))), space, 3)


def test_search_respects_budget_and_is_reproducible(mobilenet) -> None:
    space = make_search_space(mobilenet, levels=2)

    def fake(config: Configuration) -> dict:
        # Lower is better: favour wide first convs and one dense layer.
        loss = 1.0 + len(config.dense) - sum(f for f, _ in config.convs) / 512 + config.unfreeze * 0.1
        return {"val_loss": loss, "val_accuracy": 1 / loss, "params": 1, "seconds": 0.0}

    seen = []
    result = search_configuration(space, fake, population=4, evaluations=10, seed=3, on_candidate=seen.append)
    assert len(result.history) == 10 == len(seen) and [r.index for r in seen] == list(range(10))
    assert len({r.configuration for r in result.history}) == 10  # distinct configurations only
    assert result.best.val_loss == min(r.val_loss for r in result.history)
    again = search_configuration(space, fake, population=4, evaluations=10, seed=3)
    assert [r.genome for r in again.history] == [r.genome for r in result.history]
    initial = Configuration(0, 1, (), ((256, 0.5),))
    seeded = search_configuration(space, fake, population=3, evaluations=3, seed=0, initial=initial)
    assert seeded.history[0].configuration == initial
    with pytest.raises(ValueError, match="evaluations=0"):
        search_configuration(space, fake, evaluations=0)


def test_toolbox_works_with_deap_easimple(mobilenet) -> None:
    import random

    from deap import algorithms

    space = make_search_space(mobilenet, levels=2)
    toolbox = make_toolbox(space, lambda genome: (float(sum(genome)),))
    random.seed(0)
    pop, _ = algorithms.eaSimple(toolbox.population(n=6), toolbox, 0.5, 0.5, 3, verbose=False)
    counts = space.choices()
    assert all(0 <= g < c for ind in pop for g, c in zip(ind, counts))


@pytest.mark.filterwarnings(EAGER_DATA_WARNING)
def test_candidate_evaluator_caches_prefix_features(mobilenet) -> None:
    # Eager Keras functions (tests/helpers_eager.py): the cache is the point, not the traced graph.
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 255, size=(n, 32, 32, 3), dtype=np.uint8) for s, n in (("train", 24), ("val", 8))}
    labels = {"train": rng.integers(0, 2, 24), "val": rng.integers(0, 2, 8)}
    from evoprune_tf.backbones import preprocess

    features = PrefixFeatures(images, preprocess("MobileNetV2"))
    space = make_search_space(mobilenet, levels=2)
    evaluator = CandidateEvaluator(mobilenet, space, features, labels, 2, epochs=1)
    with eager_functions():
        first = evaluator(Configuration(1, 0, ((32, 1),), ((64, 0.0),)))
        second = evaluator(Configuration(1, 0, ((64, 3),), ((64, 0.0),)))
    assert np.isfinite(first["val_loss"]) and 0 <= first["val_accuracy"] <= 1 and first["params"] > 0
    assert second["params"] > first["params"]
    assert list(features._cache) == ["block_16_project_BN"]  # one cut, computed once


@pytest.mark.slow
@pytest.mark.filterwarnings(EAGER_DATA_WARNING)
def test_run_tascnet_images_end_to_end(tmp_path, untimed_keras) -> None:
    """Stage 1 + 2 through the app on a tiny .npz dataset, tracked in a temporary MLflow store.

    Keras' functions run eagerly (tests/helpers_eager.py): the plumbing is the point here;
    a traced run end to end, and the latency table this test does not read (its Keras
    timing is stubbed, eagerly it is most of the run): tests/tascnet/test_tascnet_latency.py.
    """
    import mlflow

    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.methods.tascnet.run import run_tascnet

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(48, 32, 32, 3), dtype=np.uint8)
    y = np.arange(48) % 2
    x[y == 1, :, :, 0] = 255  # a learnable signal
    np.savez(tmp_path / "tiny.npz", x_train=x[:36], y_train=y[:36], x_test=x[36:], y_test=y[36:])
    uri = new_mlflow_store(tmp_path)
    config = config_from_dict({
        "seed": 1, "progress": False, "algorithm": {"name": "tascnet"},
        "data": {"source": str(tmp_path / "tiny.npz"), "image_size": 32, "val_fraction": 0.25},
        "backbone": {"name": "MobileNetV2", "weights": "none"},
        "tracking": {"uri": uri, "experiment": "tascnet-test"},
        "report": {"export_model": False, "litert": False},  # LiteRT: tests/tascnet/test_tascnet_latency.py
        # Two candidates and one prune iteration: each logged per step (the search loop's budget and
        # offspring: test_search_respects_budget_and_is_reproducible above).
        "tascnet": {"stage": "both", "evaluations": 2, "population": 2, "search_epochs": 1, "final_epochs": 1,
                    "epochs": 1, "max_iterations": 1, "levels": 2, "tolerance": 1.0, "lr": 0.01,
                    "configuration": {"replace": 0, "unfreeze": 1, "dense": [[64, 0.0]]}},
    })
    with eager_functions():
        report = run_tascnet(config, out_dir=tmp_path / "out")
    assert report["stage1"]["candidates"] == 2 and report["iterations"] == 1
    assert report["pruned"]["filters"]["Conv_1"] < report["unpruned"]["filters"]["Conv_1"] or \
        report["pruned"]["params"] < report["unpruned"]["params"]
    for name in ("report.json", "stage1_candidates.csv", "stage2_history.csv", "plots/stage2_tradeoff.png",
                 "models/tascnet.keras"):
        assert (tmp_path / "out" / name).exists(), name
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags["evoprune.algorithm"] == "tascnet" and run.data.tags["evoprune.seed"] == "1"
    assert run.data.tags["evoprune.keras_backend"] == "tensorflow"  # this session's backend (tests/conftest.py)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "stage1.val_loss")] == [0, 1]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "stage2.params")] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "stage2_history.csv", "plots", "models"} <= artifacts
    exported = keras.models.load_model(tmp_path / "out" / "models" / "tascnet.keras")
    assert exported.predict(x[:3], verbose=0).shape == (3, 2)
