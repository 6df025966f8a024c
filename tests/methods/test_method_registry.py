"""A fifth method is one module and one registration: a toy method run end to end through the session."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store

from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import ConfigError, config_from_dict
from evoprune_tf.app.run import resume, run
from evoprune_tf.methods import Method, available_methods, get_method, register, unregister
from evoprune_tf.search import algorithms
from evoprune_tf.search.callbacks import Callback


@dataclasses.dataclass
class ToyConfig:
    """The toy method's own section ``[toy]``."""

    quantile: float = 0.5  # keep the features whose train variance is above this quantile


class ToyVariance(Method):
    """Keeps the highest-variance features; evaluated once, with every session service."""

    name = "toy_variance"
    summary = "toy: the features of highest train variance"
    section = "toy"
    section_type = ToyConfig
    reads = ("head", "train", "objectives", "encoding.name", "operators", "report.seeds")
    writes_report_files = True  # the session checks report.dir before slow work

    def validate(self, config):
        q = config.toy.quantile
        return [] if 0.0 <= q < 1.0 else [f"toy.quantile={q}; expected a quantile in [0, 1)"]

    def run(self, session):
        from evoprune_tf.methods.head.build import make_evaluator, make_toolbox

        config, features = session.config, session.inputs["features"]
        evaluator = make_evaluator(config, features, None)
        toolbox = make_toolbox(config, evaluator)
        state = session.restore(evaluator)
        population = None
        if state is None:
            variance = features.x_train.var(axis=0)
            genome = toolbox.individual()
            genome[:] = (variance > np.quantile(variance, config.toy.quantile)).astype(genome.dtype)
            population = [genome]
        callbacks = session.callbacks(evaluator, dataset=None)
        session.restore_rng()
        halloffame = state.halloffame if state else algorithms.new_halloffame(False)
        with session.guard("Run"):
            population, logbook = algorithms.evaluate_genomes(population, toolbox, halloffame=halloffame,
                                                              callbacks=callbacks, state=state)
        best = np.asarray(halloffame[0])
        report = {"kept": int(best.sum()), "fitness": list(map(float, halloffame[0].fitness.values))}
        with session.report_folder() as folder:
            (folder / "toy.json").write_text(json.dumps(report))
            session.finish(report, metrics={"kept": report["kept"]}, artifacts=[(folder / "toy.json", "report")])
        return {**report, "run_id": session.run_id, "checkpoint": session.checkpoint_file, "folder": folder}


@pytest.fixture
def toy():
    register(ToyVariance)
    yield ToyVariance
    unregister("toy_variance")


def _config(tmp_path, uri=None, **extra):
    raw = {"seed": 3, "progress": False, "algorithm": {"name": "toy_variance"}, "head": {"hidden": [4]},
           "train": {"epochs": 1, "engine": "numpy"}, "toy": {"quantile": 0.75},
           "tracking": {"uri": uri, "experiment": "toy"} if uri else {"enabled": False},
           "checkpoint": {"dir": str(tmp_path / "ckpt")}, "report": {"dir": str(tmp_path / "report")}}
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(raw)


def test_a_registered_method_is_selected_by_name_and_owns_its_section(toy, tmp_path) -> None:
    assert get_method("toy_variance").section == "toy" and "toy_variance" in available_methods()
    config = _config(tmp_path)
    assert config.toy == ToyConfig(quantile=0.75) and config.to_dict()["toy"] == {"quantile": 0.75}
    assert config_from_dict(config.to_dict()) == config  # round-trips (checkpoints store the dict)
    with pytest.raises(ConfigError, match=r"toy.quantile=1.5; expected a quantile in \[0, 1\)"):
        _config(tmp_path, toy={"quantile": 1.5})
    with pytest.raises(ConfigError, match="algorithm.evaluations=6 is not read by method 'toy_variance'"):
        _config(tmp_path, algorithm={"evaluations": 6})
    with pytest.raises(ConfigError, match="toy.quantile=0.75 is not read by method 'steady_state'"):
        _config(tmp_path, algorithm={"name": "steady_state"})


def test_a_toy_method_runs_end_to_end_through_the_session(toy, tmp_path) -> None:
    """Tracking, tags, params, checkpoint, report folder and final status come from the session."""
    from mlflow import MlflowClient

    uri = new_mlflow_store(tmp_path)
    data, _ = make_planted_features(n_features=16, n_train=60, n_val=30, n_test=30)
    result = run(_config(tmp_path, uri), features=data, out=io.StringIO())
    assert result["kept"] == 4  # 16 features above the 0.75 quantile of their variance
    client = MlflowClient(tracking_uri=uri)
    finished = client.get_run(result["run_id"])
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["evoprune.algorithm"] == "toy_variance" and finished.data.params["toy.quantile"] == "0.75"
    assert finished.data.metrics["kept"] == 4.0
    assert {"report.json", "report", "config.json"} <= {a.path for a in client.list_artifacts(result["run_id"])}
    assert json.loads((tmp_path / "report" / "toy.json").read_text())["kept"] == 4
    assert result["checkpoint"].is_file()


def test_a_failing_method_leaves_its_run_failed_and_resumes_in_it(toy, tmp_path) -> None:
    from mlflow import MlflowClient

    class Broken(Callback):
        def on_generation(self, state):
            raise RuntimeError("broken")

    uri = new_mlflow_store(tmp_path)
    data, _ = make_planted_features(n_features=16, n_train=60, n_val=30, n_test=30)
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="broken"):
        run(_config(tmp_path, uri), features=data, out=out, callbacks=[Broken()])
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "Run stopped (RuntimeError). Resume with: evoprune resume" in out.getvalue()
    checkpoint = out.getvalue().rsplit("evoprune resume ", 1)[1].strip()
    resumed = resume(checkpoint, features=data, out=io.StringIO())  # the session resumes any method
    assert resumed["kept"] == 4 and resumed["run_id"] == runs[0].info.run_id
    assert client.get_run(resumed["run_id"]).info.status == "FINISHED"


def test_evoprune_methods_lists_every_method_with_its_section(toy, capsys) -> None:
    assert cli_main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in ("steady_state", "nsga2", "random_mask", "deep_pruning_es", "tascnet", "toy_variance"):
        assert f"\n{name}: " in f"\n{text}"
    assert "[tascnet] (own)" in text and "[toy] (own)" in text


def test_a_key_the_method_does_not_read_is_refused_in_one_line(capsys) -> None:
    assert cli_main(["run", "--algorithm", "tascnet", "--evaluations", "6", "--no-tracking", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "algorithm.evaluations=6 is not read by method 'tascnet'" in err
    assert cli_main(["run", "--algorithm", "tascnet", "--epochs", "5", "--no-tracking", "--dry-run"]) == 2
    assert "train.epochs=5 is not read by method 'tascnet'" in capsys.readouterr().err


def test_the_registry_and_the_session_are_public() -> None:
    import evoprune_tf as ep
    from evoprune_tf.session import RunSession

    assert ep.register_method is register and ep.get_method is get_method and ep.Method is Method
    assert ep.RunSession is RunSession and "tascnet" in ep.available_methods()


def test_a_method_needs_a_name_and_a_dataclass_for_its_section() -> None:
    class Nameless(Method):
        pass

    class NoSection(Method):
        name = "no_section_type"
        section = "nothing"

    with pytest.raises(ValueError, match="expected an identifier"):
        register(Nameless)
    with pytest.raises(ValueError, match=r"owns section \[nothing\] but has no section_type"):
        register(NoSection)
    with pytest.raises(ValueError, match="unknown algorithm 'nope'; expected one of"):
        get_method("nope")
