"""A config read back from a store imports a module only when the user allows it (issue 25, item 2).

`evoprune explain` reads a run's ``config.json`` from MLflow, `evoprune resume` a
checkpoint's config; validating either imports the modules it names. Each test plants a
module that creates a marker file when imported, names it in a stored config, and
checks that the marker appears only with ``--plugin NAME`` or ``--trust-plugins``.
"""

from __future__ import annotations

import json
import sys
import types
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

import evoprune_tf.experiment.run as run_module
import evoprune_tf.search.checkpoint as checkpoint_module
from conftest import new_mlflow_store
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.experiment.config import load_config
from evoprune_tf.experiment.trust import check_stored_modules, stored_config_modules


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """A fresh importable module that writes ``marker`` when imported; returns (name, marker path)."""
    name = f"evoprune_marker_{uuid.uuid4().hex[:10]}"
    marker = tmp_path / "imported.marker"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "def build(spec):\n    raise RuntimeError('never built')\n"
        "def swap(ind1, ind2):\n    return ind1, ind2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield name, marker
    sys.modules.pop(name, None)


def _stored(name: str, where: str) -> dict:
    """A config naming ``name`` in ``plugins``, an operator import path or ``train.head``."""
    return {
        "plugins": {"plugins": [name]},
        "operator": {"operators": {"mate": {"name": f"{name}:swap"}}},
        "head": {"train": {"head": f"{name}:build"}},
    }[where]


def _store_run(tmp_path, raw: dict) -> tuple[str, str]:
    """A finished MLflow run whose config.json artifact is ``raw``; returns (uri, run id)."""
    uri = new_mlflow_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("stored"))
    client.log_text(run.info.run_id, json.dumps(raw), "config.json")
    client.set_terminated(run.info.run_id)
    return uri, run.info.run_id


@pytest.mark.parametrize("where", ["plugins", "operator", "head"])
def test_explain_refuses_a_stored_config_that_names_a_module_until_the_user_allows_it(
        tmp_path, monkeypatch, capsys, marker_module, where) -> None:
    name, marker = marker_module
    uri, run_id = _store_run(tmp_path, _stored(name, where))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()

    assert cli_main(["explain", run_id]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after MLflow's artifact download bar)
    assert err.startswith("error: the config.json of run")
    assert f"config.json of run {run_id} wants to import module(s) '{name}'" in err
    assert f"pass --plugin {name} if you trust it, or --trust-plugins" in err
    assert not marker.exists() and name not in sys.modules

    assert cli_main(["explain", run_id, "--plugin", "some_other_module"]) == 2  # another name allows nothing
    assert not marker.exists()

    # Allowed: the config is validated (importing the module), and explain goes on to the
    # next step, which fails here because this run logged no genomes.
    assert cli_main(["explain", run_id, "--plugin", name]) == 2
    assert "genome" in capsys.readouterr().err
    if where != "head":  # a head builder is imported when heads are built, after the genomes
        assert marker.read_text() == "ran"


def test_trust_plugins_allows_every_module_and_the_api_asks_the_same(tmp_path, monkeypatch, capsys,
                                                                      marker_module) -> None:
    name, marker = marker_module
    uri, run_id = _store_run(tmp_path, _stored(name, "plugins"))
    from evoprune_tf.app.explain import run_config

    with pytest.raises(ValueError, match=f"wants to import module\\(s\\) '{name}' \\(plugins\\)"):
        run_config(run_id, uri)
    assert not marker.exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli_main(["explain", run_id, "--trust-plugins"]) == 2  # no genomes logged
    assert marker.read_text() == "ran"


def test_resume_checks_the_checkpoints_config_before_validating_it(tmp_path, monkeypatch, capsys,
                                                                   marker_module) -> None:
    name, marker = marker_module
    raw = {**_stored(name, "plugins"), **_stored(name, "operator"), "tracking": {"enabled": False}}
    path = tmp_path / "checkpoint.pkl"
    path.write_bytes(b"not read: load_checkpoint is replaced below")
    stored = types.SimpleNamespace(config=raw, tracking_uri=None)
    monkeypatch.setattr(checkpoint_module, "load_checkpoint", lambda p, **kw: stored)
    resumed: list = []
    monkeypatch.setattr(run_module, "resume", lambda p, config, **kw: resumed.append(config))

    assert cli_main(["resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"config of checkpoint {path} wants to import module(s) '{name}' (plugins)" in err
    assert not marker.exists() and not resumed

    assert cli_main(["resume", str(path), "--plugin", name]) == 0
    assert marker.read_text() == "ran" and resumed[0].plugins == [name]


def test_a_config_the_user_writes_imports_as_before(tmp_path, marker_module) -> None:
    name, marker = marker_module
    path = tmp_path / "mine.toml"
    path.write_text(f'plugins = ["{name}"]\n[tracking]\nenabled = false\n')
    assert load_config(path).plugins == [name]
    assert marker.read_text() == "ran"


def test_every_import_path_of_a_config_is_found() -> None:
    raw = {"plugins": ["a.b"], "operators": {"select": "c:pick", "mate": {"name": "d.e:mate", "indpb": 0.5},
                                             "mutate": "flip_bit"},
           "train": {"head": "f:build"}}
    assert stored_config_modules(raw) == {"a.b": "plugins", "c": "operators.select", "d.e": "operators.mate",
                                          "f": "train.head"}
    check_stored_modules(raw, "x", allowed=["a.b", "c", "d.e", "f"])
    check_stored_modules(raw, "x", trust=True)
    with pytest.raises(ValueError, match=r"'f' \(train.head\), and importing a module runs its code; "
                                         r"expected your permission: pass --plugin f "):
        check_stored_modules(raw, "x", allowed=["a.b", "c", "d.e"])
    assert stored_config_modules({"operators": {"mate": "uniform"}}) == {}
