"""`evoprune compare` on real (tiny) runs: the metrics a run logs are the ones compare reads."""

import io

import pytest

from conftest import make_planted_features, new_mlflow_store
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import load_config
from evoprune_tf.app.run import run


@pytest.mark.slow
def test_compare_reads_what_runs_log_and_tests_the_pair(tmp_path, capsys):
    data, _ = make_planted_features(n_features=32, seed=5)
    uri = new_mlflow_store(tmp_path)
    for seed in range(3):
        for name, algorithm in (("random_search", {}), ("random_mask", {"density": 0.2})):
            config = load_config(overrides={
                "seed": seed, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 3, "engine": "numpy"},
                "algorithm": {"name": name, "population": 4, "evaluations": 8, **algorithm},
                "report": {"seeds": 1, "export_model": False},
                "tracking": {"uri": uri, "experiment": "study"}, "checkpoint": {"enabled": False},
            })
            run(config, features=data, out=io.StringIO())
    capsys.readouterr()
    code = cli_main(["compare", "--experiment", "study", "--group-by", "evoprune.algorithm", "--tracking-uri", uri,
                     "--out", str(tmp_path / "cmp"), "--metrics", "test_accuracy_mean,active_percent,wall_seconds"])
    out = capsys.readouterr().out
    assert code == 0
    assert "random_search" in out and "random_mask" in out and "Wilcoxon" in out
    assert (tmp_path / "cmp" / "comparison.csv").read_text().count("\n") == 3  # header + 2 groups
