"""Config loading: the documented defaults file, overrides, env expansion, all problems at once."""

import pathlib

import pytest

from evoprune_tf.app.config import ConfigError, ExperimentConfig, load_config
from evoprune_tf.session import flatten

DEFAULT = pathlib.Path(__file__).parent.parent / "evoprune_tf" / "configs" / "default.toml"


def test_documented_default_file_equals_the_defaults():
    assert load_config(DEFAULT).to_dict() == ExperimentConfig().to_dict()


def test_the_documented_default_file_lists_every_key():
    import tomllib

    written = tomllib.loads(DEFAULT.read_text())
    missing = []

    def walk(defaults: dict, file: dict, prefix: str) -> None:
        for key, value in defaults.items():
            if key not in file:
                missing.append(prefix + key)
            elif isinstance(value, dict) and isinstance(file[key], dict) and prefix != "operators.":
                walk(value, file[key], f"{prefix}{key}.")

    walk(ExperimentConfig().to_dict(), written, "")
    assert missing == [], f"default.toml does not document {missing}"


def test_overrides_and_environment_expansion(monkeypatch, tmp_path):
    monkeypatch.setenv("MY_DATA", "/data/rps")
    path = tmp_path / "c.toml"
    path.write_text('[data]\nsource = "${MY_DATA}/train"\n[algorithm]\nevaluations = 50\n')
    config = load_config(path, {"algorithm": {"population": 10}})
    assert config.data.source == "/data/rps/train"
    assert (config.algorithm.evaluations, config.algorithm.population) == (50, 10)
    assert flatten(config)["algorithm.evaluations"] == "50"


def test_every_problem_is_listed_on_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[algorithm]\ncxpb = 1.5\npopulaton = 3\n[train]\nepochs = 0\n[data]\nimage_size = "big"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and "4 problem(s)" in message
    for part in ("algorithm.cxpb=1.5", "unknown key algorithm.populaton", "train.epochs=0", "data.image_size='big'"):
        assert part in message


def test_multi_objective_defaults_follow_the_reference():
    config = load_config(overrides={"algorithm": {"name": "nsga2"}, "objectives": {"names": ["accuracy", "active_fraction"]}})
    assert config.operators.select == "random" and config.operators.survive == "nsga2"
    assert config.operators.mutate == {"name": "flip_bit", "indpb": "1/L"}
    with pytest.raises(ConfigError, match="needs at least two objectives"):
        load_config(overrides={"algorithm": {"name": "nsga2"}, "objectives": {"names": ["accuracy"]}})
