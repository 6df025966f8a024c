"""Issue 25 item 5: `evoprune run` with every `[train]` option reaches its report, on the run's engine.

The report used to retrain with the NumPy engine whatever the run used, so any recipe but
plain SGD ran the whole search and then died in the report. Each case goes through the
real entry (`evoprune run FILE`) on planted features (no images, no backbone).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_planted_features, new_mlflow_store

import evoprune_tf.app.run as run_module
import evoprune_tf.methods.head.run as head_run
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.encodings import HeadSpec, make_encoding
from evoprune_tf.report.single import retrain
from evoprune_tf.train import TrainConfig
from evoprune_tf.train.numpy_engine import HeadTrainer
from evoprune_tf.train.config import derive_seed

#: One `[train]` line per option (tests/ is on sys.path: head_builders is importable).
KERAS_OPTIONS = {
    "adam": 'optimizer = "adam"',
    "adam_dict": 'optimizer = {name = "adam", learning_rate = 0.01}',
    "dropout": "dropout = 0.2",
    "l2": "l2 = 0.001",
    "label_smoothing": "label_smoothing = 0.1",
    "class_weight": 'class_weight = "balanced"',
    "user_head": 'head = "head_builders:dropout_head"',
    "user_head_tanh": 'head = "head_builders:tanh_head"',
    "reference_recipe": "",  # with [report] recipe = "reference" below
}


@pytest.fixture
def planted_cli(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """The CLI on small planted features (no images, no backbone), run from ``tmp_path``."""
    data, _ = make_planted_features(n_features=24, n_train=120, n_val=60, n_test=60, seed=4)
    monkeypatch.setattr(head_run, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(head_run, "check_inputs", lambda config: None)
    monkeypatch.chdir(tmp_path)
    return data


def _toml(tmp_path, train: str, *, algorithm: str = "steady_state", report: str = "", tracking: str = "") -> str:
    path = tmp_path / "run.toml"
    path.write_text(
        f'seed = 3\nprogress = false\n[head]\nhidden = [8]\n[train]\nepochs = 2\n{train}\n'
        f'[algorithm]\nname = "{algorithm}"\npopulation = 4\nevaluations = 8\n'
        f'[report]\nseeds = 1\n{report}\n'
        f'[tracking]\n{tracking or "enabled = false"}\n[checkpoint]\ndir = "{tmp_path / "ckpt"}"\n'
    )
    return str(path)


@pytest.mark.parametrize("option", sorted(KERAS_OPTIONS))
def test_every_train_option_reaches_the_report_on_the_keras_engine(option, planted_cli, tmp_path, capsys):
    report = 'recipe = "reference"' if option == "reference_recipe" else ""
    train = KERAS_OPTIONS[option] + ('\nengine = "keras"' if option != "reference_recipe" else "")
    if option == "reference_recipe":  # the reference recipe on the run's engine, with a short budget
        report += "\nexport_model = true"
    code = cli_main(["run", _toml(tmp_path, train, report=report)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Final report" in out.out and "test accuracy" in out.out


def test_adam_nsga2_run_reaches_the_pareto_report_with_tracking(planted_cli, tmp_path, capsys):
    """The multi-objective report (members, ensembles, trade-off exports) retrains with the run's engine too."""
    code = cli_main(["run", _toml(tmp_path, 'optimizer = "adam"\ndropout = 0.1', algorithm="nsga2",
                                  tracking=f'uri = "{new_mlflow_store(tmp_path)}"')])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Final report" in out.out and "MLflow run" in out.out


def test_numpy_engine_run_keeps_its_report(planted_cli, tmp_path, capsys):
    """A plain-SGD run on the NumPy engine reports what the NumPy engine's retrain gives, as before."""
    code = cli_main(["run", _toml(tmp_path, 'engine = "numpy"', report="export_model = false")])
    out = capsys.readouterr()
    assert code == 0, out.err
    line = next(l for l in out.out.splitlines() if "test accuracy" in l)
    encoding = make_encoding("feature_selection", HeadSpec(planted_cli.n_features, planted_cli.n_classes, (8,)))
    ones = np.ones(encoding.genome_length, np.int8)
    config = TrainConfig(epochs=2, engine="numpy")
    head = HeadTrainer(encoding.spec, planted_cli, config, seed=derive_seed(3, "report", 0)).train(
        [encoding.decode(ones)])[0]
    accuracy = float(np.mean(head.logits(planted_cli.x_test).argmax(1) == planted_cli.y_test))
    assert f"unpruned {accuracy:.4f}" in line, (line, accuracy)


def test_numpy_engine_rejects_a_recipe_it_cannot_train_before_the_search(planted_cli, tmp_path, capsys):
    code = cli_main(["run", _toml(tmp_path, 'engine = "numpy"\noptimizer = "adam"')])
    err = capsys.readouterr().err
    assert code == 2 and "engine='numpy'" in err


def test_report_recipe_keeps_the_run_engine():
    from evoprune_tf.report.single import report_recipe

    assert report_recipe(TrainConfig(engine="numpy"), "reference").engine == "numpy"
    assert report_recipe(TrainConfig(optimizer="adam"), "search").optimizer == "adam"
    reference = report_recipe(TrainConfig(optimizer="adam", engine="keras"), "reference")
    assert reference.optimizer == "sgd" and reference.epochs == 600 and reference.engine == "keras"


def test_retrain_uses_the_keras_engine_for_a_keras_recipe(planted):
    data, _ = planted
    encoding = make_encoding("feature_selection", HeadSpec(data.n_features, data.n_classes, (8,)))
    heads = retrain(encoding, data, [np.ones(encoding.genome_length, np.int8)],
                    TrainConfig(epochs=2, optimizer="adam", dropout=0.2), seed=0, seeds=1)
    assert len(heads) == 1 and heads[0][0].epochs_run == 2


@pytest.mark.parametrize("head", ["head_builders:tanh_head", "head_builders:dropout_head"])
def test_a_user_head_is_exported_as_trained(head, tmp_path):
    """The exported model of a user head computes what the reported head computes (tanh: its own layers)."""
    import io

    from evoprune_tf.app.config import config_from_dict

    data, _ = make_planted_features(n_features=24, n_train=120, n_val=60, n_test=60, seed=4)
    raw = {"seed": 3, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 2, "head": head},
           "algorithm": {"population": 4, "evaluations": 8}, "tracking": {"enabled": False},
           "checkpoint": {"enabled": False}, "report": {"seeds": 1, "export_model": True}}
    result = run_module.run(config_from_dict(raw), features=data, out=io.StringIO())
    assert result.report["compact_max_abs_diff"] < 1e-5
    assert result.report["parameters"]["compact_model"] <= result.report["parameters"]["full_model"]
