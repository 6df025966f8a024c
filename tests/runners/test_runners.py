"""Runner factory, the serial runner and the runner config checks (no Ray cluster needed)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from conftest import make_planted_features
from evoprune_tf.app.config import ConfigError, config_from_dict
from evoprune_tf.encodings import FeatureSelection, HeadSpec
from evoprune_tf.evaluation import PopulationEvaluator
from evoprune_tf.runners import RUNNERS, SerialMap, make_runner, resolve_runner_name
from evoprune_tf.runners import ray_runner
from evoprune_tf.runners.ray_runner import check_cluster_resources, check_ray_address
from evoprune_tf.train import TrainConfig


def _evaluator(engine: str = "keras") -> PopulationEvaluator:
    features, _ = make_planted_features()
    encoding = FeatureSelection(HeadSpec(features.n_features, features.n_classes, (8,)))
    return PopulationEvaluator(encoding, features, TrainConfig(epochs=2, engine=engine), seed=0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: nothing listens there


def test_auto_means_processes_only_with_several_workers() -> None:
    assert RUNNERS == ("auto", "serial", "processes", "ray")
    assert resolve_runner_name("auto", 0) == "serial"
    assert resolve_runner_name("auto", 1) == "serial"
    assert resolve_runner_name("auto", 2) == "processes"
    assert resolve_runner_name("ray", 0) == "ray"
    with pytest.raises(ValueError, match="unknown runner 'dask'; expected one of auto, serial"):
        resolve_runner_name("dask")


def test_serial_runner_equals_the_evaluator_and_batches_the_population() -> None:
    rng = np.random.default_rng(1)
    genomes = [rng.integers(0, 2, 64) for _ in range(6)]
    reference = _evaluator().evaluate_population(genomes)
    evaluator = _evaluator()
    with make_runner("serial", evaluator) as runner:
        assert isinstance(runner, SerialMap)
        assert runner.map(evaluator.evaluate, genomes + genomes[:2]) == reference + reference[:2]
        assert runner.map(len, [[1, 2], [3]]) == [2, 1]  # other functions map plainly
        assert runner.stats() == {"runner": "serial", "workers": 1}
    assert evaluator.n_trained == 6 and evaluator.n_cache_hits == 2


def test_unknown_runner_and_negative_gpus_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown runner 'dask'") as info:
        config_from_dict({"runner": "dask"})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"num_gpus=-1(\.0)?; expected 0 or a positive"):
        config_from_dict({"num_gpus": -1.0})
    config = config_from_dict({"runner": "processes", "workers": 2, "num_gpus": 0.5})
    assert (config.runner, config.workers, config.num_gpus, config.ray_address) == ("processes", 2, 0.5, "")


def test_ray_without_ray_installed_names_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(ray_runner, "ray_available", lambda: False)
    with pytest.raises(ConfigError, match=r"runner 'ray' needs Ray.*pip install \"evoprune-tf\[ray\]\""):
        config_from_dict({"runner": "ray"})


def test_unreachable_or_malformed_ray_addresses_fail_in_one_line(monkeypatch) -> None:
    port = _closed_port()
    monkeypatch.setattr(ray_runner, "ray_available", lambda: True)  # the address check needs no Ray
    with pytest.raises(ConfigError, match=rf"ray_address='127.0.0.1:{port}' is unreachable \(ConnectionRefusedError\)"):
        config_from_dict({"runner": "ray", "ray_address": f"127.0.0.1:{port}"})
    with pytest.raises(ValueError, match="ray_address='no-port' is malformed; expected 'auto', 'host:port'"):
        check_ray_address("no-port")
    with pytest.raises(ValueError, match=rf"ray://127.0.0.1:{port}' is unreachable"):
        check_ray_address(f"ray://127.0.0.1:{port}")
    check_ray_address(None)  # a local cluster: nothing to reach
    check_ray_address("local")


def test_auto_address_without_a_cluster_says_how_to_start_one(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_runner.os.path, "exists", lambda path: False)
    with pytest.raises(ValueError, match=r"ray_address='auto' but no Ray cluster runs on this machine; expected `ray start --head`"):
        check_ray_address("auto")


def test_more_gpus_or_cpus_than_the_cluster_has_are_refused() -> None:
    with pytest.raises(ValueError, match=r"num_gpus=1 per worker but the Ray cluster has 0 GPU\(s\); expected at most 0"):
        check_cluster_resources(1, 1.0, 1.0, 2.0, 0.0)
    with pytest.raises(ValueError, match=r"workers=3 x num_gpus=0.5 = 1.5 GPUs but the Ray cluster has 1"):
        check_cluster_resources(3, 1.0, 0.5, 8.0, 1.0)
    with pytest.raises(ValueError, match=r"workers=4 x num_cpus=1 needs 4 CPUs but the Ray cluster has 2; expected at most 2"):
        check_cluster_resources(4, 1.0, 0.0, 2.0, 0.0)
    check_cluster_resources(2, 1.0, 0.5, 2.0, 1.0)  # two actors share one GPU


def test_cli_takes_runner_options_as_overrides() -> None:
    from evoprune_tf.app.cli import build_parser, overrides_from_args

    args = build_parser().parse_args(["run", "--runner", "ray", "--workers", "3", "--ray-address", "auto",
                                      "--num-gpus", "0.25"])
    assert overrides_from_args(args) == {"runner": "ray", "workers": 3, "ray_address": "auto", "num_gpus": 0.25}


@pytest.mark.slow
def test_processes_runner_from_the_factory_equals_serial() -> None:
    rng = np.random.default_rng(2)
    genomes = [rng.integers(0, 2, 64) for _ in range(4)]
    # The NumPy engine keeps TensorFlow out of the spawned workers (start-up: seconds, not tens).
    reference = _evaluator("numpy").evaluate_population(genomes)
    evaluator = _evaluator("numpy")
    with make_runner("processes", evaluator, workers=2) as runner:
        assert runner.map(evaluator.evaluate, genomes) == reference
        assert runner.stats()["runner"] == "processes"
    assert evaluator.n_trained == 4
