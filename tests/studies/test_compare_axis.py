"""`evoprune compare --axis` and `--fronts` over a temporary MLflow store of constructed sweep runs.

The store holds what `evoprune grid` leaves of a density sweep: every run tagged with its
algorithm, seed and ``evoprune.grid.<axis>`` values, and the final metrics a head run
logs; NSGA-II runs carry the report's ``pareto/pareto_front.csv``. The numbers are
built so that the tests' outcomes are known by hand.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from conftest import new_mlflow_store
from scipy import stats as sps
from test_stats import assert_real_plot

from evoprune_tf.studies.axis import GRID_AXIS_PREFIX
from evoprune_tf.studies.compare import compare_main
from evoprune_tf.studies.compare_axis import compare_over_axis
from evoprune_tf.studies.fronts import front_hypervolume
from evoprune_tf.studies.stats import FriedmanResult, WilcoxonResult

SEEDS = range(8)
KS = (0.01, 0.05, 0.25)
AXIS = "encoding.active"


def accuracy(algorithm: str, k: float, seed: int) -> float:
    """At k = 1%: ga > magnitude > random_mask on every seed; at 25% no order; magnitude skips 5%."""
    base = 0.70 + 0.01 * seed
    if k == 0.01:
        return base + {"ga": 0.05 + 0.001 * seed, "magnitude": 0.02 + 0.0005 * seed, "random_mask": 0.0}[algorithm]
    if k == 0.05:
        return base + {"ga": 0.03 + 0.002 * seed, "random_mask": 0.01}[algorithm]
    noise = {"ga": (3, 1, 4, 1, 5, 9, 2, 6), "magnitude": (2, 7, 1, 8, 2, 8, 1, 8), "random_mask": (1, 4, 1, 4, 2, 1, 3, 5)}
    return base + 0.08 + 0.001 * noise[algorithm][seed]


def nsga_front(seed: int) -> np.ndarray:
    """An NSGA-II test front above every sweep (larger hypervolume on every seed)."""
    return np.array([[0.95 + 0.002 * seed, 0.30], [0.90 + 0.001 * seed, 0.10], [0.86, 0.01]])


def _run(client, experiment_id, tags, metrics, front=None, tmp=None) -> str:
    from mlflow.entities import Metric

    run = client.create_run(experiment_id, tags=tags)
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    if front is not None:
        path = tmp / "pareto_front.csv"
        rows = [f"{i},{acc},{frac}" for i, (acc, frac) in enumerate(front)]
        path.write_text("member,test_accuracy,active_fraction\n" + "\n".join(rows) + "\n")
        client.log_artifact(run.info.run_id, str(path), "pareto")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Experiment 'sweep': ga, random_mask, magnitude over k x 8 seeds, unpruned (no k), nsga2, nsga_nofront."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(folder)
    client = MlflowClient(tracking_uri=uri)
    sweep = client.create_experiment("sweep", artifact_location=(folder / "artifacts").as_uri())
    for algorithm in ("ga", "random_mask", "magnitude"):
        for k in KS:
            if algorithm == "magnitude" and k == 0.05:
                continue
            for seed in SEEDS:
                tags = {"evoprune.algorithm": algorithm, "evoprune.seed": str(seed), GRID_AXIS_PREFIX + AXIS: str(k),
                        GRID_AXIS_PREFIX + "seed": str(seed), GRID_AXIS_PREFIX + "encoding.name": "feature_selection"}
                _run(client, sweep, tags, {"test_accuracy_mean": accuracy(algorithm, k, seed), "active_percent": 100 * k})
    for seed in SEEDS:
        _run(client, sweep, {"evoprune.algorithm": "unpruned", "evoprune.seed": str(seed)},
             {"test_accuracy_mean": 0.8, "active_percent": 100.0})
        _run(client, sweep, {"evoprune.algorithm": "nsga2", "evoprune.seed": str(seed)},
             {"test_accuracy_mean": 0.9, "active_percent": 10.0}, nsga_front(seed), folder)
        _run(client, sweep, {"evoprune.algorithm": "nsga_nofront", "evoprune.seed": str(seed)},
             {"test_accuracy_mean": 0.9, "active_percent": 10.0})
    holes = client.create_experiment("holes", artifact_location=(folder / "artifacts-h").as_uri())
    for algorithm in ("ga", "random_mask", "partial"):
        for k in (0.01, 0.25):
            for seed in range(4):
                # Nobody ran seed 3 at 25%; 'partial' also lacks seed 1 at 1%.
                if (k == 0.25 and seed == 3) or (algorithm == "partial" and k == 0.01 and seed == 1):
                    continue
                tags = {"evoprune.algorithm": algorithm, "evoprune.seed": str(seed), GRID_AXIS_PREFIX + AXIS: str(k)}
                acc = accuracy("ga" if algorithm == "ga" else "random_mask", k, seed)
                _run(client, holes, tags, {"test_accuracy_mean": acc, "active_percent": 100 * k})
    for seed in range(4):
        _run(client, holes, {"evoprune.algorithm": "nsga2", "evoprune.seed": str(seed)},
             {"test_accuracy_mean": 0.9, "active_percent": 10.0}, nsga_front(seed), folder)
    return uri


NOT_NSGA = "tags.\"evoprune.algorithm\" != 'nsga2' and tags.\"evoprune.algorithm\" != 'nsga_nofront'"
NO_NOFRONT = "tags.\"evoprune.algorithm\" != 'nsga_nofront'"


def test_the_tag_prefix_is_the_grids():
    from evoprune_tf.studies.grid_spec import AXIS_TAG_PREFIX

    assert GRID_AXIS_PREFIX == AXIS_TAG_PREFIX


def test_table_holds_hand_computed_means_and_stds(store, tmp_path):
    result = compare_over_axis(store, "sweep", axis=AXIS, group_by=["evoprune.algorithm"], out_dir=tmp_path,
                               filter_string=NOT_NSGA, log_to_mlflow=False)
    assert [p.value for p in result.points] == list(KS)
    assert result.groups[0] == "ga" and set(result.groups) == {"ga", "magnitude", "random_mask"}
    assert result.left_out == {"unpruned": 8}  # no axis tag: not on the curve, named in the markdown
    table = result.table.set_index([AXIS, "group"])
    for algorithm, k in (("ga", 0.01), ("random_mask", 0.05), ("magnitude", 0.25)):
        values = [accuracy(algorithm, k, s) for s in SEEDS]
        assert table.loc[(k, algorithm), "test_accuracy_mean_mean"] == pytest.approx(statistics.mean(values))
        assert table.loc[(k, algorithm), "test_accuracy_mean_std"] == pytest.approx(statistics.stdev(values))
        assert table.loc[(k, algorithm), "test_accuracy_mean_n"] == 8
    assert (0.05, "magnitude") not in table.index  # never run there
    csv = result.files["table"].read_text().splitlines()
    assert len(csv) == 1 + 8 and csv[0] == f"{AXIS},group,test_accuracy_mean_mean,test_accuracy_mean_std,test_accuracy_mean_n"
    text = result.files["markdown"].read_text()
    gm = statistics.mean(accuracy("ga", 0.01, s) for s in SEEDS)
    assert f"| 0.01 | {gm:.4g} ± " in text and "Not on the curve (no `encoding.active` grid tag): unpruned (8 runs)" in text
    assert_real_plot(result.files["curve"])


def test_tests_per_value_give_the_hand_computed_p_values(store, tmp_path):
    result = compare_over_axis(store, "sweep", axis=AXIS, group_by=["evoprune.algorithm"], out_dir=tmp_path,
                               filter_string=NOT_NSGA, log_to_mlflow=False)
    low, mid, high = result.points

    # k = 1%: the same order on all 8 seeds -> chi2 = 12 / (n k (k+1)) * sum R^2 - 3 n (k+1) = 16, p = exp(-8).
    assert isinstance(low.test, FriedmanResult)
    assert low.test.statistic == pytest.approx(16.0) and low.test.p_value == pytest.approx(np.exp(-8.0))
    assert list(low.test.average_ranks) == ["ga", "magnitude", "random_mask"]
    pairs = {(p.a, p.b): p for p in low.test.pairwise}
    ga_rm = pairs[("ga", "random_mask")]
    # 8 positive distinct differences: exact two-sided p = 2 / 2^8; Holm over 3 equal p-values multiplies by 3.
    assert ga_rm.wilcoxon_p == pytest.approx(2 / 256) and ga_rm.holm_p == pytest.approx(3 * 2 / 256)
    assert ga_rm.significant
    ga = [accuracy("ga", 0.01, s) for s in SEEDS]
    rm = [accuracy("random_mask", 0.01, s) for s in SEEDS]
    wins = sum((a > b) + 0.5 * (a == b) for a in ga for b in rm)
    assert ga_rm.a12 == pytest.approx(wins / 64)

    # k = 5%: magnitude was not run, two groups remain -> Wilcoxon, ga first.
    assert isinstance(mid.test, WilcoxonResult) and mid.pair == ("ga", "random_mask")
    assert mid.test.p_value == pytest.approx(2 / 256) and mid.test.a12 > 0.5

    # k = 25%: no planted order -> SciPy's Friedman on the same numbers, not significant.
    columns = [[accuracy(a, 0.25, s) for s in SEEDS] for a in ("ga", "magnitude", "random_mask")]
    assert high.test.p_value == pytest.approx(sps.friedmanchisquare(*columns).pvalue) and high.test.p_value > 0.05
    tests = result.files["tests"].read_text().splitlines()
    assert len(tests) == 4 and tests[2].startswith("0.05,Wilcoxon,8,")
    assert result.files["pairwise"].read_text().count("\n") == 1 + 2 * 3


def test_hypervolume_of_a_known_front():
    # Normalised (minimise, bounds [0, 1]): (0.1, 0.1) and (0.2, 0.05); reference (1.1, 1.1):
    # 0.1 * (1.1 - 0.1) + (1.1 - 0.2) * (1.1 - 0.05) = 0.1 + 0.945.
    assert front_hypervolume([[0.9, 0.1], [0.8, 0.05]]) == pytest.approx(1.045)
    assert front_hypervolume([[0.9, 0.1], [0.8, 0.05], [0.7, 0.2]]) == pytest.approx(1.045)  # a dominated point
    assert front_hypervolume([[1.0, 0.0]]) == pytest.approx(1.21)


def _staircase(points) -> float:
    """Hand hypervolume of a 2-D (accuracy, fraction) set against accuracy -0.1, fraction 1.1."""
    area, best_cost = 0.0, 1.1  # cost = 1 - accuracy, minimised
    for fraction, cost in sorted((f, 1 - a) for a, f in points):
        if cost < best_cost:
            area += (1.1 - fraction) * (best_cost - cost)
            best_cost = cost
    return area


def test_fronts_against_sweeps(store, tmp_path, capsys):
    from mlflow import MlflowClient

    argv = ["--experiment", "sweep", "--group-by", "evoprune.algorithm", "--tracking-uri", store, "--filter",
            NO_NOFRONT, "--axis", AXIS, "--fronts", "nsga2", "--out", str(tmp_path / "cmp")]
    assert compare_main(argv) == 0
    out = capsys.readouterr().out
    assert "Fronts against sweeps: test hypervolume" in out and "| 0.25 |" in out
    result_csv = (tmp_path / "cmp" / "fronts.csv").read_text().splitlines()
    assert result_csv[0].startswith("evoprune.seed,nsga2,") and len(result_csv) == 1 + 8
    for row in result_csv[1:]:
        seed, *cells = row.split(",")
        by_group = dict(zip(result_csv[0].split(",")[1:], map(float, cells)))
        assert by_group["nsga2"] == pytest.approx(_staircase(nsga_front(int(seed))))
        ga = [(accuracy("ga", k, int(seed)), k) for k in KS]
        assert by_group["ga"] == pytest.approx(_staircase(ga))
        assert by_group["magnitude"] == pytest.approx(_staircase([(accuracy("magnitude", k, int(seed)), k)
                                                                  for k in (0.01, 0.25)]))
    tests = (tmp_path / "cmp" / "fronts_tests.csv").read_text().splitlines()
    assert len(tests) == 1 + 3
    for line in tests[1:]:
        front, sweep, n, _, p, holm_p, a12, magnitude = line.split(",")
        assert front == "nsga2" and n == "8" and float(p) == pytest.approx(2 / 256)
        assert float(holm_p) == pytest.approx(3 * 2 / 256) and float(a12) == 1.0 and magnitude == "large"
    assert_real_plot(tmp_path / "cmp" / "fronts.png")
    assert_real_plot(tmp_path / "cmp" / "axis_curve.png")

    client = MlflowClient(tracking_uri=store)
    comparisons = client.get_experiment_by_name("sweep-comparisons")
    (run,) = client.search_runs([comparisons.experiment_id], filter_string="tags.\"evoprune.compare.axis\" = 'encoding.active'")
    assert run.data.metrics["p_value_at_0.01"] == pytest.approx(np.exp(-8.0))
    assert run.data.metrics["hypervolume_holm_p_nsga2_vs_ga"] == pytest.approx(3 * 2 / 256)
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "comparison")}
    assert {"comparison/axis_curve.png", "comparison/fronts.png", "comparison/comparison.md"} <= logged


@pytest.mark.parametrize("extra, message", [
    (["--axis", "encoding.hidden"], "axis 'encoding.hidden' is not in the study: no selected run of experiment "
                                    "'sweep' has the tag 'evoprune.grid.encoding.hidden'; expected one of its grid "
                                    "axes: encoding.active, encoding.name, seed"),
    (["--axis", "encoding.name"], "axis 'encoding.name' is not numeric: run "),
    (["--axis", AXIS, "--filter", "tags.\"evoprune.grid.encoding.active\" = '0.05'"],
     "axis 'encoding.active' has one value (0.05) in the selection; expected a sweep of two or more values"),
    (["--axis", AXIS, "--group-by", "evoprune.algorithm,evoprune.grid.encoding.active"],
     "axis 'encoding.active' is also a --group-by tag"),
    (["--axis", AXIS, "--fronts", "nsga4"], "--fronts group 'nsga4' is not in the selection; expected one of: "),
    (["--fronts", "nsga2"], "--fronts nsga2 needs --axis"),
    (["--axis", AXIS, "--fronts", "nsga_nofront"],
     "of front group 'nsga_nofront' has no artifact pareto/pareto_front.csv; expected a multi-objective run"),
])
def test_bad_input_is_one_line_before_any_output(store, tmp_path, capsys, extra, message):
    argv = ["--experiment", "sweep", "--group-by", "evoprune.algorithm", "--tracking-uri", store, "--no-log",
            "--out", str(tmp_path / "out"), *extra]
    assert compare_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_non_numeric_value_is_named(store, tmp_path):
    with pytest.raises(ValueError, match=r"encoding\.name = feature_selection; expected numbers"):
        compare_over_axis(store, "sweep", axis="evoprune.grid.encoding.name", group_by=["evoprune.algorithm"],
                          out_dir=tmp_path, log_to_mlflow=False)


def test_incomplete_seeds_are_named_or_dropped(store, tmp_path):
    no_partial = "tags.\"evoprune.algorithm\" != 'partial'"
    with pytest.raises(ValueError, match=r"^at encoding.active = 0.01: group 'partial' lacks seeds \[1\] that"):
        compare_over_axis(store, "holes", axis=AXIS, group_by=["evoprune.algorithm"], out_dir=tmp_path,
                          filter_string="tags.\"evoprune.algorithm\" != 'nsga2'", log_to_mlflow=False)
    with pytest.raises(ValueError, match=r"^sweep group 'ga' seed 3 lacks encoding.active = 0.25; expected every "
                                         r"value of its sweep \(or --drop-incomplete\)$"):
        compare_over_axis(store, "holes", axis=AXIS, group_by=["evoprune.algorithm"], out_dir=tmp_path,
                          fronts=["nsga2"], filter_string=no_partial, log_to_mlflow=False)
    with pytest.warns(UserWarning, match="seed dropped"):
        result = compare_over_axis(store, "holes", axis=AXIS, group_by=["evoprune.algorithm"], out_dir=tmp_path,
                                   fronts=["nsga2"], filter_string=no_partial, log_to_mlflow=False,
                                   drop_incomplete=True)
    assert sorted(result.fronts.hypervolumes["ga"]) == [0, 1, 2] and sorted(result.fronts.hypervolumes["nsga2"]) == [0, 1, 2, 3]
    assert all(pair.test.n == 3 for pair in result.fronts.pairs)
    assert [p.test.n for p in result.points] == [4, 3]
