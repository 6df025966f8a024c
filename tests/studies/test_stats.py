"""Paired tests, effect sizes and the CD diagram of `evoprune_tf.studies.stats`."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from evoprune_tf.studies.cd_diagram import _cliques
from evoprune_tf.studies.stats import (
    a12_magnitude,
    align_by_seed,
    critical_difference_diagram,
    friedman,
    holm,
    nemenyi_critical_difference,
    vargha_delaney_a,
    wilcoxon_paired,
)


def _seeded_groups(n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Paired groups sharing a per-seed effect: 'planted' +0.05, 'null' no shift, 'worse' -0.04."""
    rng = np.random.default_rng(seed)
    base = 0.8 + rng.normal(0.0, 0.03, n)  # seed-to-seed variation shared by every group
    return {
        "base": base + rng.normal(0.0, 0.01, n),
        "planted": base + 0.05 + rng.normal(0.0, 0.01, n),
        "null": base + rng.normal(0.0, 0.01, n),
        "worse": base - 0.04 + rng.normal(0.0, 0.01, n),
    }


def assert_real_plot(path) -> None:
    """The image is a drawn plot: reasonable size, several colours, ink but not a filled box."""
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    height, width = image.shape[:2]
    assert height >= 150 and width >= 300, image.shape
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05
    assert len(np.unique(np.round(rgb, 2), axis=0)) > 10
    ink = (rgb.min(axis=1) < 0.9).mean()  # share of non-white pixels
    assert 0.005 < ink < 0.6, ink


class TestVarghaDelaney:
    def test_matches_all_pairs_count_with_ties_as_half(self) -> None:
        rng = np.random.default_rng(1)
        a = rng.integers(0, 5, 9).astype(float)
        b = rng.integers(0, 5, 7).astype(float)
        brute = np.mean([1.0 if x > y else 0.5 if x == y else 0.0 for x, y in itertools.product(a, b)])
        assert vargha_delaney_a(a, b) == pytest.approx(brute)

    def test_extremes_and_symmetry(self) -> None:
        assert vargha_delaney_a([3, 4, 5], [0, 1, 2]) == 1.0
        assert vargha_delaney_a([0, 1, 2], [3, 4, 5]) == 0.0
        assert vargha_delaney_a([1, 2, 3], [1, 2, 3]) == 0.5
        a, b = [0.1, 0.5, 0.4], [0.3, 0.2, 0.6, 0.7]
        assert vargha_delaney_a(a, b) + vargha_delaney_a(b, a) == pytest.approx(1.0)

    @pytest.mark.parametrize(
        ("a12", "label"),
        [(0.5, "negligible"), (0.559, "negligible"), (0.56, "small"), (0.63, "small"), (0.64, "medium"),
         (0.70, "medium"), (0.71, "large"), (1.0, "large"), (0.4, "small"), (0.2, "large")],
    )
    def test_magnitude_thresholds(self, a12: float, label: str) -> None:
        assert a12_magnitude(a12) == label

    def test_bad_input(self) -> None:
        with pytest.raises(ValueError, match="non-finite"):
            vargha_delaney_a([1.0, float("nan")], [1.0])
        with pytest.raises(ValueError, match="outside"):
            a12_magnitude(1.2)


class TestWilcoxon:
    def test_finds_planted_shift(self) -> None:
        g = _seeded_groups()
        res = wilcoxon_paired(g["planted"], g["base"], higher_is_better=True)
        assert res.p_value < 0.05
        assert res.a12 > 0.7 and res.magnitude == "large"
        assert res.n == 8 and res.n_nonzero == 8
        assert res.win_fraction == 1.0  # the shift (0.05) dwarfs the pair noise (0.014)
        assert res.median_difference == pytest.approx(np.median(g["planted"] - g["base"]))

    def test_no_shift_is_not_significant(self) -> None:
        g = _seeded_groups()
        res = wilcoxon_paired(g["null"], g["base"], higher_is_better=True)
        assert res.p_value > 0.05

    def test_direction_flips_effect_size(self) -> None:
        g = _seeded_groups()
        high = wilcoxon_paired(g["planted"], g["base"], higher_is_better=True)
        low = wilcoxon_paired(g["planted"], g["base"], higher_is_better=False)
        assert low.a12 == pytest.approx(1.0 - high.a12)
        assert low.win_fraction == pytest.approx(1.0 - high.win_fraction)
        assert low.p_value == pytest.approx(high.p_value)

    def test_all_zero_differences_give_p_one_without_warnings(self) -> None:
        x = [0.8, 0.81, 0.79, 0.82]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = wilcoxon_paired(x, x, higher_is_better=True)
        assert res.p_value == 1.0 and res.statistic == 0.0
        assert res.n_nonzero == 0 and res.a12 == 0.5 and res.magnitude == "negligible"
        assert res.win_fraction == 0.5

    def test_unequal_lengths(self) -> None:
        with pytest.raises(ValueError, match="a has 3, b has 2"):
            wilcoxon_paired([1, 2, 3], [1, 2], higher_is_better=True)

    def test_direction_is_required(self) -> None:
        with pytest.raises(TypeError):
            wilcoxon_paired([1, 2, 3], [1, 2, 4])  # type: ignore[call-arg]


def test_holm_matches_hand_computation() -> None:
    # Sorted p: 0.01 (x4 = 0.04), 0.03 (x3 = 0.09), 0.04 (x2 = 0.08 -> 0.09 step-down), 0.5 (x1).
    np.testing.assert_allclose(holm([0.04, 0.5, 0.01, 0.03]), [0.09, 0.5, 0.04, 0.09])
    assert holm([0.6, 0.7]).max() <= 1.0
    assert holm([]).size == 0


class TestFriedman:
    def test_ranks_planted_first_and_posthoc(self) -> None:
        g = _seeded_groups()
        res = friedman(g, higher_is_better=True)
        assert res.p_value < 0.05 and res.k == 4 and res.n == 8
        assert list(res.average_ranks)[0] == "planted"
        assert list(res.average_ranks)[-1] == "worse"
        assert sum(res.average_ranks.values()) == pytest.approx(4 * 5 / 2)  # ranks 1..k per block
        assert len(res.pairwise) == 6
        pairs = {(p.a, p.b): p for p in res.pairwise}
        planted_base = pairs[("planted", "base")]
        assert planted_base.significant and planted_base.holm_p >= planted_base.wilcoxon_p
        assert planted_base.a12 > 0.7
        null_base = pairs.get(("null", "base")) or pairs[("base", "null")]
        assert not null_base.significant and null_base.holm_p > 0.05
        for p in res.pairwise:
            assert p.rank_difference >= 0 and 0.0 <= p.nemenyi_p <= 1.0

    def test_lower_is_better_reverses_ranks(self) -> None:
        g = _seeded_groups()
        res = friedman(g, higher_is_better=False)
        assert list(res.average_ranks)[0] == "worse"
        assert list(res.average_ranks)[-1] == "planted"

    def test_critical_difference_matches_demsar(self) -> None:
        # Demšar (2006), Table 5(a): q_0.05 = 2.343 for k=3, 2.569 for k=4.
        assert nemenyi_critical_difference(3, 8) == pytest.approx(2.343 * math.sqrt(3 * 4 / 48), rel=1e-3)
        assert nemenyi_critical_difference(4, 10) == pytest.approx(2.569 * math.sqrt(4 * 5 / 60), rel=1e-3)

    @staticmethod
    def _range_sf(q: float, k: int) -> float:
        """P(range of k iid N(0, 1) > q), integrated by hand (not SciPy's studentized_range)."""
        from scipy.integrate import quad
        from scipy.stats import norm

        inside, _ = quad(lambda x: norm.pdf(x) * (norm.cdf(x) - norm.cdf(x - q)) ** (k - 1), -12, 12,
                         epsabs=1e-12, limit=200)
        return 1.0 - k * inside

    @staticmethod
    def _ranked_groups(ranks: list[tuple[int, int, int]]) -> dict[str, list[float]]:
        """Three groups whose per-seed ranks (1 = best, higher is better) are the given tuples."""
        return {name: [10.0 - r[i] for r in ranks] for i, name in enumerate("abc")}

    def test_nemenyi_p_against_demsar_and_the_range_distribution(self) -> None:
        # k = 3, n = 10: rank standard error sqrt(3 * 4 / 60); Demšar (2006) Table 5(a):
        # q_0.05 = 2.343 and q_0.10 = 2.052, so CD_0.05 = 1.048 and CD_0.10 = 0.918.
        se = math.sqrt(3 * 4 / 60)
        at_1_0 = self._ranked_groups([(1, 2, 3)] * 10)  # a = 1.0, b = 2.0, c = 3.0
        at_1_1 = self._ranked_groups([(1, 2, 3)] * 9 + [(1, 3, 2)])  # a = 1.0, b = 2.1, c = 2.9
        at_0_9 = self._ranked_groups([(1, 2, 3)] * 8 + [(1, 3, 2), (2, 1, 3)])  # a = 1.1, b = 2.0, c = 2.9
        p = {}
        for groups in (at_1_0, at_1_1, at_0_9):
            for pair in friedman(groups, higher_is_better=True).pairwise:
                p[round(pair.rank_difference, 6)] = pair.nemenyi_p
        # rank differences on either side of the published critical differences
        assert p[1.1] < 0.05 < p[1.0]
        assert p[0.9] > 0.10 > p[1.0]
        for difference in (0.8, 0.9, 1.0, 1.1, 1.8, 1.9, 2.0):
            expected = self._range_sf(difference / se * math.sqrt(2.0), 3)
            assert p[difference] == pytest.approx(expected, rel=1e-6, abs=1e-12), difference
        # the Demšar q values are the range quantiles scaled by 1/sqrt(2)
        assert self._range_sf(2.343 * math.sqrt(2.0), 3) == pytest.approx(0.05, abs=2e-4)
        assert self._range_sf(2.052 * math.sqrt(2.0), 3) == pytest.approx(0.10, abs=2e-4)

    def test_nemenyi_p_of_equal_ranks_is_one_and_falls_with_the_rank_difference(self) -> None:
        balanced = self._ranked_groups([(1, 2, 3), (2, 3, 1), (3, 1, 2)] * 2)  # every average rank 2.0
        assert all(pair.nemenyi_p == pytest.approx(1.0) for pair in friedman(balanced, higher_is_better=True).pairwise)
        k4 = {"a": [4.0] * 6, "b": [3.0] * 6, "c": [2.0] * 6, "d": [1.0] * 6}
        pairs = {(p.a, p.b): p.nemenyi_p for p in friedman(k4, higher_is_better=True).pairwise}
        # k = 4, n = 6: q_0.05 = 2.569 (Demšar), CD = 2.569 * sqrt(4 * 5 / 36) = 1.915
        assert pairs[("a", "b")] > 0.05 > pairs[("a", "c")] > pairs[("a", "d")]  # differences 1, 2, 3
        se = math.sqrt(4 * 5 / 36)
        assert pairs[("a", "d")] == pytest.approx(self._range_sf(3 / se * math.sqrt(2.0), 4), rel=1e-6)

    def test_complete_ties(self) -> None:
        same = [0.8, 0.7, 0.9]
        res = friedman({"a": same, "b": same, "c": same}, higher_is_better=True)
        assert res.p_value == 1.0 and res.statistic == 0.0
        assert set(res.average_ranks.values()) == {2.0}

    def test_bad_input(self) -> None:
        with pytest.raises(ValueError, match="at least 3 groups"):
            friedman({"a": [1, 2], "b": [2, 3]}, higher_is_better=True)
        with pytest.raises(ValueError, match="differ in length"):
            friedman({"a": [1, 2], "b": [2, 3], "c": [1, 2, 3]}, higher_is_better=True)


class TestAlignBySeed:
    def test_error_names_missing_seeds_per_group(self) -> None:
        groups = {
            "unpruned": {s: 0.8 for s in range(6)},
            "ga": {s: 0.8 for s in (0, 1, 2, 5)},
        }
        with pytest.raises(ValueError) as info:
            align_by_seed(groups)
        message = str(info.value)
        assert message == "group 'ga' lacks seeds [3, 4] that 'unpruned' has"
        assert "\n" not in message

    def test_error_lists_every_incomplete_group(self) -> None:
        groups = {"a": {1: 0.1, 2: 0.2}, "b": {1: 0.1, 3: 0.3}, "c": {1: 0.1, 2: 0.2, 3: 0.3}}
        expected = r"group 'a' lacks seeds \[3\] that 'b', 'c' have; group 'b' lacks seeds \[2\]"
        with pytest.raises(ValueError, match=expected):
            align_by_seed(groups)

    def test_aligns_in_numeric_seed_order(self) -> None:
        seeds, aligned = align_by_seed({"a": {10: 1.0, 2: 2.0}, "b": {2: 20.0, 10: 10.0}})
        assert seeds == [2, 10]
        np.testing.assert_array_equal(aligned["a"], [2.0, 1.0])
        np.testing.assert_array_equal(aligned["b"], [20.0, 10.0])

    def test_drop_incomplete_keeps_common_seeds(self) -> None:
        with pytest.warns(UserWarning, match="lacks seeds"):
            seeds, aligned = align_by_seed({"a": {1: 1.0, 2: 2.0}, "b": {2: 3.0}}, drop_incomplete=True)
        assert seeds == [2] and aligned["a"].tolist() == [2.0]


class TestCriticalDifferenceDiagram:
    def test_cliques_join_groups_closer_than_cd(self) -> None:
        assert _cliques([1.0, 2.25, 2.75, 4.0], 1.66) == [(0, 1), (1, 2), (2, 3)]
        assert _cliques([1.0, 1.5, 2.0, 4.0], 1.2) == [(0, 2)]
        assert _cliques([1.0, 3.0, 5.0], 1.0) == []

    def test_writes_a_real_plot(self, tmp_path) -> None:
        res = friedman(_seeded_groups(), higher_is_better=True)
        out = tmp_path / "sub" / "cd.png"
        path = critical_difference_diagram(res.average_ranks, res.critical_difference, out, title="t")
        assert path.is_file()
        assert_real_plot(path)

    def test_bad_input(self, tmp_path) -> None:
        with pytest.raises(ValueError, match="at least 2 groups"):
            critical_difference_diagram({"a": 1.0}, 1.0, tmp_path / "x.png")
        with pytest.raises(ValueError, match="positive critical difference"):
            critical_difference_diagram({"a": 1.0, "b": 2.0}, 0.0, tmp_path / "x.png")
