"""Fixed-budget (cardinality) search: ``encoding.active = k`` keeps every genome at exactly k genes.

Config defaults and bad input, the toolbox, every head baseline at the same k, an
``evoprune run`` whose every evaluated genome has k genes on, and a planted-signal
check that the GA at small k finds more informative features than chance.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store

from evoprune_tf.app.cli import build_parser, overrides_from_args
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import ConfigError, config_from_dict, load_config
from evoprune_tf.app.run import run
from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.methods.head.baselines import random_count_genome
from evoprune_tf.search.checkpoint import CHECKPOINT_FILE, load_checkpoint
from evoprune_tf.search.toolbox import build_toolbox
from evoprune_tf.train import TrainConfig


def _ones_of_key(key: bytes) -> int:
    """Active genes of an evaluator cache key (length, then the packed bits)."""
    return int(np.unpackbits(np.frombuffer(key[8:], dtype=np.uint8)).sum())


def _raw(tmp_path: Path, **sections) -> dict:
    raw = {"seed": 1, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 5, "engine": "numpy"},
           "algorithm": {"population": 8, "evaluations": 24}, "tracking": {"enabled": False},
           "checkpoint": {"dir": str(tmp_path / "ckpt")}, "report": {"seeds": 1, "export_model": False}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def _one_line_problem(overrides: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as error:
        load_config(overrides=overrides)
    assert "\n" not in str(error.value)


def test_a_budget_switches_the_default_operators_to_count_keeping_ones():
    config = load_config(overrides={"encoding": {"active": 5}})
    assert config.operators.init == "random_k"
    assert config.operators.mate == {"name": "uniform_k", "indpb": 0.5}
    assert config.operators.mutate == {"name": "swap_one", "indpb": 1.0}
    assert config.operators.select == {"name": "hamming_farthest", "candidates": 3}  # unchanged
    own = load_config(overrides={"encoding": {"active": 0.05}, "operators": {"mate": "two_point_k",
                                                                             "mutate": {"name": "swap", "indpb": 0.1}}})
    assert own.operators.mate == "two_point_k" and own.operators.mutate == {"name": "swap", "indpb": 0.1}
    nsga = load_config(overrides={"encoding": {"active": 10}, "algorithm": {"name": "nsga2"}})
    assert nsga.operators.select == "random" and nsga.operators.survive == "nsga2"
    assert nsga.operators.mate["name"] == "uniform_k" and nsga.operators.init == "random_k"
    plain = load_config()
    assert plain.encoding.active == 0 and plain.operators.init == "random_density"


def test_active_on_the_command_line_is_a_count_or_a_fraction():
    count = overrides_from_args(build_parser().parse_args(["run", "--active", "64"]))
    fraction = overrides_from_args(build_parser().parse_args(["run", "--active", "0.05"]))
    assert count["encoding"] == {"active": 64} and isinstance(count["encoding"]["active"], int)
    assert fraction["encoding"] == {"active": 0.05}
    assert load_config(overrides=count).operators.init == "random_k"


@pytest.mark.parametrize("overrides, pattern", [
    ({"encoding": {"active": -1}}, r"encoding.active=-1; expected 0 \(off\), a count"),
    ({"encoding": {"active": 1.5}}, r"encoding.active=1.5; expected .* a fraction in \(0, 1\]"),
    ({"encoding": {"active": True}}, r"encoding.active=True has the wrong type"),
    ({"encoding": {"active": 40, "name": "neuron_pruning"}, "head": {"hidden": [16, 16]}},
     r"encoding.active=40 is outside \(0, 32\]"),
    ({"operators": {"mutate": {"name": "swap_one", "indpb": 0.5}}},
     r"operators.mutate='swap_one' is a cardinality \(count-keeping\) operator but encoding.active is not set"),
    ({"operators": {"init": {"name": "random_k", "k": 5}}},
     r"operators.init='random_k' is a cardinality .* encoding.active is not set"),
    ({"operators": {"mate": "two_point_k"}, "algorithm": {"name": "ea_simple"}},
     r"operators.mate='two_point_k' is a cardinality"),
    ({"encoding": {"active": 5}, "operators": {"mate": "uniform"}},
     r"operators.mate='uniform' does not keep the count of encoding.active; expected a count-keeping crossover"),
    ({"encoding": {"active": 5}, "operators": {"mutate": {"name": "flip_bit", "indpb": 0.1}}},
     r"operators.mutate='flip_bit' does not keep the count"),
    ({"encoding": {"active": 5}, "operators": {"seed_unpruned": True}},
     r"operators.seed_unpruned with encoding.active=5"),
    ({"encoding": {"active": 5}, "algorithm": {"name": "random_mask", "density": 0.3}},
     r"encoding.active=5 and algorithm.density=0.3"),
    ({"encoding": {"active": 5}, "algorithm": {"name": "deep_pruning_es"}},
     r"encoding.active=5 with algorithm 'deep_pruning_es'"),
])
def test_bad_budgets_and_operators_are_one_line_config_errors(overrides, pattern):
    _one_line_problem(overrides, pattern)


def test_a_budget_larger_than_the_genome_fails_before_any_evaluation(tmp_path):
    data, _ = make_planted_features(n_features=40, seed=0)
    config = config_from_dict(_raw(tmp_path, encoding={"active": 41}))
    with pytest.raises(ValueError, match=r"^encoding.active=41 is outside \(0, 40\]; expected a count") as error:
        run(config, features=data, out=io.StringIO())
    assert "\n" not in str(error.value)
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").rglob("checkpoint.*"))  # no generation ran
    spec = HeadSpec(40, data.n_classes, (8,))
    evaluator = PopulationEvaluator(FeatureSelection(spec), data, TrainConfig(epochs=1, engine="numpy"), seed=0)
    with pytest.raises(ValueError, match=r"encoding.active=0.0 is outside \(0, 1\]"):
        build_toolbox(evaluator, active=0.0)
    with pytest.raises(ValueError, match=r"operators.mutate='swap' is a cardinality"):
        build_toolbox(evaluator, mutate={"name": "swap", "indpb": 0.1})
    toolbox = build_toolbox(evaluator, active=0.25)
    population = toolbox.population(n=20)
    assert all(int(ind.sum()) == 10 for ind in population)
    for a, b in zip(population[::2], population[1::2]):
        toolbox.mate(a, b)
        toolbox.mutate(a)
        assert int(a.sum()) == int(b.sum()) == 10


def test_a_count_above_the_backbones_features_fails_before_any_image_is_read(tmp_path, capsys, monkeypatch):
    """MobileNetV2 has 1,280 features: 1,281 fails in one line, and no feature is extracted or cached."""
    from evoprune_tf.methods.head.build import genome_length_of

    monkeypatch.chdir(tmp_path)
    code = cli_main(["run", "--data", "builtin:synthetic", "--backbone", "mobilenet_v2", "--weights", "none",
                     "--image-size", "32", "--active", "1281", "--no-tracking", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip().splitlines() == [
        "error: encoding.active=1281 is outside (0, 1280]; expected a count of active genes from 1 to the 1280 "
        "genes of the encoding (or a fraction in (0, 1])"]
    assert "features" not in captured.out.lower()  # the features summary of an extraction never printed
    connections = load_config(overrides={"encoding": {"name": "connection_pruning", "layer": 0}, "head": {"hidden": [4]}})
    assert genome_length_of(connections) == 1280 * 4
    last = load_config(overrides={"encoding": {"name": "connection_pruning", "layer": 1}, "head": {"hidden": [4]}})
    assert genome_length_of(last) is None  # the classes decide: checked once the data is loaded


@pytest.mark.parametrize("method", ["random_mask", "magnitude", "l1_selection", "random_search"])
def test_every_head_baseline_takes_the_same_k(tmp_path, method):
    data, informative = make_planted_features(n_features=60, n_informative=5, seed=2)
    raw = _raw(tmp_path, encoding={"active": 5}, algorithm={"name": method, "evaluations": 16})
    result = run(config_from_dict(raw), features=data, out=io.StringIO())
    assert int(result.best.sum()) == 5
    assert {_ones_of_key(key) for key in result.evaluator.cache} == {5}
    assert result.report["active_percent"] == pytest.approx(100 * 5 / 60, abs=0.01)
    if method == "l1_selection":  # the budget reaches the scores' ranking, not just the size
        assert (result.best.astype(bool) & informative).sum() >= 4
    fraction = run(config_from_dict(_raw(tmp_path, encoding={"active": 0.1}, algorithm={"name": method,
                                                                                        "evaluations": 8})),
                   features=data, out=io.StringIO())
    assert int(fraction.best.sum()) == 6


@pytest.mark.slow
def test_evoprune_run_with_a_budget_evaluates_only_genomes_of_k_genes(tmp_path, capsys, monkeypatch):
    """The command line end to end (images, a backbone, MLflow, checkpoints): every evaluated genome has k genes."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "budget.toml"
    config.write_text(
        'seed = 2\nprogress = false\n[data]\nsource = "builtin:synthetic"\nimage_size = 32\n'
        '[backbone]\nname = "mobilenet_v2"\nweights = "none"\n[head]\nhidden = [8]\n[encoding]\nactive = 13\n'
        '[train]\nepochs = 2\nengine = "numpy"\n[algorithm]\npopulation = 6\nevaluations = 18\n[report]\nseeds = 1\n'
        f'export_model = false\n[tracking]\nuri = "{new_mlflow_store(tmp_path)}"\nexperiment = "budget"\n'
        f'[checkpoint]\ndir = "{tmp_path / "ckpt"}"\n')
    assert cli_main(["run", str(config)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "Final report" in out
    checkpoint = load_checkpoint(next((tmp_path / "ckpt").rglob(CHECKPOINT_FILE)))
    evaluated = list(checkpoint.fitness_cache)
    assert len(evaluated) >= 10  # the initial population and the children, without duplicates
    assert {_ones_of_key(key) for key in evaluated} == {13}
    assert all(int(np.sum(ind)) == 13 for ind in checkpoint.state.population)
    assert all(int(np.sum(ind)) == 13 for ind in checkpoint.state.halloffame)
    assert {round(record.active_fraction * 1280) for record in checkpoint.fitness_cache.values()} == {13}


def _hypergeometric_tail(n: int, good: int, draws: int, at_least: int) -> float:
    """P(at least ``at_least`` of ``draws`` drawn without replacement from ``n`` are among ``good``)."""
    total = math.comb(n, draws)
    return sum(math.comb(good, i) * math.comb(n - good, draws - i) for i in range(at_least, draws + 1)) / total


@pytest.mark.slow
def test_the_ga_at_small_k_finds_more_planted_features_than_a_random_mask(tmp_path):
    """k = 5 of 100 features, 5 of them informative: chance expects 0.25 of them in a mask."""
    data, informative = make_planted_features(n_features=100, n_informative=5, seed=0)
    raw = _raw(tmp_path, encoding={"active": 5}, train={"epochs": 20},
               algorithm={"population": 20, "evaluations": 200}, report={"seeds": 1})
    raw["seed"] = 0
    result = run(config_from_dict(raw), features=data, out=io.StringIO())
    found = int((result.best.astype(bool) & informative).sum())
    # P(a random 5-subset holds >= 3 of the 5) = 0.0006: 3 is far beyond chance
    assert _hypergeometric_tail(100, 5, 5, 3) < 1e-3
    assert found >= 3, f"the GA's winner holds {found} of the 5 informative features"
    chance = [int((random_count_genome(100, 5, seed).astype(bool) & informative).sum()) for seed in range(200)]
    assert found >= np.mean(chance) + 2.5
    assert result.logbook[-1]["best"] > result.logbook[0]["best"]  # evolution improved on generation 0
