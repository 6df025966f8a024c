"""Paired statistics for studies: the same method run over several seeds, compared honestly.

Every claim "A beats B" in this project rests on several seeds per group and a paired
test over them (see DESIGN.md, "Noise"). This module holds the tests and effect sizes,
with no MLflow in sight:

* `align_by_seed`: pair groups by seed, with a one-line error naming the missing seeds;
* `vargha_delaney_a` and `a12_magnitude`: the Vargha-Delaney A effect size and its label;
* `wilcoxon_paired`: two groups, Wilcoxon signed-rank over paired seeds;
* `friedman`: three or more groups, Friedman chi-square, average ranks, the Nemenyi
  critical difference and pairwise post-hoc tests (Holm-corrected Wilcoxon, Nemenyi);
* `holm`: Holm's step-down correction of a family of p-values;
* `critical_difference_diagram`: a Demšar-style CD diagram (matplotlib, Agg backend;
  `evoprune_tf.studies.cd_diagram`).

Direction matters for ranking and for the effect size: accuracy is better high, the
share of active units better low. Functions that rank or orient an effect size take a
keyword-only ``higher_is_better`` with no default, so the caller always says which.

Only SciPy is needed: the Nemenyi critical value comes from
`scipy.stats.studentized_range` (q_alpha = studentized range quantile / sqrt(2), Demšar
2006), so no optional ``[stats]`` extra is required.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from evoprune_tf.studies.cd_diagram import critical_difference_diagram

__all__ = [
    "FriedmanResult",
    "PairwiseComparison",
    "WilcoxonResult",
    "a12_magnitude",
    "align_by_seed",
    "critical_difference_diagram",
    "friedman",
    "holm",
    "nemenyi_critical_difference",
    "vargha_delaney_a",
    "wilcoxon_paired",
]

# Vargha & Delaney (2000) thresholds on max(A, 1 - A): below 0.56 negligible, 0.64
# small, 0.71 medium, above large.
_A12_THRESHOLDS = ((0.56, "negligible"), (0.64, "small"), (0.71, "medium"))


@dataclass(frozen=True)
class WilcoxonResult:
    """A Wilcoxon signed-rank test over paired seeds.

    Attributes:
        statistic: SciPy's statistic (the smaller of the signed-rank sums, two-sided).
        p_value: Two-sided p-value; 1.0 when every paired difference is zero.
        n: Number of pairs (seeds).
        n_nonzero: Pairs whose difference is not zero (the ones the test ranks).
        median_difference: Median of ``a - b`` over the pairs.
        win_fraction: Share of seeds on which ``a`` is better than ``b`` (ties count
            half): the paired counterpart of ``a12``, which ignores the pairing and so
            understates a consistent shift when seeds vary a lot.
        a12: Vargha-Delaney A: the probability that a value of ``a`` is better than one
            of ``b`` (ties count half), oriented by ``higher_is_better``.
        magnitude: ``negligible``, ``small``, ``medium`` or ``large``.
        higher_is_better: The direction ``a12`` was computed in.
    """

    statistic: float
    p_value: float
    n: int
    n_nonzero: int
    median_difference: float
    win_fraction: float
    a12: float
    magnitude: str
    higher_is_better: bool


@dataclass(frozen=True)
class PairwiseComparison:
    """One post-hoc pair after a Friedman test.

    Attributes:
        a: Name of the first group (the better average rank of the two).
        b: Name of the second group.
        rank_difference: ``rank(b) - rank(a)`` (>= 0: ``a`` ranks better or equal).
        wilcoxon_p: Raw two-sided Wilcoxon signed-rank p-value.
        holm_p: ``wilcoxon_p`` after Holm's correction over all pairs.
        nemenyi_p: Nemenyi p-value from the average ranks (studentized range).
        a12: Vargha-Delaney A of ``a`` over ``b`` (probability ``a`` is better).
        magnitude: Label of ``a12``.
        significant: ``holm_p < alpha``.
    """

    a: str
    b: str
    rank_difference: float
    wilcoxon_p: float
    holm_p: float
    nemenyi_p: float
    a12: float
    magnitude: str
    significant: bool


@dataclass(frozen=True)
class FriedmanResult:
    """A Friedman test over k >= 3 paired groups with its post-hoc analysis.

    Attributes:
        statistic: Friedman chi-square; 0.0 when every block is a complete tie.
        p_value: Its p-value; 1.0 when every block is a complete tie.
        n: Number of blocks (seeds).
        k: Number of groups.
        average_ranks: Group name -> average rank (1 = best), best first.
        critical_difference: Nemenyi critical difference at ``alpha``: two groups whose
            average ranks differ by less are not significantly different.
        alpha: Significance level used for ``critical_difference`` and ``significant``.
        pairwise: Every pair of groups, ordered by the better group's rank.
        higher_is_better: The direction the ranks were computed in.
    """

    statistic: float
    p_value: float
    n: int
    k: int
    average_ranks: dict[str, float]
    critical_difference: float
    alpha: float
    pairwise: tuple[PairwiseComparison, ...]
    higher_is_better: bool


def _as_vector(values: Sequence[float], name: str) -> np.ndarray:
    """``values`` as a finite 1-D float array, or a one-line ValueError naming ``name``."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].tolist()
        raise ValueError(f"{name} holds non-finite values {bad}; expected finite numbers")
    return array


def _seed_sort_key(seed: Hashable) -> tuple[int, float | str]:
    """Numbers first in numeric order, then anything else by its text: seeds 2 < 10."""
    try:
        return (0, float(seed))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, str(seed))


def align_by_seed(
    groups: Mapping[str, Mapping[Hashable, float]], *, drop_incomplete: bool = False
) -> tuple[list[Hashable], dict[str, np.ndarray]]:
    """Pair groups by seed: the same seeds, in the same order, in every group.

    Args:
        groups: Group name -> (seed -> value).
        drop_incomplete: Keep only the seeds every group has (with a warning) instead of
            raising. Paired tests then run on fewer seeds.

    Returns:
        The common seeds (sorted numerically where they are numbers) and group name ->
        values in that seed order.

    Raises:
        ValueError: When a group lacks seeds another group has (and ``drop_incomplete``
            is False), naming the missing seeds per group, or when no seed is common.
    """
    if not groups:
        raise ValueError("groups is empty; expected at least one group of seed -> value")
    seed_sets = {name: set(values) for name, values in groups.items()}
    every = set().union(*seed_sets.values())
    problems = []
    for name, seeds in seed_sets.items():
        missing = every - seeds
        if not missing:
            continue
        holders = [other for other, theirs in seed_sets.items() if other != name and missing & theirs]
        verb = "has" if len(holders) == 1 else "have"
        problems.append(
            f"group {name!r} lacks seeds {sorted(missing, key=_seed_sort_key)} that "
            f"{', '.join(repr(h) for h in holders)} {verb}"
        )
    common = set.intersection(*seed_sets.values())
    if problems and not drop_incomplete:
        raise ValueError("; ".join(problems))
    if problems:
        warnings.warn("dropping incomplete seeds: " + "; ".join(problems), stacklevel=2)
    if not common:
        raise ValueError(f"no seed is common to all groups {sorted(groups)}; paired tests need shared seeds")
    seeds = sorted(common, key=_seed_sort_key)
    return seeds, {name: np.asarray([values[s] for s in seeds], dtype=float) for name, values in groups.items()}


def vargha_delaney_a(a: Sequence[float], b: Sequence[float]) -> float:
    """Vargha-Delaney A: probability that a value drawn from ``a`` exceeds one from ``b``.

    Ties count one half, so 0.5 means no tendency either way. It compares every value of
    ``a`` with every value of ``b`` (it is an unpaired measure; the samples may differ in
    size). For a lower-is-better metric use ``1 - vargha_delaney_a(a, b)`` or swap the
    arguments.

    Args:
        a: First sample.
        b: Second sample.

    Returns:
        A in [0, 1].
    """
    x = _as_vector(a, "a")
    y = _as_vector(b, "b")
    # The rank-sum form, O((m+n) log(m+n)), equals the all-pairs count with ties as 1/2.
    ranks = sps.rankdata(np.concatenate([x, y]))
    m, n = x.size, y.size
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def a12_magnitude(a12: float) -> str:
    """The Vargha-Delaney label of an A value (thresholds 0.56 / 0.64 / 0.71).

    Args:
        a12: An A value in [0, 1]; A and 1 - A get the same label.

    Returns:
        ``negligible``, ``small``, ``medium`` or ``large``.
    """
    if not 0.0 <= a12 <= 1.0:
        raise ValueError(f"a12={a12!r} is outside [0, 1]")
    distance = max(a12, 1.0 - a12)
    for threshold, label in _A12_THRESHOLDS:
        if distance < threshold:
            return label
    return "large"


def wilcoxon_paired(
    a: Sequence[float], b: Sequence[float], *, higher_is_better: bool, zero_method: str = "wilcox"
) -> WilcoxonResult:
    """Wilcoxon signed-rank test of ``a`` against ``b`` over paired seeds.

    ``a[i]`` and ``b[i]`` must come from the same seed (see `align_by_seed`).

    Args:
        a: Values of the first group, one per seed.
        b: Values of the second group, same seeds in the same order.
        higher_is_better: Direction of the metric; orients the effect size ``a12`` as
            "probability that ``a`` is better than ``b``".
        zero_method: SciPy's treatment of zero differences (``wilcox`` drops them,
            ``pratt`` ranks them, ``zsplit`` splits them).

    Returns:
        The statistic, two-sided p-value, pair counts, median difference and effect size.

    Raises:
        ValueError: When the samples differ in length or hold non-finite values.
    """
    x = _as_vector(a, "a")
    y = _as_vector(b, "b")
    if x.size != y.size:
        raise ValueError(
            f"paired samples differ in length: a has {x.size}, b has {y.size}; expected one value per seed"
        )
    diff = x - y
    nonzero = int(np.count_nonzero(diff))
    a12 = vargha_delaney_a(x, y) if higher_is_better else vargha_delaney_a(y, x)
    better = diff > 0 if higher_is_better else diff < 0
    win_fraction = float((np.count_nonzero(better) + 0.5 * (x.size - nonzero)) / x.size)
    if nonzero == 0:
        # SciPy divides by a zero variance here (warning, nan z); identical groups simply
        # show no evidence of a difference.
        statistic, p_value = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            # Few nonzero pairs or ties switch SciPy to the normal approximation with a
            # warning; the p-value is still the honest one for these data.
            warnings.simplefilter("ignore", UserWarning)
            res = sps.wilcoxon(x, y, zero_method=zero_method)
        statistic, p_value = float(res.statistic), float(res.pvalue)
        if not math.isfinite(p_value):
            p_value = 1.0
    return WilcoxonResult(
        statistic=statistic,
        p_value=p_value,
        n=int(x.size),
        n_nonzero=nonzero,
        median_difference=float(np.median(diff)),
        win_fraction=win_fraction,
        a12=a12,
        magnitude=a12_magnitude(a12),
        higher_is_better=higher_is_better,
    )


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down correction (controls the family-wise error rate).

    Args:
        p_values: Raw p-values of a family of tests.

    Returns:
        Adjusted p-values in the input order, each in [0, 1].
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    m = p.size
    scaled = (m - np.arange(m)) * p[order]
    # Step-down: an adjusted p-value is never below the one of a smaller raw p-value.
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty_like(adjusted_sorted)
    adjusted[order] = adjusted_sorted
    return adjusted


def nemenyi_critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks (Demšar 2006).

    Args:
        k: Number of groups (>= 2).
        n: Number of blocks (seeds, >= 1).
        alpha: Significance level.

    Returns:
        ``q_alpha * sqrt(k (k + 1) / (6 n))`` with ``q_alpha`` the studentized range
        quantile for k groups and infinite degrees of freedom, divided by sqrt(2).
    """
    if k < 2 or n < 1:
        raise ValueError(f"nemenyi_critical_difference needs k >= 2 groups and n >= 1 blocks, got k={k}, n={n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} is outside (0, 1)")
    q_alpha = sps.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0)
    return float(q_alpha * math.sqrt(k * (k + 1) / (6.0 * n)))


def _average_ranks(matrix: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Average rank per column of a blocks x groups matrix; 1 = best, ties share ranks."""
    oriented = -matrix if higher_is_better else matrix
    return sps.rankdata(oriented, axis=1).mean(axis=0)


def friedman(
    groups: Mapping[str, Sequence[float]], *, higher_is_better: bool, alpha: float = 0.05
) -> FriedmanResult:
    """Friedman test over k >= 3 paired groups, with average ranks and post-hoc tests.

    The post-hoc analysis holds both the Nemenyi test on average ranks (critical
    difference and pairwise p-values, what the CD diagram shows) and pairwise Wilcoxon
    signed-rank tests with Holm's correction (usually more powerful with few groups).

    Args:
        groups: Group name -> values, one per seed, the same seeds in the same order in
            every group (see `align_by_seed`).
        higher_is_better: Direction of the metric: rank 1 goes to the highest value when
            True, to the lowest when False.
        alpha: Significance level for the critical difference and ``significant``.

    Returns:
        The Friedman statistic and p-value, average ranks (best first), the critical
        difference and every pairwise comparison.

    Raises:
        ValueError: For fewer than 3 groups, fewer than 2 seeds, unequal lengths or
            non-finite values.
    """
    if len(groups) < 3:
        raise ValueError(
            f"friedman needs at least 3 groups, got {len(groups)} ({sorted(groups)}); use wilcoxon_paired for 2"
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} is outside (0, 1)")
    names = list(groups)
    columns = [_as_vector(groups[name], f"group {name!r}") for name in names]
    lengths = {name: col.size for name, col in zip(names, columns)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"groups differ in length {lengths}; expected the same seeds in every group")
    n, k = columns[0].size, len(names)
    if n < 2:
        raise ValueError(f"friedman needs at least 2 seeds per group, got {n}")
    matrix = np.column_stack(columns)

    statistic, p_value = _friedman_statistic(matrix, columns)
    ranks = _average_ranks(matrix, higher_is_better)
    cd = nemenyi_critical_difference(k, n, alpha)
    pairwise = _post_hoc(names, matrix, ranks, higher_is_better=higher_is_better, alpha=alpha)
    order = np.argsort(ranks, kind="stable")
    return FriedmanResult(
        statistic=statistic,
        p_value=p_value,
        n=n,
        k=k,
        average_ranks={names[i]: float(ranks[i]) for i in order},
        critical_difference=cd,
        alpha=alpha,
        pairwise=pairwise,
        higher_is_better=higher_is_better,
    )


def _friedman_statistic(matrix: np.ndarray, columns: Sequence[np.ndarray]) -> tuple[float, float]:
    """Friedman's chi-square and p-value; ``(0, 1)`` where every block is a tie or SciPy gives no p-value."""
    if np.all(matrix == matrix[:, :1]):
        # Every block is a complete tie: SciPy's statistic divides 0 by 0.
        statistic, p_value = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = sps.friedmanchisquare(*columns)
        statistic, p_value = float(res.statistic), float(res.pvalue)
        if not math.isfinite(p_value):
            statistic, p_value = 0.0, 1.0
    return statistic, p_value


def _post_hoc(names: Sequence[str], matrix: np.ndarray, ranks: np.ndarray, *, higher_is_better: bool,
              alpha: float) -> tuple[PairwiseComparison, ...]:
    """Every pair, better-ranked first: Wilcoxon (Holm-corrected) and Nemenyi p-values, effect size."""
    n, k = matrix.shape
    rank_se = math.sqrt(k * (k + 1) / (6.0 * n))

    pairs = []
    for i, j in itertools.combinations(range(k), 2):
        # Put the better-ranked group first so effect sizes read ">= 0.5 = first wins".
        first, second = (i, j) if ranks[i] <= ranks[j] else (j, i)
        test = wilcoxon_paired(matrix[:, first], matrix[:, second], higher_is_better=higher_is_better)
        z = abs(ranks[first] - ranks[second]) / rank_se
        nemenyi_p = float(sps.studentized_range.sf(z * math.sqrt(2.0), k, np.inf))
        pairs.append((first, second, test, min(max(nemenyi_p, 0.0), 1.0)))
    adjusted = holm([test.p_value for _, _, test, _ in pairs])
    return tuple(
        PairwiseComparison(
            a=names[first],
            b=names[second],
            rank_difference=float(ranks[second] - ranks[first]),
            wilcoxon_p=test.p_value,
            holm_p=float(adj),
            nemenyi_p=nemenyi_p,
            a12=test.a12,
            magnitude=test.magnitude,
            significant=bool(adj < alpha),
        )
        for (first, second, test, nemenyi_p), adj in sorted(
            zip(pairs, adjusted), key=lambda item: (ranks[item[0][0]], ranks[item[0][1]])
        )
    )
