"""Issue 25 item 5: bad values hidden by an override, the banner before an error, and small CLI failures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import make_planted_features

import evoprune_tf.app.run as run_module
from evoprune_tf.app.cli import build_parser
from evoprune_tf.app.cli import main as cli_main


@pytest.fixture
def no_long_work(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Planted features instead of images; a run that gets past validation is cheap."""
    data, _ = make_planted_features(n_features=16, n_train=60, n_val=30, n_test=30, seed=1)
    monkeypatch.setattr(run_module, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(run_module, "_check_inputs", lambda config: None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _one_error_line(capsys) -> tuple[str, str]:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return captured.out, err


@pytest.mark.parametrize("text, args, named", [
    ('[train]\nepochs = "five"\n', ["--epochs", "5"], "train.epochs='five'"),
    ("[train]\nepochs = -3\n", ["--epochs", "5"], "train.epochs=-3"),
    ('seed = "x"\n', ["--seed", "3"], "seed='x'"),
    ('[algorithm]\npopulation = 2.5\n', ["--population", "4"], "algorithm.population=2.5"),
])
def test_a_bad_file_value_is_reported_even_when_the_command_line_overrides_it(text, args, named, tmp_path, capsys,
                                                                               no_long_work):
    path = tmp_path / "bad.toml"
    path.write_text(text + "[tracking]\nenabled = false\n")
    assert cli_main(["run", str(path), *args]) == 2
    out, err = _one_error_line(capsys)
    assert named in err and str(path) in err, err
    assert "Keras backend" not in out


def test_good_file_values_under_overrides_still_run(tmp_path, capsys, no_long_work):
    path = tmp_path / "good.toml"
    path.write_text('seed = 1\nprogress = false\n[head]\nhidden = [8]\n[train]\nepochs = 4\nengine = "numpy"\n'
                    '[algorithm]\npopulation = 4\nevaluations = 8\n[report]\nseeds = 1\nexport_model = false\n'
                    f'[tracking]\nenabled = false\n[checkpoint]\ndir = "{tmp_path / "ckpt"}"\n')
    assert cli_main(["run", str(path), "--epochs", "2", "--seed", "2"]) == 0
    assert "Final report" in capsys.readouterr().out


def test_check_shadowed_values_only_checks_overridden_keys():
    from evoprune_tf.app.config import ConfigError, check_shadowed_values

    check_shadowed_values({"train": {"epochs": 3, "batch_size": 8}}, {"train": {"epochs": 5}})
    check_shadowed_values({"train": {"epochs": "five"}}, {"algorithm": {"population": 4}})  # validated later
    with pytest.raises(ConfigError, match="train.batch_size='x'"):
        check_shadowed_values({"train": {"batch_size": "x"}}, {"train": {"batch_size": 16}}, "f.toml")


def test_a_bad_input_found_by_run_is_one_line_without_the_backend_banner(tmp_path, capsys, no_long_work,
                                                                         monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/no/such/folder/mlflow.db")
    path = tmp_path / "run.toml"
    path.write_text('progress = false\n[head]\nhidden = [8]\n[train]\nepochs = 2\n[algorithm]\npopulation = 4\n'
                    'evaluations = 8\n')
    assert cli_main(["run", str(path)]) == 2
    out, err = _one_error_line(capsys)
    assert "does not exist" in err and out == "", (out, err)


def test_an_unknown_encoding_lists_filters_too(capsys, no_long_work):
    assert cli_main(["run", "--encoding", "nosuch"]) == 2
    _, err = _one_error_line(capsys)
    assert "unknown encoding 'nosuch'" in err and "'filters'" in err and "feature_selection" in err, err


def test_resume_of_a_missing_checkpoint_leaves_no_store_behind(tmp_path, capsys, no_long_work):
    assert cli_main(["resume", "/nonexistent"]) == 2
    _, err = _one_error_line(capsys)
    assert "/nonexistent" in err
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_ui_takes_a_log_file_and_its_failed_start_names_options_it_has(tmp_path, capsys, no_long_work):
    from evoprune_tf.app.server import MLflowServer

    assert build_parser().parse_args(["ui", "--log-file", "x.log"]).log_file == "x.log"
    hint = MLflowServer(port=1)._last_log_line()
    assert "--log-file" in hint and "pass log_file" not in hint
    with socket.socket() as taken:  # the port is in use: the server exits before it is ready
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "ui.log"
        assert cli_main(["ui", "--port", str(port), "--log-file", str(log),
                         "--uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
    _, err = _one_error_line(capsys)
    assert "log: " in err and Path(log).is_file(), err
