"""`evoprune run` / `evoprune resume`: Ctrl-C, the resume hint, run ids, larger budgets."""

from __future__ import annotations

import io
import shutil

import pytest
from conftest import make_planted_features
from helpers_runs import run_toml

import evoprune_tf.app.run as run_module
import evoprune_tf.methods.head.run as head_run
import evoprune_tf.session.session as session_module
from evoprune_tf.search.callbacks import Callback
from evoprune_tf.search.checkpoint import load_checkpoint
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import config_from_dict

@pytest.fixture
def planted_cli(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """The CLI on planted features (no images, no backbone), run from ``tmp_path``."""
    data, _ = make_planted_features(seed=4)
    monkeypatch.setattr(head_run, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(head_run, "check_inputs", lambda config: None)  # no ImageNet weights needed
    monkeypatch.chdir(tmp_path)
    return data


def _write_config(tmp_path, folder: str = "ckpt") -> str:
    path = tmp_path / "run.toml"
    path.write_text(run_toml(checkpoint_dir=tmp_path / folder, evaluations=48))
    return str(path)


def _reference(tmp_path, data, evaluations: int = 48):
    raw = {"seed": 6, "progress": False, "head": {"hidden": [16]}, "train": {"epochs": 3, "engine": "numpy"},
           "algorithm": {"population": 8, "evaluations": evaluations}, "tracking": {"enabled": False},
           "checkpoint": {"dir": str(tmp_path / "reference")}, "report": {"seeds": 1, "export_model": False}}
    return run_module.run(config_from_dict(raw), features=data, out=io.StringIO())


def _same(state, result) -> None:
    assert [dict(r) for r in state.logbook] == [dict(r) for r in result.logbook]
    assert [p.tolist() for p in state.population] == [p.tolist() for p in result.population]
    assert [p.fitness.values for p in state.population] == [p.fitness.values for p in result.population]


def test_ctrl_c_prints_how_to_resume_and_evoprune_resume_finishes_the_run(tmp_path, capsys, monkeypatch, planted_cli):
    class CtrlC(Callback):
        def __init__(self, **kwargs) -> None:
            pass

        def on_generation(self, state) -> None:
            if state.generation == 2:
                raise KeyboardInterrupt

    config = _write_config(tmp_path)
    monkeypatch.setattr(session_module, "ProgressBar", CtrlC)  # the last built-in callback: Ctrl-C after the checkpoint
    assert cli_main(["run", config]) == 130
    captured = capsys.readouterr()
    path = next((tmp_path / "ckpt").glob("*/checkpoint.npz"))
    assert f"Run stopped (KeyboardInterrupt). Resume with: evoprune resume {path}" in captured.out
    assert captured.err.strip() == "interrupted"
    assert load_checkpoint(path).state.generation == 2

    monkeypatch.undo()
    monkeypatch.setattr(head_run, "prepare_features", lambda config: (planted_cli, None, None))
    monkeypatch.setattr(head_run, "check_inputs", lambda config: None)
    assert cli_main(["resume", str(path), "--no-progress"]) == 0
    assert "Final report" in capsys.readouterr().out
    _same(load_checkpoint(path).state, _reference(tmp_path, planted_cli))


def test_resume_by_folder_or_run_id_and_with_a_larger_budget(tmp_path, capsys, planted_cli) -> None:
    assert cli_main(["run", _write_config(tmp_path)]) == 0
    path = next((tmp_path / "ckpt").glob("*/checkpoint.npz"))
    assert load_checkpoint(path).state.evaluations == 48
    # `evoprune resume RUN_ID` looks in ./mlruns/checkpoints/<RUN_ID>/.
    run_folder = tmp_path / "mlruns" / "checkpoints" / "0123abcd"
    run_folder.parent.mkdir(parents=True)
    shutil.copytree(path.parent, run_folder)
    assert cli_main(["resume", "0123abcd", "--no-progress", "--evaluations", "64"]) == 0
    longer = load_checkpoint(run_folder)
    assert longer.state.evaluations == 64
    # Asking for more budget later ends where asking for it at the start would have.
    _same(longer.state, _reference(tmp_path, planted_cli, evaluations=64))
    # Resuming the finished run as it is changes nothing.
    assert cli_main(["resume", str(path.parent), "--no-progress"]) == 0
    capsys.readouterr()
    _same(load_checkpoint(path).state, _reference(tmp_path, planted_cli))
