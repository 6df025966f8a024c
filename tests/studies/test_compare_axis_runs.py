"""`compare --axis --fronts` on real (tiny) grid runs: what `evoprune grid` and the report log is what it reads."""

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store

from evoprune_tf.studies.compare_axis import compare_over_axis
from evoprune_tf.studies.fronts import front_hypervolume
from evoprune_tf.studies.grid import grid_from_dict, run_grid


@pytest.mark.slow
def test_a_density_sweep_and_nsga2_fronts_compare(tmp_path):
    from mlflow import MlflowClient

    data, _ = make_planted_features(n_features=32, seed=5)
    uri = new_mlflow_store(tmp_path)
    common = {"progress": False, "head": {"hidden": [8]}, "train": {"epochs": 3, "engine": "numpy"},
              "report": {"seeds": 1, "export_model": False},
              "tracking": {"uri": uri, "experiment": "density"}, "checkpoint": {"enabled": False}}
    sweep = {"grid": {"name": "sweep", "axes": {"seed": [0, 1, 2], "algorithm.name": ["random_mask", "magnitude"],
                                                "encoding.active": [2, 8]}}, **common}
    fronts = {"grid": {"name": "fronts", "axes": {"seed": [0, 1, 2]}}, **common,
              "algorithm": {"name": "nsga2", "population": 4, "evaluations": 8},
              "objectives": {"names": ["accuracy", "active_fraction"]}}
    for raw in (sweep, fronts):
        outcome = run_grid(grid_from_dict(raw), features=data)
        assert outcome.count("failed") == 0

    result = compare_over_axis(uri, "density", axis="encoding.active", group_by=["evoprune.algorithm"],
                               fronts=["nsga2"], out_dir=tmp_path / "cmp", log_to_mlflow=False)
    assert [p.value for p in result.points] == [2.0, 8.0]
    assert set(result.groups) == {"random_mask", "magnitude"} and all(p.test.n == 3 for p in result.points)
    hv = result.fronts.hypervolumes
    assert sorted(hv["nsga2"]) == [0, 1, 2] and all(0.0 < v <= 1.21 for v in hv["nsga2"].values())

    # The sweep's front is its runs' (test accuracy, active share), one point per k.
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("density").experiment_id],
                              filter_string="tags.\"evoprune.algorithm\" = 'magnitude' and tags.\"evoprune.seed\" = '1'")
    points = [(r.data.metrics["test_accuracy_mean"], r.data.metrics["active_percent"] / 100) for r in runs]
    assert sorted(p[1] for p in points) == [2 / 32, 8 / 32]
    assert hv["magnitude"][1] == pytest.approx(front_hypervolume(np.array(points)))
    assert len(result.fronts.pairs) == 2 and (tmp_path / "cmp" / "fronts.png").is_file()
