"""Baselines: genomes decided without search, to tell what evolution adds.

Each baseline turns into one genome of the run's encoding and then goes through the
same loop (`evoprune_tf.search.algorithms.evaluate_genomes`), callbacks and final report
as an evolved run, on the same splits and training recipe:

* ``unpruned``: every gene on.
* ``random_mask``: a uniformly random genome with exactly ``round(density * L)`` genes on.
* ``magnitude``: train the unpruned head once, keep the genes whose units carry the
  largest L1 norm of weights (features: the row of the first kernel; neurons: the
  neuron's incoming column; connections: the weight itself), then retrain.
* ``l1_selection``: an L1-regularised multinomial logistic regression on the training
  features; its regularisation is loosened until at least ``round(density * L)``
  features have a non-zero coefficient, and the features with the largest summed
  absolute coefficients are kept (feature selection only).

``random_search`` (the best of N random genomes at the GA's budget) is a loop, not a
genome: see `evoprune_tf.search.algorithms.random_search`.

A fixed budget (``encoding.active``, passed here as ``count``) replaces the density: every
baseline but ``unpruned`` then keeps exactly ``count`` genes, the size of every genome of
a fixed-budget GA, so they compare at equal size (``random_search`` draws its genomes
with the GA's count-keeping initialiser).
"""

from __future__ import annotations

import numpy as np

from evoprune_tf.encodings import ConnectionPruning, Encoding, FeatureSelection, NeuronPruning

__all__ = ["BASELINES", "baseline_genome", "random_mask_genome", "random_count_genome", "top_k_genome",
           "magnitude_scores", "l1_scores"]

#: Baselines that decide one genome without search.
BASELINES = ("unpruned", "random_mask", "magnitude", "l1_selection")


def n_active(length: int, density: float) -> int:
    """Genes on for a density: ``round(density * length)``, at least 1."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density={density}; expected a fraction in (0, 1]")
    return max(1, int(round(density * length)))


def random_mask_genome(length: int, density: float, seed: int) -> np.ndarray:
    """A uniformly random 0/1 genome with exactly `n_active` genes on."""
    return random_count_genome(length, n_active(length, density), seed)


def random_count_genome(length: int, count: int, seed: int) -> np.ndarray:
    """A uniformly random 0/1 genome with exactly ``count`` genes on, drawn from ``seed``.

    Raises:
        ValueError: ``count`` outside ``[1, length]``.
    """
    if not 1 <= count <= length:
        raise ValueError(f"count={count}; expected a number of active genes in [1, {length}]")
    rng = np.random.default_rng(seed)
    genome = np.zeros(length, dtype=np.int8)
    genome[rng.choice(length, count, replace=False)] = 1
    return genome


def top_k_genome(scores: np.ndarray, density: float | None = None, *, count: int | None = None) -> np.ndarray:
    """The genome keeping the ``count`` (else `n_active`) highest scores (ties: the lower index)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.lexsort((np.arange(len(scores)), -scores))
    genome = np.zeros(len(scores), dtype=np.int8)
    genome[order[: count if count is not None else n_active(len(scores), density)]] = 1
    return genome


def magnitude_scores(encoding: Encoding, kernels: list[np.ndarray]) -> np.ndarray:
    """Per-gene L1 magnitudes of a trained unpruned head's full-size kernels.

    Args:
        encoding: the run's encoding (decides what a gene is).
        kernels: per layer, the ``(in, out)`` kernel of the trained unpruned head.

    Raises:
        ValueError: an encoding this baseline does not know.
    """
    if isinstance(encoding, FeatureSelection):
        return np.abs(kernels[0]).sum(axis=1)
    if isinstance(encoding, NeuronPruning):
        # hidden layer i is the output of kernel i: a neuron's incoming weights are its column
        return np.concatenate([np.abs(kernels[i]).sum(axis=0) for i in encoding.layers])
    if isinstance(encoding, ConnectionPruning):
        return np.abs(kernels[encoding.layer]).ravel()
    raise ValueError(f"baseline 'magnitude' does not know encoding {encoding.name!r}")


def l1_scores(x_train: np.ndarray, y_train: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """Feature scores of the loosest-needed L1 logistic regression with at least ``k`` non-zero features.

    The inverse regularisation ``C`` grows on a log grid until ``k`` features have a
    non-zero coefficient in some class; the score of a feature is the sum of its absolute
    coefficients at that ``C`` (features still at zero keep a score of zero).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.asarray(x_train, dtype=np.float64))
    scores = np.zeros(x.shape[1])
    for c in np.logspace(-3, 1, 13):
        # scikit-learn >= 1.8: l1_ratio=1 is the L1 penalty (``penalty`` is deprecated)
        model = LogisticRegression(l1_ratio=1.0, solver="saga", C=float(c), max_iter=300,
                                   tol=1e-3, random_state=seed)
        model.fit(x, y_train)
        scores = np.abs(model.coef_).sum(axis=0)
        if np.count_nonzero(scores) >= k:
            break
    return scores


def baseline_genome(name: str, encoding: Encoding, *, density: float, seed: int, evaluator=None,
                    count: int | None = None) -> np.ndarray:
    """The genome a baseline picks.

    Args:
        name: one of `BASELINES`.
        encoding: the run's encoding.
        density: fraction of genes on (``unpruned`` ignores it).
        seed: the run seed (random masks, the L1 solver).
        evaluator: a `PopulationEvaluator` of the run (``magnitude`` trains the unpruned
            head with it; ``l1_selection`` reads its training features).
        count: a fixed budget: exactly this many genes on, in place of ``density``
            (``unpruned`` ignores it).

    Raises:
        ValueError: an unknown baseline, a density outside (0, 1], or ``l1_selection``
            with an encoding other than feature selection.
    """
    length = encoding.genome_length
    if name == "unpruned":
        return np.ones(length, dtype=np.int8)
    k = count if count is not None else n_active(length, density)
    if name == "random_mask":
        return random_count_genome(length, k, seed)
    if name == "magnitude":
        head = evaluator.train_heads([np.ones(length, dtype=np.int8)])[0]
        kernels, _ = head.full_weights()
        return top_k_genome(magnitude_scores(encoding, kernels), count=k)
    if name == "l1_selection":
        if not isinstance(encoding, FeatureSelection):
            raise ValueError(f"baseline 'l1_selection' selects features; encoding {encoding.name!r} is not feature_selection")
        data = evaluator.data
        return top_k_genome(l1_scores(data.x_train, data.y_train, k, seed=seed), count=k)
    raise ValueError(f"unknown baseline {name!r}; expected one of {list(BASELINES)}")
