"""Seeded search: ``operators.seed_baselines`` puts baselines' genomes into generation 0.

A hybrid that the density sweep asks for: the GA starts from the ranking's answer and
can only move from it if validation says so. Bad input is one line; a seeded run
evaluates the baseline's exact genome first and can never end below it on validation.
"""

from __future__ import annotations

import io

import pytest
from conftest import make_planted_features

from evoprune_tf.app.config import ConfigError, config_from_dict, load_config
from evoprune_tf.app.run import run
from evoprune_tf.encodings import genome_key


def _raw(**sections) -> dict:
    raw = {"seed": 3, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 5, "engine": "numpy"},
           "algorithm": {"population": 8, "evaluations": 24}, "encoding": {"active": 5},
           "tracking": {"enabled": False}, "checkpoint": {"enabled": False},
           "report": {"seeds": 1, "export_model": False, "chance": False}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


@pytest.mark.parametrize("overrides, pattern", [
    ({"operators": {"seed_baselines": ["l2_selection"]}},
     r"operators.seed_baselines=\['l2_selection'\]; expected a list of head baselines from "
     r"\['random_mask', 'magnitude', 'l1_selection'\]"),
    ({"operators": {"seed_baselines": ["unpruned"]}}, r"\(the unpruned genome: operators.seed_unpruned\)"),
    ({"operators": {"seed_baselines": ["l1_selection"]}, "algorithm": {"name": "random_search"}},
     r"operators.seed_baselines with algorithm 'random_search'; expected an evolutionary head search"),
    ({"operators": {"seed_baselines": ["magnitude"]}, "encoding": {"active": 0}},
     r"operators.seed_baselines=\['magnitude'\] without a size; expected encoding.active"),
    ({"operators": {"seed_baselines": ["magnitude", "random_mask"]}, "algorithm": {"population": 1},
      "encoding": {"active": 5}},
     r"holds more genomes than algorithm.population=1"),
    ({"operators": {"seed_baselines": ["l1_selection"]}, "encoding": {"name": "neuron_pruning"}},
     r"'l1_selection' and encoding 'neuron_pruning'; l1_selection selects features"),
])
def test_bad_seed_baselines_are_one_line_config_errors(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as error:
        load_config(overrides=overrides)
    assert "\n" not in str(error.value)


def test_a_seeded_ga_evaluates_the_baselines_genome_first_and_never_ends_below_it():
    data, _ = make_planted_features(n_features=60, n_informative=5, seed=4)
    l1 = run(config_from_dict(_raw(algorithm={"name": "l1_selection"})), features=data, out=io.StringIO())
    l1_key = genome_key(l1.best)
    l1_fitness = l1.evaluator.cache[l1_key].accuracy

    plain = run(config_from_dict(_raw()), features=data, out=io.StringIO())
    seeded = run(config_from_dict(_raw(operators={"seed_baselines": ["l1_selection"]})), features=data,
                 out=io.StringIO())
    assert l1_key not in plain.evaluator.cache  # 1 in C(60, 5) = 5.5 million by chance
    assert l1_key in seeded.evaluator.cache
    assert seeded.evaluator.cache[l1_key].accuracy == l1_fitness  # the same genome, the same training
    assert seeded.logbook[0]["best"] >= l1_fitness  # generation 0 already holds it
    assert seeded.halloffame[0].fitness.values[0] >= l1_fitness
    assert int(seeded.best.sum()) == 5


def test_seed_baselines_follow_the_unpruned_genome_and_take_algorithm_density_without_a_budget():
    data, _ = make_planted_features(n_features=40, n_informative=4, seed=5)
    size = {"encoding": {"active": 0}, "algorithm": {"density": 0.25, "evaluations": 8}}

    def best_key(name: str) -> bytes:
        baseline = run(config_from_dict(_raw(**{**size, "algorithm": {**size["algorithm"], "name": name}})),
                       features=data, out=io.StringIO())
        assert int(baseline.best.sum()) == 10  # 25% of 40
        return genome_key(baseline.best)

    raw = _raw(**size, operators={"seed_unpruned": True, "seed_baselines": ["magnitude", "random_mask"]})
    seeded = run(config_from_dict(raw), features=data, out=io.StringIO()).evaluator.cache
    assert {genome_key([1] * 40), best_key("magnitude"), best_key("random_mask")} <= set(seeded)
