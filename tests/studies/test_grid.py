"""Study grids: validation, cells and tags, and a 2x2 grid that resumes after a kill."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import make_planted_features, new_mlflow_store
from helpers_runs import grid_toml
from evoprune_tf.studies.grid import (
    AXIS_TAG_PREFIX,
    CELL_TAG,
    GRID_TAG,
    LABEL_TAG,
    cell_key,
    grid_from_dict,
    load_grid,
    run_grid,
)


def _tiny(generations: int, uri: str) -> str:
    return grid_toml("resume-grid", generations=generations, experiment="grid-test", tracking=f'uri = "{uri}"')


def _grid(axes: dict, **extra) -> dict:
    return {"grid": {"name": "g", "axes": axes}, "tracking": {"uri": "sqlite:////nonexistent/x.db"}, **extra}


def test_cells_are_the_cross_product_with_tags_per_axis(tmp_path) -> None:
    grid = grid_from_dict(_grid({"seed": [0, 1, 2], "operators.mate": ["uniform", {"name": "uniform", "indpb": 0.3}]}))
    assert len(grid.cells) == 6 and grid.runner == "serial"
    assert [c.label for c in grid.cells[:2]] == [
        "seed=0 operators.mate=uniform", 'seed=0 operators.mate={"indpb": 0.3, "name": "uniform"}']
    cell = grid.cells[1]
    assert cell.config["seed"] == 0 and cell.config["operators"]["mate"] == {"name": "uniform", "indpb": 0.3}
    tags = cell.tags("g")
    assert tags[GRID_TAG] == "g" and tags[CELL_TAG] == cell.key and tags[LABEL_TAG] == cell.label
    assert tags[AXIS_TAG_PREFIX + "seed"] == "0" and tags[AXIS_TAG_PREFIX + "operators.mate"].startswith("{")
    assert len({c.key for c in grid.cells}) == 6
    assert cell.config["tracking"]["run_name"] == "steady_state-s0-synthetic-mate=uniform-indpb=0.3"


def test_cells_of_a_method_without_checkpoints_get_no_checkpoint_dir_and_load_as_their_run_does() -> None:
    from evoprune_tf.app.config import config_from_dict

    ga = grid_from_dict(_grid({"seed": [0]})).cells[0]
    assert ga.config["checkpoint"]["dir"].startswith("/")  # absolute: Ray workers run elsewhere
    filters = grid_from_dict(_grid({"seed": [0, 1], "algorithm.name": ["l1_filters", "random_filters"]},
                                   encoding={"name": "filters"})).cells
    assert {c.config["checkpoint"]["dir"] for c in filters} == {""}
    for cell in filters:  # a filter baseline refuses a [checkpoint] key it does not read
        assert config_from_dict(cell.config).algorithm.name in ("l1_filters", "random_filters")


def test_a_section_axis_merges_tables_and_the_key_ignores_display_and_tracking() -> None:
    grid = grid_from_dict(_grid({"algorithm": [{"name": "ea_simple", "generations": 2}, {"name": "steady_state"}]}))
    assert grid.cells[0].config["algorithm"]["generations"] == 2
    assert grid.cells[1].config["algorithm"]["name"] == "steady_state"
    config = dict(grid.cells[0].config)
    assert cell_key({**config, "progress": not config["progress"], "tracking": {}}) == grid.cells[0].key
    assert cell_key({**config, "seed": 5}) != grid.cells[0].key


@pytest.mark.parametrize("axes, message", [
    ({"sed": [0]}, r"grid key 'sed' is not a config key \('sed' is not in the config\); expected one of: .*seed"),
    ({"algorithm.evaluation": [1]}, r"grid key 'algorithm.evaluation' is not a config key \('evaluation' is not in algorithm\)"),
    ({"tracking.experiment": ["a"]}, r"grid key 'tracking.experiment' cannot be an axis"),
    ({"seed": []}, r"grid.axes.seed=\[\]; expected a non-empty list"),
    ({}, r"\[grid.axes\] is empty"),
    ({"algorithm.population": [0, 5]}, r"1 invalid cell\(s\): .*cell \[algorithm.population=0\].*algorithm.population=0"),
    ({"seed": [1, 1]}, r"cells \[seed=1\] and \[seed=1\] are the same run"),
])
def test_bad_grids_fail_in_one_line_before_any_run(axes, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        grid_from_dict(_grid(axes))
    assert "\n" not in str(info.value)


def test_bad_grid_settings_and_files_fail_in_one_line(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown key grid.runners; expected one of"):
        grid_from_dict({"grid": {"axes": {"seed": [0]}, "runners": "ray"}})
    with pytest.raises(ValueError, match=r"grid.runner='dask'; expected 'serial' or 'ray'"):
        grid_from_dict({"grid": {"axes": {"seed": [0]}, "runner": "dask"}})
    with pytest.raises(ValueError, match=r"no \[grid\] table"):
        grid_from_dict({"seed": 1})
    with pytest.raises(ValueError, match=r"grid.base='missing.toml' is not a file"):
        grid_from_dict({"grid": {"axes": {"seed": [0]}, "base": "missing.toml"}}, base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"tracking.enabled=false; expected tracking on"):
        grid_from_dict({"grid": {"axes": {"seed": [0]}}, "tracking": {"enabled": False}})
    with pytest.raises(ValueError, match=r"grid file .* does not exist"):
        load_grid(tmp_path / "nope.toml")


def test_a_base_config_file_is_relative_to_the_grid(tmp_path) -> None:
    (tmp_path / "base.toml").write_text("[algorithm]\npopulation = 7\n")
    (tmp_path / "g.toml").write_text('[grid]\nbase = "base.toml"\n[grid.axes]\nseed = [3]\n[train]\nepochs = 1\n')
    grid = load_grid(tmp_path / "g.toml", overrides={"tracking": {"uri": f"sqlite:///{tmp_path}/m.db"}})
    assert grid.name == "g" and grid.cells[0].config["algorithm"]["population"] == 7
    assert grid.cells[0].config["train"]["epochs"] == 1 and grid.cells[0].config["seed"] == 3


def test_dry_run_lists_every_cell_as_todo(tmp_path, capsys) -> None:
    from evoprune_tf.app.cli import main

    uri = new_mlflow_store(tmp_path)
    (tmp_path / "g.toml").write_text(_tiny(1, uri))
    assert main(["grid", str(tmp_path / "g.toml"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(" TODO " in line for line in lines)


SCRIPT = """
import sys
import numpy as np
from evoprune_tf.features.splits import FeatureSplits
from evoprune_tf.studies.grid import load_grid, run_grid

data = np.load(sys.argv[2])
features = FeatureSplits(data["x_train"], data["y_train"], data["x_val"], data["y_val"], data["x_test"],
                         data["y_test"], class_names=("c0", "c1", "c2"), name="planted")
run_grid(load_grid(sys.argv[1]), features=features)
"""


def _runs(uri: str, experiment: str = "grid-test") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.mark.slow
def test_a_killed_2x2_grid_resumes_without_repeating_finished_runs(tmp_path) -> None:
    uri = new_mlflow_store(tmp_path)
    (tmp_path / "grid.toml").write_text(_tiny(8, uri))
    (tmp_path / "run_grid.py").write_text(SCRIPT)
    features, _ = make_planted_features()
    np.savez(tmp_path / "features.npz", **{k: getattr(features, k) for k in
                                           ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")})
    child = subprocess.Popen([sys.executable, str(tmp_path / "run_grid.py"), str(tmp_path / "grid.toml"),
                              str(tmp_path / "features.npz")], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        # Kill it once two cells are FINISHED and a third has written a checkpoint.
        while time.monotonic() < deadline and child.poll() is None:
            runs = _runs(uri)
            finished = [r for r in runs if r.info.status == "FINISHED"]
            midway = [r for r in runs if r.info.status == "RUNNING" and "evoprune.checkpoint" in r.data.tags]
            if len(finished) >= 2 and (midway or len(finished) >= 3):
                break
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    before = {r.info.run_id: r for r in _runs(uri) if r.info.status == "FINISHED"}
    assert 2 <= len(before) < 4, "the grid was not killed half-way"
    was_running = [r.info.run_id for r in _runs(uri) if r.info.status == "RUNNING"]

    result = run_grid(load_grid(tmp_path / "grid.toml"), features=features)
    assert result.count("skipped") == len(before) and result.count("failed") == 0
    assert result.count("finished") == 4 - len(before)
    after = _runs(uri)
    finished = [r for r in after if r.info.status == "FINISHED"]
    assert len(finished) == 4 and len({r.data.tags[CELL_TAG] for r in finished}) == 4
    for run_id, run in before.items():  # finished runs were not run again
        again = next(r for r in after if r.info.run_id == run_id)
        assert again.info.end_time == run.info.end_time
    assert not [r for r in after if r.info.status == "RUNNING"]
    if was_running:  # the run killed half-way continued in the same MLflow run
        resumed = [o for o in result.outcomes if o.resumed]
        assert [o.run_id for o in resumed] == was_running
        run = next(r for r in after if r.info.run_id == was_running[0])
        assert run.data.tags["evoprune.grid_resumes"] == "1"
        from mlflow import MlflowClient

        steps = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(was_running[0], "evaluations")]
        assert sorted(set(steps)) == list(range(9))  # generations 0..8, none lost
