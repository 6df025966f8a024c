"""Trajectory similarity, pair selection, the pair-similarity loss and pair pruning (TASCNet stage 2).

Steps 2-4 of TASCNet's filter pruning, as pure functions over NumPy arrays (plus one
Keras model wrapper for the loss term):

2. `select_pairs`: per layer, the cosine similarity between the filters' flattened
   weight trajectories (`evoprune_tf.methods.tascnet.trajectories`), and the ``prune_percent``
   most similar *disjoint* pairs, chosen greedily from the most similar one
   (``order="least_similar"`` reproduces the authors' code, which sorts ascending).
3. `PairSimilarityModel`: wraps a model so that ``fit`` minimises
   ``loss + weight * exp(-sum of the pairs' cosine similarities)``, computed from the
   layers' *current* kernels with `keras.ops` (`PairSimilarityRegularizer`), which pulls
   each pair together before one of its members is removed.
4. `filters_to_remove`: in each pair, the filter with the smaller L1 norm goes
   (``mode="delete"``), or the pair is merged into the kept filter by an L1-weighted
   average (``mode="merge"``). The result's ``keep`` masks are what filter surgery takes.

The outer loop (fine-tune, prune, repeat while validation accuracy stays close to the
best) is then::

    recorder = KernelTrajectoryRecorder(min_filters=64)
    model.fit(x, y, epochs=3, callbacks=[recorder])
    pairs = select_pairs(recorder.trajectories(), prune_percent=5)
    wrapped = PairSimilarityModel(model, pairs, weight=1.0)
    wrapped.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    wrapped.fit(x, y, epochs=2)                      # trains `model`'s own variables
    plan = filters_to_remove(pairs, *conv_kernels(model, list(pairs)), mode="merge")
    assign_pruned_weights(model, plan)               # merged values into kept filters
    model = surgery(model, plan.keep)                # physical removal (evoprune_tf.nn)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from evoprune_tf.methods.tascnet.trajectories import find_conv_layers

__all__ = [
    "ORDERS",
    "PairPruning",
    "PairSimilarityModel",
    "PairSimilarityRegularizer",
    "assign_pruned_weights",
    "cosine_similarity_matrix",
    "filters_to_remove",
    "n_pairs",
    "pair_similarities",
    "select_layer_pairs",
    "select_pairs",
]

#: Pair orders of `select_pairs`: the described method, and the authors' code.
ORDERS = ("most_similar", "least_similar")

# Below this norm product two vectors are treated as orthogonal (similarity 0): an
# all-zero filter is similar to nothing rather than NaN.
_EPS = 1e-12

Pairs = Mapping[str, Sequence[tuple[int, int]]]


def cosine_similarity_matrix(rows: np.ndarray) -> np.ndarray:
    """Cosine similarity between every two rows.

    Args:
        rows: ``(n, d)`` array, e.g. filters' trajectories.

    Returns:
        ``(n, n)`` float64 matrix with values in [-1, 1]; a zero row is 0 to everything
        (and 0 on the diagonal).
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"rows has shape {rows.shape}; expected (n_filters, length)")
    norms = np.linalg.norm(rows, axis=1)
    safe = np.where(norms > _EPS, norms, np.inf)
    unit = rows / safe[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


def n_pairs(n_filters: int, prune_percent: float) -> int:
    """How many pairs (= filters removed) ``prune_percent`` of a layer's filters means.

    ``floor(n_filters * prune_percent / 100)``, but at least 1 when the layer has two or
    more filters (so a small layer still shrinks each round): 5 % of 100 filters -> 5
    pairs, 5 % of 1280 -> 64, 5 % of 30 -> 1 (1.5 rounded down), 5 % of 10 -> 1 (at least
    one). ``prune_percent <= 50`` keeps it within the ``n_filters // 2`` disjoint pairs.

    Args:
        n_filters: filters in the layer.
        prune_percent: percentage of the filters to remove, in (0, 50].

    Returns:
        The number of pairs.

    Raises:
        ValueError: ``prune_percent`` outside (0, 50] or a negative ``n_filters``.
    """
    _check_percent(prune_percent)
    if isinstance(n_filters, bool) or int(n_filters) != n_filters or n_filters < 0:
        raise ValueError(f"n_filters={n_filters!r}; expected a non-negative integer")
    n_filters = int(n_filters)
    if n_filters < 2:
        return 0
    # Rounded to 9 decimals first so that e.g. 100 * 0.29 == 28.999999999999996 -> 29.
    k = math.floor(round(n_filters * float(prune_percent) / 100.0, 9))
    return min(max(k, 1), n_filters // 2)


def select_layer_pairs(
    trajectories: np.ndarray,
    prune_percent: float = 5.0,
    order: str = "most_similar",
) -> list[tuple[int, int]]:
    """Disjoint pairs of one layer's filters, by trajectory cosine similarity.

    All ``i < j`` pairs are ranked by similarity (descending for ``"most_similar"``,
    ascending for ``"least_similar"``; ties in ``(i, j)`` order) and taken greedily,
    skipping any pair with a filter already taken, until `n_pairs` pairs are chosen.

    Args:
        trajectories: ``(n_filters, length)`` flattened trajectories of one layer.
        prune_percent: percentage of the filters to remove, in (0, 50] (see `n_pairs`).
        order: ``"most_similar"`` (the described method) or ``"least_similar"`` (what
            the authors' code does).

    Returns:
        The pairs ``(i, j)`` with ``i < j``, in selection order (most similar first for
        ``"most_similar"``).

    Raises:
        ValueError: bad ``prune_percent``, ``order`` or array shape.
    """
    _check_percent(prune_percent)
    _check_order(order)
    similarity = cosine_similarity_matrix(trajectories)
    n = similarity.shape[0]
    k = n_pairs(n, prune_percent)
    if k == 0:
        return []
    first, second = np.triu_indices(n, k=1)
    values = similarity[first, second]
    ranking = np.argsort(-values if order == "most_similar" else values, kind="stable")
    used = np.zeros(n, dtype=bool)
    pairs: list[tuple[int, int]] = []
    for index in ranking:
        i, j = int(first[index]), int(second[index])
        if used[i] or used[j]:
            continue
        used[i] = used[j] = True
        pairs.append((i, j))
        if len(pairs) == k:
            break
    return pairs


def select_pairs(
    trajectories: Mapping[str, np.ndarray],
    prune_percent: float = 5.0,
    order: str = "most_similar",
) -> dict[str, list[tuple[int, int]]]:
    """`select_layer_pairs` for every layer of a recording.

    Args:
        trajectories: ``{layer name: (n_filters, length)}``, e.g.
            ``KernelTrajectoryRecorder.trajectories()``.
        prune_percent: percentage of each layer's filters to remove, in (0, 50].
        order: ``"most_similar"`` or ``"least_similar"``.

    Returns:
        ``{layer name: [(i, j), ...]}`` in the order of ``trajectories``.

    Raises:
        ValueError: bad arguments (checked before any work).
    """
    _check_percent(prune_percent)
    _check_order(order)
    if not isinstance(trajectories, Mapping):
        raise ValueError(
            f"trajectories is a {type(trajectories).__name__}; expected a {{layer name: array}} mapping "
            "(use select_layer_pairs for one array)"
        )
    return {name: select_layer_pairs(t, prune_percent, order) for name, t in trajectories.items()}


def pair_similarities(kernels: Mapping[str, np.ndarray], pairs: Pairs) -> dict[str, np.ndarray]:
    """Cosine similarity of each pair's current kernels (NumPy; for reports and tests).

    Args:
        kernels: ``{layer name: (*window, in, filters)}`` kernels.
        pairs: ``{layer name: [(i, j), ...]}``.

    Returns:
        ``{layer name: (n_pairs,) float64}``.
    """
    out = {}
    for name, layer_pairs in pairs.items():
        rows = np.asarray(kernels[name], dtype=np.float64)
        rows = rows.reshape(-1, rows.shape[-1]).T
        a = rows[[p[0] for p in layer_pairs]]
        b = rows[[p[1] for p in layer_pairs]]
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        out[name] = np.where(norms > _EPS, np.sum(a * b, axis=1) / np.maximum(norms, _EPS), 0.0)
    return out


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
        self.pairs = _check_pairs(pairs)
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
            out[name] = dot / keras.ops.maximum(norms, _EPS)
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


@dataclasses.dataclass
class PairPruning:
    """Which filters of each layer stay, and the weights to give the kept ones.

    Attributes:
        keep: ``{layer name: (filters,) bool}``, False for each removed filter: what
            filter surgery takes.
        removed: ``{layer name: [removed index of each pair, ...]}`` (pair order).
        kernels: ``{layer name: full-size kernel}``: in merge mode the kept member of
            each pair holds the L1-weighted average of the pair; otherwise unchanged
            copies. Removed filters keep their old values (surgery drops them).
        biases: the same for the biases (None for a layer without bias).
        mode: ``"delete"`` or ``"merge"``.
    """

    keep: dict[str, np.ndarray]
    removed: dict[str, list[int]]
    kernels: dict[str, np.ndarray]
    biases: dict[str, np.ndarray | None]
    mode: str

    @property
    def n_removed(self) -> int:
        """Filters removed over all layers."""
        return int(sum((~mask).sum() for mask in self.keep.values()))


def filters_to_remove(
    pairs: Pairs,
    kernels: Mapping[str, np.ndarray],
    biases: Mapping[str, np.ndarray | None] | None = None,
    *,
    mode: str = "delete",
) -> PairPruning:
    """Decide which filter of each pair goes, and (merge) the kept filter's new weights.

    The member with the smaller L1 norm of its kernel is removed (a tie removes the
    higher index). With ``mode="merge"`` the kept filter becomes
    ``(l1_a * w_a + l1_b * w_b) / (l1_a + l1_b)`` for kernel and bias alike (equal
    weights when both norms are 0); with ``mode="delete"`` it is left as it is.

    Args:
        pairs: ``{layer name: [(i, j), ...]}``, disjoint within each layer.
        kernels: ``{layer name: (*window, in, filters)}`` for every layer in ``pairs``
            (e.g. the first element of `conv_kernels`).
        biases: ``{layer name: (filters,) or None}`` (the second element of
            `conv_kernels`); None for no biases.
        mode: ``"delete"`` or ``"merge"``.

    Returns:
        The `PairPruning` (keep masks, removed indices, kernels and biases to assign).

    Raises:
        ValueError: an unknown mode, a layer missing from ``kernels``, an index out of
            range or a filter in two pairs.
    """
    if mode not in ("delete", "merge"):
        raise ValueError(f"mode={mode!r}; expected 'delete' or 'merge'")
    pairs = _check_pairs(pairs)
    missing = [name for name in pairs if name not in kernels]
    if missing:
        raise ValueError(f"layers {missing} have pairs but no kernel; expected kernels for every paired layer")
    biases = biases or {}
    plan = PairPruning(keep={}, removed={}, kernels={}, biases={}, mode=mode)
    for name, layer_pairs in pairs.items():
        kernel = np.array(kernels[name], copy=True)
        bias = None if biases.get(name) is None else np.array(biases[name], copy=True)
        n_filters = kernel.shape[-1]
        bad = [p for p in layer_pairs if max(p) >= n_filters]
        if bad:
            raise ValueError(f"pairs {bad} of layer '{name}' index past its {n_filters} filters; expected smaller indices")
        rows = kernel.reshape(-1, n_filters)  # a view: writing a column writes the kernel
        l1 = np.abs(rows).sum(axis=0, dtype=np.float64)
        keep = np.ones(n_filters, dtype=bool)
        removed = []
        for i, j in layer_pairs:
            lo, hi = min(i, j), max(i, j)
            kept, gone = (lo, hi) if l1[lo] >= l1[hi] else (hi, lo)
            keep[gone] = False
            removed.append(gone)
            if mode == "merge":
                total = l1[kept] + l1[gone]
                w_kept, w_gone = (l1[kept] / total, l1[gone] / total) if total > 0 else (0.5, 0.5)
                rows[:, kept] = w_kept * rows[:, kept] + w_gone * rows[:, gone]
                if bias is not None:
                    bias[kept] = w_kept * bias[kept] + w_gone * bias[gone]
        plan.keep[name] = keep
        plan.removed[name] = removed
        plan.kernels[name] = kernel
        plan.biases[name] = bias
    return plan


def assign_pruned_weights(model: keras.Model, plan: PairPruning) -> None:
    """Write a plan's kernels and biases into the model's layers (merge mode's averages).

    Harmless in delete mode (the values are the model's own). Surgery then removes the
    filters that ``plan.keep`` marks False.

    Args:
        model: the model the plan was computed from.
        plan: the output of `filters_to_remove`.
    """
    if not plan.kernels:
        return
    for layer in find_conv_layers(model, layer_names=list(plan.kernels)):
        layer.kernel.assign(plan.kernels[layer.name].astype(layer.kernel.dtype))
        bias = plan.biases.get(layer.name)
        if bias is not None and layer.bias is not None:
            layer.bias.assign(bias.astype(layer.bias.dtype))


def _check_percent(prune_percent: float) -> None:
    if (
        isinstance(prune_percent, bool)
        or not isinstance(prune_percent, (int, float, np.integer, np.floating))
        or not 0.0 < float(prune_percent) <= 50.0
    ):
        raise ValueError(f"prune_percent={prune_percent!r}; expected a percentage in (0, 50]")


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"order={order!r}; expected one of {ORDERS}")


def _check_pairs(pairs: Pairs) -> dict[str, list[tuple[int, int]]]:
    """Pairs as ``{name: [(i, j), ...]}`` of distinct non-negative ints, disjoint per layer."""
    if not isinstance(pairs, Mapping):
        raise ValueError(f"pairs is a {type(pairs).__name__}; expected a {{layer name: [(i, j), ...]}} mapping")
    out: dict[str, list[tuple[int, int]]] = {}
    for name, layer_pairs in pairs.items():
        seen: set[int] = set()
        clean = []
        for pair in layer_pairs:
            if len(pair) != 2 or any(isinstance(v, bool) or int(v) != v or v < 0 for v in pair) or pair[0] == pair[1]:
                raise ValueError(f"pair {pair!r} of layer '{name}'; expected two distinct non-negative filter indices")
            i, j = int(pair[0]), int(pair[1])
            if i in seen or j in seen:
                raise ValueError(f"pair {pair!r} of layer '{name}' reuses a filter; expected disjoint pairs")
            seen.update((i, j))
            clean.append((i, j))
        if clean:
            out[str(name)] = clean
    return out
