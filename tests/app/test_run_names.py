"""Every run is named ``<method>-s<seed>-<dataset>[...]``: single runs, grid cells, TASCNet."""

from __future__ import annotations

import pytest

from evoprune_tf.methods.head.build import tracker_options
from evoprune_tf.app.config import config_from_dict
from evoprune_tf.session.run_names import MAX_RUN_NAME, run_name
from evoprune_tf.studies.grid import grid_from_dict


def _config(**sections):
    return config_from_dict({"name": "flowers-study", **sections})


@pytest.mark.parametrize("sections, expected", [
    ({"algorithm": {"name": "l1_selection", "density": 0.5}, "seed": 4, "data": {"source": "/data/flowers"}}, "l1_selection-s4-flowers"),
    ({"seed": 0, "data": {"source": "tfds:rock_paper_scissors", "name": "rps"}}, "steady_state-s0-rps"),
    ({"seed": 2, "data": {"source": "builtin:synthetic"}, "encoding": {"name": "neuron_pruning"}},
     "steady_state-s2-synthetic-neuron"),
])
def test_a_single_run_leads_with_method_and_seed(sections, expected) -> None:
    assert tracker_options(_config(**sections))["run_name"] == expected


def test_an_explicit_run_name_still_wins_in_a_single_run() -> None:
    assert tracker_options(_config(tracking={"run_name": "mine"}))["run_name"] == "mine"


def test_a_grid_cell_uses_the_same_pattern_with_its_other_axis_values() -> None:
    grid = grid_from_dict({
        "name": "hold3",
        "data": {"source": "tfds:rock_paper_scissors"},
        "grid": {"name": "hold3", "axes": {
            "seed": [4], "algorithm.name": ["random_mask", "steady_state"], "algorithm.population": [10, 20],
            "encoding.name": ["feature_selection"], "operators.mate": [{"name": "uniform", "indpb": 0.3}]}},
        "algorithm": {"density": 0.05},
        "tracking": {"uri": "sqlite:////nonexistent/x.db", "run_name": "ignored in a grid"},
    })
    names = [c.config["tracking"]["run_name"] for c in grid.cells]
    assert names == [
        "random_mask-s4-rock_paper_scissors-population=10-mate=uniform-indpb=0.3",
        "random_mask-s4-rock_paper_scissors-population=20-mate=uniform-indpb=0.3",
        "steady_state-s4-rock_paper_scissors-population=10-mate=uniform-indpb=0.3",
        "steady_state-s4-rock_paper_scissors-population=20-mate=uniform-indpb=0.3",
    ]


def test_a_table_axis_shows_its_keys_and_long_names_are_cut() -> None:
    config = _config(seed=1, data={"name": "d" * 200})
    assert run_name(config, {"seed": 1, "algorithm": {"name": "ea_simple", "generations": 2}}) == (
        "steady_state-s1-" + "d" * 24 + "-generations=2")
    long = run_name(config, {f"report.k{i}": "v" * 30 for i in range(9)})
    assert len(long) == MAX_RUN_NAME and long.startswith("steady_state-s1-ddd")
    assert run_name(config, dataset="rps") == "steady_state-s1-rps"  # TASCNet names its splits
