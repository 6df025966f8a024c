"""Filter pairs of TASCNet stage 2: trajectory similarity, pair selection, pairs' similarities.

Step 2 of TASCNet's filter pruning, as pure functions over NumPy arrays: per layer, the
cosine similarity between the filters' flattened weight trajectories
(`evoprune_tf.tascnet.trajectories`), and the ``prune_percent`` most similar *disjoint*
pairs, chosen greedily from the most similar one (``order="least_similar"`` reproduces
the authors' code, which sorts ascending).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "ORDERS",
    "EPS",
    "Pairs",
    "cosine_similarity_matrix",
    "n_pairs",
    "select_layer_pairs",
    "select_pairs",
    "pair_similarities",
    "check_percent",
    "check_order",
    "check_pairs",
]


#: Pair orders of `select_pairs`: the described method, and the authors' code.
ORDERS = ("most_similar", "least_similar")


# Below this norm product two vectors are treated as orthogonal (similarity 0): an
# all-zero filter is similar to nothing rather than NaN.
EPS = 1e-12


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
    safe = np.where(norms > EPS, norms, np.inf)
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
    check_percent(prune_percent)
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
    check_percent(prune_percent)
    check_order(order)
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
    check_percent(prune_percent)
    check_order(order)
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
        out[name] = np.where(norms > EPS, np.sum(a * b, axis=1) / np.maximum(norms, EPS), 0.0)
    return out


def check_percent(prune_percent: float) -> None:
    if (
        isinstance(prune_percent, bool)
        or not isinstance(prune_percent, (int, float, np.integer, np.floating))
        or not 0.0 < float(prune_percent) <= 50.0
    ):
        raise ValueError(f"prune_percent={prune_percent!r}; expected a percentage in (0, 50]")


def check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"order={order!r}; expected one of {ORDERS}")


def check_pairs(pairs: Pairs) -> dict[str, list[tuple[int, int]]]:
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
