"""Cached backbone features split into train / validation / test.

`FeatureSplits` is the one object that flows from feature extraction into fitness
evaluation: evaluation never sees images, backbones or Keras, only these arrays.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from evoprune_tf.splits import ThreeSplits


@dataclasses.dataclass(frozen=True)
class FeatureSplits(ThreeSplits):
    """Float32 features and integer labels for the three splits of a dataset.

    Evolution selects on ``val`` only; ``test`` is kept for the final report.

    Attributes:
        x_train: ``(n_train, n_features)`` float32 features.
        y_train: ``(n_train,)`` int labels in ``[0, n_classes)``.
        x_val: ``(n_val, n_features)`` float32 features.
        y_val: ``(n_val,)`` int labels.
        x_test: ``(n_test, n_features)`` float32 features (may have 0 rows).
        y_test: ``(n_test,)`` int labels.
        class_names: one name per class, index = label.
        name: a short name of the dataset (for tags and reports).
        scaling: ``(mean, std)`` per feature when the arrays were standardised with
            `standardized`; raw backbone features are ``x * std + mean``. Exported models
            put this scaling in front, so they take raw features.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    name: str = "dataset"
    scaling: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        for split, (x, y) in self.splits().items():
            if x.ndim != 2:
                raise ValueError(f"x_{split} has shape {x.shape}; expected (samples, features)")
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)} labels")
            if x.shape[1] != self.x_train.shape[1]:
                raise ValueError(
                    f"x_{split} has {x.shape[1]} features; expected {self.x_train.shape[1]} like x_train"
                )
        if len(self.x_train) == 0 or len(self.x_val) == 0:
            raise ValueError("train and validation splits must not be empty")
        n_classes = len(self.class_names)
        for split, (_, y) in self.splits().items():
            if len(y) and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(
                    f"y_{split} holds labels in [{y.min()}, {y.max()}]; expected [0, {n_classes - 1}]"
                )

    @property
    def n_features(self) -> int:
        """Width of the feature vectors (the backbone's pooled output)."""
        return int(self.x_train.shape[1])

    def standardized(self) -> "FeatureSplits":
        """Features z-scored with the *train* split's per-feature mean and std.

        Random-weight backbones give pooled features of ~1e-11 that no head learns from
        at the reference learning rate; standardised, they carry their signal. Constant
        features keep a std of 1.
        """
        if self.scaling is not None:
            return self
        mean = self.x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = self.x_train.std(axis=0, dtype=np.float64).astype(np.float32)
        std[~(std > 0)] = 1.0

        def z(x: np.ndarray) -> np.ndarray:
            return ((x - mean) / std).astype(np.float32)

        return dataclasses.replace(
            self, x_train=z(self.x_train), x_val=z(self.x_val), x_test=z(self.x_test), scaling=(mean, std)
        )

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Apply this split's scaling to other raw features (e.g. OOD images)."""
        if self.scaling is None:
            return x
        mean, std = self.scaling
        return ((x - mean) / std).astype(np.float32)

    def summary(self) -> str:
        """One line: name, sizes and width."""
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val / {len(self.x_test)} test, "
            f"{self.n_features} features, {self.n_classes} classes"
        )
