"""The pair-similarity loss of TASCNet stage 2 (step 3), in Keras.

`PairSimilarityModel` wraps a model so that ``fit`` minimises
``loss + weight * exp(-sum of the pairs' cosine similarities)``, computed from the
layers' *current* kernels with `keras.ops` (`PairSimilarityRegularizer`), which pulls
each pair together before one of its members is removed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import keras
import numpy as np

from evoprune_tf.tascnet.pairs import EPS, Pairs, check_pairs
from evoprune_tf.tascnet.trajectories import find_conv_layers

__all__ = ["PairSimilarityRegularizer", "PairSimilarityModel"]


class PairSimilarityRegularizer:
    """``weight * exp(-sum of the pairs' cosine similarities)`` from kernels, in `keras.ops`.

    The similarity of a pair is the cosine between the two filters' flattened *current*
    kernels. Minimising the term raises the similarities; the exponential makes its pull
    fade as the pairs align (a sum near 0 pulls with gradient ``weight``; a sum of 5 with
    ``weight * 0.007``).

    Args:
        pairs: ``{layer name: [(i, j), ...]}`` from `select_pairs`; layers without pairs
            are ignored.
        weight: the factor of the term (TASCNet: 1.0), >= 0.
        per_layer: sum ``exp(-sum over the layer's pairs)`` over layers instead of one
            exponential of the global sum, so that the pull of one layer does not fade
            because the others' pairs are already similar.
    """

    def __init__(self, pairs: Pairs, *, weight: float = 1.0, per_layer: bool = False) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight={weight!r}; expected a finite number >= 0")
        self.pairs = check_pairs(pairs)
        self.weight = float(weight)
        self.per_layer = bool(per_layer)
        self._indices = {
            name: (np.array([p[0] for p in ps], dtype="int32"), np.array([p[1] for p in ps], dtype="int32"))
            for name, ps in self.pairs.items()
        }

    @property
    def layer_names(self) -> list[str]:
        """The layers the term reads."""
        return list(self.pairs)

    def similarities(self, kernels: Mapping[str, Any]) -> dict[str, Any]:
        """Each pair's cosine similarity, as backend tensors.

        Args:
            kernels: ``{layer name: kernel}``: Keras variables, backend tensors or arrays
                in ``(*window, in, filters)`` layout.

        Returns:
            ``{layer name: (n_pairs,) tensor}``.
        """
        out = {}
        for name, (first, second) in self._indices.items():
            kernel = kernels[name]
            rows = keras.ops.reshape(kernel, (-1, keras.ops.shape(kernel)[-1]))
            a = keras.ops.take(rows, first, axis=1)
            b = keras.ops.take(rows, second, axis=1)
            dot = keras.ops.sum(a * b, axis=0)
            norms = keras.ops.sqrt(keras.ops.sum(a * a, axis=0) * keras.ops.sum(b * b, axis=0))
            out[name] = dot / keras.ops.maximum(norms, EPS)
        return out

    def __call__(self, kernels: Mapping[str, Any]) -> Any:
        """The loss term.

        Args:
            kernels: ``{layer name: kernel}`` (see `similarities`).

        Returns:
            A scalar backend tensor (0 when there is no pair).
        """
        sums = [keras.ops.sum(s) for s in self.similarities(kernels).values()]
        if not sums:
            return keras.ops.zeros(())
        if self.per_layer:
            return self.weight * keras.ops.sum(keras.ops.exp(-keras.ops.stack(sums)))
        return self.weight * keras.ops.exp(-keras.ops.sum(keras.ops.stack(sums)))

    def get_config(self) -> dict[str, Any]:
        """JSON-friendly constructor arguments.

        Returns:
            ``{"pairs": {name: [[i, j], ...]}, "weight": ..., "per_layer": ...}``.
        """
        return {
            "pairs": {name: [list(p) for p in ps] for name, ps in self.pairs.items()},
            "weight": self.weight,
            "per_layer": self.per_layer,
        }


@keras.saving.register_keras_serializable(package="evoprune_tf")
class PairSimilarityModel(keras.Model):
    """A model trained with TASCNet's pair-similarity term added to its compiled loss.

    ``fit`` minimises ``compiled loss + weight * exp(-sum of cosine similarities)`` of the
    given filter pairs (see `PairSimilarityRegularizer`). The wrapper owns no variable:
    training it trains ``model`` in place, so afterwards ``model`` is used (and pruned)
    on its own. The term is read from the layers' current kernels inside
    `compute_loss`, which Keras 3 calls with the live variables on TensorFlow and
    Torch and inside its stateless scope on JAX, so no ``train_step`` is overridden.
    Evaluation losses include the term too (like weight regularisers).

    Args:
        model: the built model whose conv layers the pairs refer to (nested models
            searched by layer name).
        pairs: ``{conv layer name: [(i, j), ...]}`` from `select_pairs`.
        weight: factor of the term (TASCNet: 1.0).
        per_layer: see `PairSimilarityRegularizer`.
        **kwargs: passed to ``keras.Model`` (e.g. ``name``).
    """

    def __init__(
        self,
        model: keras.Model,
        pairs: Pairs,
        *,
        weight: float = 1.0,
        per_layer: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.regularizer = PairSimilarityRegularizer(pairs, weight=weight, per_layer=per_layer)
        # Checked now so that a wrong name fails here, not in the first traced step.
        names = self.regularizer.layer_names
        layers = find_conv_layers(model, layer_names=names) if names else []
        for layer in layers:
            bad = [p for p in self.regularizer.pairs[layer.name] if max(p) >= int(layer.filters)]
            if bad:
                raise ValueError(
                    f"pairs {bad} of layer '{layer.name}' index past its {layer.filters} filters; "
                    "expected indices below the filter count"
                )
        self.inner = model

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """The wrapped model's output.

        Args:
            inputs: the wrapped model's inputs.
            training: passed on (dropout, batch normalisation).

        Returns:
            The wrapped model's output.
        """
        return self.inner(inputs, training=training)

    def pair_kernels(self) -> dict[str, Any]:
        """``{layer name: kernel variable}`` of the paired layers."""
        names = self.regularizer.layer_names
        if not names:
            return {}
        return {layer.name: layer.kernel for layer in find_conv_layers(self.inner, layer_names=names)}

    def similarity_loss(self) -> Any:
        """The pair-similarity term at the current weights (a scalar tensor)."""
        return self.regularizer(self.pair_kernels())

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """The compiled loss plus the pair-similarity term.

        Args:
            x: input data.
            y: targets.
            y_pred: the model's predictions.
            sample_weight: sample weights (they weight the compiled loss only).
            training: whether Keras is training or evaluating.

        Returns:
            The total loss, a scalar tensor.
        """
        loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        return loss + keras.ops.cast(self.similarity_loss(), loss.dtype)

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration (the wrapped model, the pairs, the weight).

        Returns:
            The config dict.
        """
        config = {"name": self.name, "model": keras.saving.serialize_keras_object(self.inner)}
        config.update(self.regularizer.get_config())
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PairSimilarityModel":
        """Rebuild from `get_config`'s output.

        Args:
            config: the dict `get_config` returned.

        Returns:
            The wrapper around the deserialised model.
        """
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        pairs = {name: [tuple(p) for p in ps] for name, ps in config.pop("pairs").items()}
        return cls(model, pairs, **config)
