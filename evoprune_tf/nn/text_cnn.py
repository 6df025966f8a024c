"""Kim's (2014) convolutional sentence classifier as a plain Keras functional model.

Only standard Keras layers are used, with stable names, so that generic filter surgery
can follow the graph: each ``conv_k<k>`` Conv1D's output channels feed ``pool_k<k>``
(GlobalMaxPooling1D), the pooled vectors are concatenated in ``filter_sizes`` order by
``concat`` (each block at offset ``i * filters``), and the matching input rows of
``predictions`` (Dense) go with a removed filter::

    tokens (int) -> embedding -> conv_k3 -> pool_k3 --\\
                              -> conv_k4 -> pool_k4 ----> concat -> dropout -> predictions
                              -> conv_k5 -> pool_k5 --/
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

__all__ = ["build_text_cnn", "conv_layer_name"]


def conv_layer_name(kernel_size: int) -> str:
    """Name of the Conv1D block of one filter width in `build_text_cnn` (``conv_k3``).

    Args:
        kernel_size: the filter width (tokens).

    Returns:
        The layer name.
    """
    return f"conv_k{int(kernel_size)}"


def build_text_cnn(
    embedding_matrix: np.ndarray,
    n_classes: int,
    *,
    max_len: int,
    filter_sizes: Sequence[int] = (3, 4, 5),
    filters: int = 100,
    dropout: float = 0.5,
    trainable_embeddings: bool = False,
    name: str = "text_cnn",
) -> keras.Model:
    """Build the Kim CNN: embeddings, parallel Conv1D + max-over-time pooling, softmax.

    The model is returned uncompiled (compile it with e.g. Adam and
    ``sparse_categorical_crossentropy``; labels are integer class ids).

    Args:
        embedding_matrix: ``(vocab_size, dim)`` initial embeddings, e.g. from
            `evoprune_tf.data.text.load_glove`; row 0 is the padding token.
        n_classes: number of classes (>= 2) of the softmax output.
        max_len: length of the int token-id input sequences; at least the widest filter.
        filter_sizes: filter widths, one Conv1D block each (distinct; Kim: 3, 4, 5).
        filters: filters per block (Kim: 100).
        dropout: dropout rate before the output layer, in ``[0, 1)``.
        trainable_embeddings: fine-tune the embeddings (Kim's "non-static") instead of
            freezing them ("static").
        name: model name.

    Returns:
        The functional model with layers ``tokens``, ``embedding``, ``conv_k<k>``,
        ``pool_k<k>``, ``concat`` (only with two or more filter sizes: Keras'
        Concatenate needs two inputs), ``dropout`` and ``predictions``.

    Raises:
        ValueError: a bad argument (the message names it).
    """
    matrix = np.asarray(embedding_matrix, dtype=np.float32)
    if matrix.ndim != 2 or min(matrix.shape) < 1:
        raise ValueError(f"embedding_matrix has shape {matrix.shape}; expected (vocab_size, dim)")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("embedding_matrix holds NaN or infinite values; expected finite numbers")
    for label, value, low in (("n_classes", n_classes, 2), ("max_len", max_len, 1), ("filters", filters, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{label}={value!r}; expected an integer >= {low}")
    sizes = tuple(filter_sizes)
    if not sizes or any(isinstance(k, bool) or int(k) != k or k < 1 for k in sizes):
        raise ValueError(f"filter_sizes={filter_sizes!r}; expected one or more positive integers")
    sizes = tuple(int(k) for k in sizes)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"filter_sizes={filter_sizes!r} repeats a width; expected distinct widths (layer names)")
    if max(sizes) > max_len:
        raise ValueError(f"max_len={max_len} is shorter than the widest filter ({max(sizes)}); expected max_len >= it")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout={dropout!r}; expected a rate in [0, 1)")

    vocab_size, dim = matrix.shape
    tokens = keras.Input(shape=(int(max_len),), dtype="int32", name="tokens")
    embedding = keras.layers.Embedding(
        vocab_size, dim, trainable=bool(trainable_embeddings), name="embedding"
    )
    embedded = embedding(tokens)
    pooled = []
    for k in sizes:
        conv = keras.layers.Conv1D(int(filters), k, activation="relu", name=conv_layer_name(k))(embedded)
        pooled.append(keras.layers.GlobalMaxPooling1D(name=f"pool_k{k}")(conv))
    features = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat")(pooled)
    features = keras.layers.Dropout(float(dropout), name="dropout")(features)
    outputs = keras.layers.Dense(int(n_classes), activation="softmax", name="predictions")(features)
    model = keras.Model(tokens, outputs, name=name)
    # Assigned after build rather than through an initializer: works on every backend
    # and keeps the config free of a 400k-value constant.
    embedding.set_weights([matrix])
    return model
