"""`TrainedHead`: what every engine returns, NumPy arrays only (scoring, reports, export)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
from scipy.special import softmax

from evoprune_tf.encodings import HeadMasks, HeadSpec
from evoprune_tf.train.blas import blas_threads
from evoprune_tf.train.plan import HeadPlan, with_zero_column

__all__ = ["TrainedHead", "training_flops", "unstack_heads"]


@dataclasses.dataclass
class TrainedHead:
    """A trained compact head: active-unit indices and the weights between them.

    Attributes:
        spec: the full head's shape.
        masks: the decoded masks the head was trained with.
        indices: per boundary, the indices of the kept units in the full head (padded
            slots hold ``-1``; input padding reads a zero column).
        kernels: per layer, compact kernels ``(len(indices[l]), len(indices[l+1]))``
            (pruned connections stored as zeros).
        biases: per layer, compact biases or None.
        epochs_run: epochs actually trained (early stopping may end sooner).
        keras_logits: for a user head whose layers the NumPy forward (ReLU hidden
            layers, linear logits) cannot reproduce, a function mapping *compact* inputs
            ``(n, len(indices[0]))`` to logits with the trained Keras model; None
            otherwise. Not pickled (a head sent to another process uses the NumPy forward).
        keras_model: with ``keras_logits``, a function building the trained head as a
            Keras model from *compact* inputs to softmax probabilities (what the report
            exports); None otherwise. Not pickled either.
    """

    spec: HeadSpec
    masks: HeadMasks
    indices: list[np.ndarray]
    kernels: list[np.ndarray]
    biases: list[np.ndarray | None]
    epochs_run: int
    keras_logits: Callable[[np.ndarray], np.ndarray] | None = dataclasses.field(default=None, repr=False,
                                                                                 compare=False)
    keras_model: Callable[[], Any] | None = dataclasses.field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["keras_logits"] = state["keras_model"] = None  # a bound Keras model does not travel
        return state

    def logits(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Pre-softmax outputs for full-width features.

        Args:
            x: features ``(n, n_features)``.
            chunk: rows per forward pass (bounds memory).

        Returns:
            float32 logits ``(n, n_classes)``.
        """
        x = np.asarray(x, dtype=np.float32)
        idx = np.where(self.indices[0] < 0, x.shape[1], self.indices[0])
        parts = []
        with blas_threads(1):  # the same sums in every process, whatever its BLAS threads (`train.blas`)
            for start in range(0, len(x), chunk):
                a = with_zero_column(x[start : start + chunk])[:, idx]
                parts.append(self.keras_logits(a) if self.keras_logits is not None else self._numpy_logits(a))
        return np.concatenate(parts) if parts else np.zeros((0, self.spec.n_classes), np.float32)

    def _numpy_logits(self, a: np.ndarray) -> np.ndarray:
        for layer, kernel in enumerate(self.kernels):
            a = a @ kernel
            if self.biases[layer] is not None:
                a += self.biases[layer]
            if layer < len(self.kernels) - 1:
                np.maximum(a, 0, out=a)
        return a

    def predict_proba(self, x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Softmax probabilities (optionally temperature-scaled) for full-width features.

        Args:
            x: features ``(n, n_features)``.
            temperature: divides the logits before the softmax.

        Returns:
            ``(n, n_classes)`` probabilities.
        """
        return softmax(self.logits(x) / temperature, axis=-1).astype(np.float32)

    def full_weights(self) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Full-size kernels and biases (zeros where pruned), for a `MaskedDense` model.

        Returns:
            One full ``(in, out)`` kernel and one ``(out,)`` bias (or None) per layer.
        """
        kernels, biases = [], []
        widths = self.spec.widths
        for layer, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            rows, cols = self.indices[layer], self.indices[layer + 1]
            keep_r, keep_c = rows >= 0, cols >= 0
            full = np.zeros((widths[layer], widths[layer + 1]), dtype=np.float32)
            full[np.ix_(rows[keep_r], cols[keep_c])] = kernel[np.ix_(keep_r, keep_c)]
            kernels.append(full)
            if bias is None:
                biases.append(None)
            else:
                full_b = np.zeros(widths[layer + 1], dtype=np.float32)
                full_b[cols[keep_c]] = bias[keep_c]
                biases.append(full_b)
        return kernels, biases


def training_flops(masks: HeadMasks, n_samples: int, epochs: int) -> float:
    """FLOPs to train the *active* head: forward, weight gradients and input gradients.

    Counted per sample as ``2*a*b`` for each of forward and weight-gradient matmuls of
    every layer with ``a`` active inputs and ``b`` active outputs, plus ``2*a*b`` for
    the input-gradient matmul of every layer but the first.

    Args:
        masks: the head's masks.
        n_samples: training samples per epoch.
        epochs: epochs.

    Returns:
        The FLOP count (FLOPs = 2 MACs).
    """
    counts = [int(u.sum()) for u in masks.units]
    per_sample = 0.0
    for layer in range(len(counts) - 1):
        mult = 4 if layer == 0 else 6
        per_sample += mult * counts[layer] * counts[layer + 1]
    return per_sample * n_samples * epochs


def unstack_heads(spec: HeadSpec, plans: Sequence[HeadPlan], heads: Sequence[HeadMasks],
                  kernels: Sequence[np.ndarray], biases: Sequence[np.ndarray | None],
                  epochs_run: np.ndarray) -> list[TrainedHead]:
    """Split a group's stacked weights into one `TrainedHead` per head (NumPy copies).

    Args:
        spec: the full head.
        plans: the heads' layouts.
        heads: the heads' masks.
        kernels: per layer, stacked kernels ``(P, in, out)``.
        biases: per layer, stacked biases ``(P, out)`` or ``(P, 1, out)``, or None.
        epochs_run: epochs trained per head.

    Returns:
        One head per plan, in order.
    """
    kernels = [np.asarray(k) for k in kernels]
    biases = [None if b is None else np.asarray(b).reshape(len(plans), -1) for b in biases]
    return [
        TrainedHead(
            spec=spec,
            masks=heads[p],
            indices=[idx.copy() for idx in plans[p].indices],
            kernels=[np.ascontiguousarray(k[p], dtype=np.float32) for k in kernels],
            biases=[None if b is None else np.ascontiguousarray(b[p], dtype=np.float32) for b in biases],
            epochs_run=int(epochs_run[p]),
        )
        for p in range(len(plans))
    ]
