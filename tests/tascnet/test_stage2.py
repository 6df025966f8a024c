"""TASCNet stage 2: layer eligibility, the prune loop, rollback, settings and config errors.

Keras' functions run eagerly in this module (tests/helpers_eager.py): each prune iteration
builds a new model, and tracing its train and predict functions was most of the CPU; the
loop's logic is the point here (graph mode: `test_stage2_continues_from_a_stored_state_exactly`
in test_tascnet_resume.py, tests/tascnet/test_tascnet_latency.py).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
from helpers_eager import EAGER_DATA_WARNING, eager_functions

from evoprune_tf.nn.text_cnn import build_text_cnn
from evoprune_tf.methods.tascnet import stage2
from evoprune_tf.methods.tascnet.models import TrainRecipe
from evoprune_tf.methods.tascnet.stage2 import PruneSettings, plot_tradeoff, prunable_layers, tascnet_prune

pytestmark = pytest.mark.filterwarnings(EAGER_DATA_WARNING)


@pytest.fixture(scope="module", autouse=True)
def _eager():
    with eager_functions():
        yield


def _conv_net(width: int = 16) -> keras.Model:
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(width, 1, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, activation="relu", name="d1")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(x))


def _residual_net() -> keras.Model:
    inputs = keras.Input((6, 6, 4))
    a = keras.layers.Conv2D(12, 1, name="stem")(inputs)
    b = keras.layers.Conv2D(12, 3, padding="same", name="branch")(a)
    x = keras.layers.Add(name="add")([a, b])
    c = keras.layers.Conv2D(20, 1, name="solo")(x)
    x = keras.layers.GlobalAveragePooling2D()(c)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def _data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 4)).astype("float32")
    y = (x[:, :, :, 0].mean(axis=(1, 2)) > 0).astype("int64")
    return x, y


def test_prunable_layers_sole_producers_above_threshold() -> None:
    model = _residual_net()
    # stem and branch are summed by Add: one group with two producers, left whole.
    assert prunable_layers(model, min_filters=4) == ["solo"]
    assert prunable_layers(model, min_filters=20) == []
    assert prunable_layers(_conv_net(), min_filters=8) == ["c1", "c2"]
    assert prunable_layers(_conv_net(), min_filters=8, layer_names=["c2"]) == ["c2"]


def test_prune_loop_shrinks_model_and_logs_each_iteration(tmp_path) -> None:
    x, y = _data()
    seen = []
    settings = PruneSettings(prune_percent=25, min_filters=4, epochs=1, reg_epochs=1, max_iterations=2,
                             tolerance=1.0, recipe=TrainRecipe(lr=0.01))
    result = tascnet_prune(_conv_net(), (x, y), (x[:32], y[:32]), settings, on_iteration=seen.append, seed=0,
                           test=(x[:16], y[:16]))
    assert [r.iteration for r in result.history] == [0, 1, 2] == [r.iteration for r in seen]
    assert [r.filters for r in result.history] == [
        {"c1": 16, "c2": 16}, {"c1": 12, "c2": 12}, {"c1": 9, "c2": 9},
    ]
    params = [r.params for r in result.history]
    flops = [r.flops for r in result.history]
    assert params[0] > params[1] > params[2] and flops[0] > flops[1] > flops[2]
    assert result.model.count_params() == params[-1] and result.final is result.history[-1]
    assert result.model.get_layer("d1").kernel.shape == (9, 8)  # the Dense lost the matching rows
    # the final record's accuracies are those of the returned model, scored here on the same data
    for (xs, ys), reported in (((x[:32], y[:32]), result.final.val_accuracy), ((x[:16], y[:16]), result.final.test_accuracy)):
        assert reported == pytest.approx(float(np.mean(result.model.predict(xs, verbose=0).argmax(axis=1) == ys)))
    metrics = result.history[1].metrics()
    assert metrics["filters.c1"] == 12 and metrics["removed"] == 8 and "test_accuracy" in metrics
    assert result.model.predict(x[:4], verbose=0).shape == (4, 2)
    path = plot_tradeoff(result.history, str(tmp_path / "trade.png"))
    assert (tmp_path / "trade.png").stat().st_size > 1000 and path.endswith("trade.png")


def test_rollback_when_accuracy_leaves_the_tolerance(monkeypatch) -> None:
    x, y = _data()
    scores = iter([(0.5, 0.90), (0.5, 0.89), (0.5, 0.85), (0.5, 0.99)])
    monkeypatch.setattr(stage2, "evaluate_model", lambda model, data: next(scores))
    settings = PruneSettings(prune_percent=25, min_filters=4, epochs=1, reg_epochs=0, max_iterations=5, tolerance=0.02)
    result = tascnet_prune(_conv_net(), (x, y), (x[:32], y[:32]), settings, seed=0)
    assert [r.accepted for r in result.history] == [True, True, False]
    assert result.final.iteration == 1 and result.final.filters == {"c1": 12, "c2": 12}
    assert result.model.get_layer("c1").filters == 12  # the rejected iteration is rolled back
    assert "rolled back" in result.stop_reason


def test_patience_prunes_on_past_a_rejected_iteration_and_keeps_the_last_accepted(monkeypatch) -> None:
    x, y = _data()
    # iteration 0 .. 5: a dip at 1 (within patience), back within the tolerance at 2, then 3 dips in a row.
    scores = iter([(0.5, 0.90), (0.5, 0.80), (0.5, 0.89), (0.5, 0.50), (0.5, 0.50), (0.5, 0.50), (0.5, 0.99)])
    monkeypatch.setattr(stage2, "evaluate_model", lambda model, data: next(scores))
    settings = PruneSettings(prune_percent=25, min_filters=2, epochs=1, reg_epochs=0, max_iterations=8,
                             tolerance=0.02, patience=2)
    result = tascnet_prune(_conv_net(), (x, y), (x[:32], y[:32]), settings, seed=0)
    assert [r.accepted for r in result.history] == [True, False, True, False, False, False]
    widths = [r.filters["c1"] for r in result.history]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 6  # it pruned on from rejected models
    assert result.final.iteration == 2 and result.model.get_layer("c1").filters == widths[2]
    assert "iterations 3, 4, 5 rolled back to iteration 2" in result.stop_reason
    # The same scores with the paper's rule stop at the first dip.
    scores = iter([(0.5, 0.90), (0.5, 0.80)])
    result = tascnet_prune(_conv_net(), (x, y), (x[:32], y[:32]), dataclasses.replace(settings, patience=0), seed=0)
    assert [r.accepted for r in result.history] == [True, False] and result.final.iteration == 0


def test_patience_rolls_back_trailing_rejections_at_the_iteration_cap(monkeypatch) -> None:
    x, y = _data()
    scores = iter([(0.5, 0.90), (0.5, 0.91), (0.5, 0.70)])
    monkeypatch.setattr(stage2, "evaluate_model", lambda model, data: next(scores))
    settings = PruneSettings(prune_percent=25, min_filters=4, epochs=1, reg_epochs=0, max_iterations=2,
                             tolerance=0.02, patience=3)
    result = tascnet_prune(_conv_net(), (x, y), (x[:32], y[:32]), settings, seed=0)
    assert [r.accepted for r in result.history] == [True, True, False]
    assert result.final.iteration == 1 and result.model.get_layer("c1").filters == result.history[1].filters["c1"]
    assert result.stop_reason == "max_iterations=2 reached; iteration 2 rolled back to iteration 1"


def test_the_rolled_back_model_has_the_weights_it_was_scored_with(monkeypatch) -> None:
    """The rejected iteration's similarity training and merge edit the accepted model in place first."""
    x, y = _data()
    scored = {}
    record = stage2._record

    def spy(model, iteration, *args, **kwargs):
        scored[iteration] = [w.copy() for w in model.get_weights()]
        return record(model, iteration, *args, **kwargs)

    scores = iter([(0.5, 0.90), (0.5, 0.91), (0.5, 0.50)])
    monkeypatch.setattr(stage2, "_record", spy)
    monkeypatch.setattr(stage2, "evaluate_model", lambda model, data: next(scores))
    settings = PruneSettings(prune_percent=25, min_filters=4, epochs=1, reg_epochs=1, max_iterations=4,
                             tolerance=0.02, mode="merge", recipe=TrainRecipe(lr=0.05))
    result = tascnet_prune(_conv_net(), (x, y), (x[:32], y[:32]), settings, seed=0)
    assert [r.accepted for r in result.history] == [True, True, False] and result.final.iteration == 1
    final = result.model.get_weights()
    assert len(final) == len(scored[1]) and all(np.array_equal(a, b) for a, b in zip(final, scored[1]))


def test_stops_when_nothing_is_left_to_prune() -> None:
    x, y = _data(48)
    settings = PruneSettings(prune_percent=50, min_filters=10, epochs=1, reg_epochs=0, max_iterations=5, tolerance=1.0,
                             mode="merge")
    result = tascnet_prune(_conv_net(), (x, y), (x[:16], y[:16]), settings, seed=0)
    assert result.final.filters == {"c1": 8, "c2": 8}
    assert "no conv layer" in result.stop_reason and len(result.history) == 2


def test_text_cnn_conv1d_filters_are_pruned() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6)).astype("float32")
    x = rng.integers(2, 40, size=(64, 10)).astype("int32")
    y = (x[:, 0] > 20).astype("int64")
    model = build_text_cnn(emb, 2, max_len=10, filters=10, filter_sizes=(3, 4))
    settings = PruneSettings(prune_percent=20, min_filters=5, epochs=1, max_iterations=1, tolerance=1.0)
    result = tascnet_prune(model, (x, y), (x, y), settings, seed=0)
    assert result.final.filters == {"conv_k3": 8, "conv_k4": 8}
    assert result.model.get_layer("predictions").kernel.shape == (16, 2)


@pytest.mark.parametrize("percent", [0, -1, 50.5, 60])
def test_prune_percent_outside_range(percent: float) -> None:
    with pytest.raises(ValueError, match=r"prune_percent=.*expected a percentage in \(0, 50\]"):
        PruneSettings(prune_percent=percent)


def test_settings_reject_bad_order_and_mode() -> None:
    with pytest.raises(ValueError, match="order='ascending'"):
        PruneSettings(order="ascending")
    with pytest.raises(ValueError, match="mode='average'"):
        PruneSettings(mode="average")
    with pytest.raises(ValueError, match=r"patience=-1; expected an integer >= 0"):
        PruneSettings(patience=-1)
    assert math.isclose(TrainRecipe(lr=0.1, halve_every=20).learning_rate(41), 0.025)


def test_config_section_surfaces_bad_tascnet_values() -> None:
    from evoprune_tf.app.config import ConfigError, config_from_dict

    config = config_from_dict({"algorithm": {"name": "tascnet"}, "tascnet": {"stage": 2, "prune_percent": 10}})
    assert config.tascnet.stage == 2 and config.tascnet.min_filters == 128
    with pytest.raises(ConfigError, match=r"tascnet.prune_percent=60.0; expected a percentage in \(0, 50\]"):
        config_from_dict({"algorithm": {"name": "tascnet"}, "tascnet": {"prune_percent": 60}})
    with pytest.raises(ConfigError, match="with tascnet.text_corpus; expected 2"):
        config_from_dict({"algorithm": {"name": "tascnet"}, "tascnet": {"text_corpus": "x", "stage": "both"}})
    with pytest.raises(ConfigError, match=r"tascnet.patience=-2; expected an integer >= 0"):
        config_from_dict({"algorithm": {"name": "tascnet"}, "tascnet": {"patience": -2}})
    with pytest.raises(ConfigError, match="tascnet.stage=3 has the wrong type"):
        config_from_dict({"algorithm": {"name": "tascnet"}, "tascnet": {"stage": 3}})


@pytest.mark.slow
def test_run_tascnet_text_own_corpus_and_glove_file(tmp_path) -> None:
    """A corpus of one .txt file per class and a GloVe text file go through the app runner."""
    from evoprune_tf.app.config import config_from_dict
    from evoprune_tf.methods.tascnet.report import results_table
    from evoprune_tf.methods.tascnet.run import run_tascnet

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    good, bad = ["great", "fine", "superb", "lovely"], ["awful", "dull", "poor", "bad"]
    filler = ["the", "film", "was", "a", "story", "plot", "and", "very"]
    for name, words in (("good", good), ("bad", bad)):
        lines = [" ".join(rng.choice(filler, 6).tolist() + [rng.choice(words)]) for _ in range(60)]
        (corpus / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    vocab = good + bad + filler
    glove = tmp_path / "glove.txt"
    glove.write_text("\n".join(f"{w} " + " ".join(f"{v:.3f}" for v in rng.normal(size=8)) for w in vocab) + "\n")
    config = config_from_dict({
        "seed": 0, "progress": False, "algorithm": {"name": "tascnet"},
        "data": {"val_fraction": 0.2, "test_fraction": 0.2},
        "tracking": {"enabled": False},
        "tascnet": {"stage": 2, "text_corpus": str(corpus), "embeddings": str(glove), "min_filters": 8,
                    "text_filters": 12, "prune_percent": 25, "final_epochs": 2, "epochs": 1,
                    "max_iterations": 2, "tolerance": 1.0, "lr": 0.05},
    })
    report = run_tascnet(config, out_dir=tmp_path / "out")
    assert report["backbone"] == "text_cnn" and report["iterations"] == 2
    # 12 -> 9 (25 %) -> 7 (floor of 2.25) filters in each of the three Conv1D blocks.
    assert report["unpruned"]["conv_filters"] == 36 and report["pruned"]["conv_filters"] == 21
    assert report["reduction"]["conv_filters"] == pytest.approx(15 / 36)
    assert (tmp_path / "out" / "models" / "tascnet.keras").exists()
    assert "| 0 |" in results_table([report])
    bad_file = corpus / "bad.txt"
    bad_file.write_bytes(b"fine line\n\xff\xfe broken\n")
    with pytest.raises(ValueError, match=r"bad.txt' line 2 is not valid UTF-8"):
        run_tascnet(config)
