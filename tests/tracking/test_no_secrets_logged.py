"""No credential is printed or logged (issue 25, item 3).

A real `evoprune run` (planted features, tracking on) with a planted secret: a
``${MY_API_TOKEN}`` expanded into the run's name, dataset name and MLflow run name, and
(with a tracking server) the password of ``MLFLOW_TRACKING_URI``. Then the run's
params, tags, run name, every artifact, the checkpoint and the captured output are
searched for the secret.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

import evoprune_tf.app.run as run_module
from conftest import make_planted_features, new_mlflow_store
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import config_from_dict, flatten
from evoprune_tf.app.server import MLflowServer, free_port
from evoprune_tf.search.checkpoint import load_checkpoint
from evoprune_tf.tracking.redact import is_secret_name, redact_text, redact_uri, usable_uri
from helpers_runs import run_toml


@pytest.fixture
def planted_cli(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """`evoprune run` on planted features (no images, no backbone), from ``tmp_path``."""
    data, _ = make_planted_features(seed=4)
    monkeypatch.setattr(run_module, "prepare_features", lambda config: (data, None, None))
    monkeypatch.setattr(run_module, "_check_inputs", lambda config: None)
    monkeypatch.chdir(tmp_path)
    return data


def _config_file(tmp_path: Path, tracking: str) -> str:
    text = ('name = "leak-${MY_API_TOKEN}"\n'
            + run_toml(checkpoint_dir=tmp_path / "ckpt", evaluations=16, tracking=tracking)
            + '[data]\nname = "${MY_API_TOKEN}"\n')
    path = tmp_path / "run.toml"
    path.write_text(text)
    return str(path)


def _everything_logged(uri: str, run_id: str, tmp_path: Path) -> str:
    """The run's params, tags, name and the bytes of every artifact, as one text."""
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    parts = [run.info.run_name, *run.data.params.values(), *run.data.params, *run.data.tags.values()]
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=uri,
                                                     dst_path=str(tmp_path / "downloaded")))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert any(p.name == "config.json" for p in files)
    parts += [p.read_bytes().decode("utf-8", errors="replace") for p in files]
    return "\n".join(parts)


def _checkpoint_text(tmp_path: Path) -> str:
    path = next((tmp_path / "ckpt").glob("*/checkpoint*"))
    checkpoint = load_checkpoint(path)
    return "\n".join([path.read_bytes().decode("latin-1"), repr(checkpoint.config),
                      str(getattr(checkpoint, "tracking_uri", ""))])


def test_a_secret_expanded_into_the_config_is_logged_as_its_template(tmp_path, monkeypatch, capsys,
                                                                     planted_cli) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("MY_API_TOKEN", secret)
    uri = new_mlflow_store(tmp_path)
    config = _config_file(tmp_path, f'uri = "{uri}"\nexperiment = "leaks"\nrun_name = "r-${{MY_API_TOKEN}}"')
    assert cli_main(["run", config]) == 0
    captured = capsys.readouterr()
    run = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("leaks").experiment_id])[0]
    logged = _everything_logged(uri, run.info.run_id, tmp_path)
    assert secret not in logged
    assert secret not in captured.out + captured.err
    assert secret not in _checkpoint_text(tmp_path)
    # What was logged is the template, expanded again when the run is read back.
    assert run.data.params["name"] == "leak-${MY_API_TOKEN}" and run.info.run_name == "r-${MY_API_TOKEN}"
    assert run.data.tags["evoprune.dataset"] == "${MY_API_TOKEN}"
    from evoprune_tf.app.explain import run_config

    assert run_config(run.info.run_id, uri).data.name == secret


@pytest.mark.slow  # a real tracking server with basic auth: ~10 s to start on a quiet machine, 30 s on a busy one
def test_the_password_of_mlflow_tracking_uri_is_nowhere(tmp_path, monkeypatch, capsys, planted_cli) -> None:
    password = f"pw-{uuid.uuid4().hex[:16]}"
    secret = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("MY_API_TOKEN", secret)
    monkeypatch.setenv("EVOPRUNE_ADMIN_PASSWORD", password)
    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH", raising=False)
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")  # the tracker turns it on: undone after
    (tmp_path / "store").mkdir()
    server = MLflowServer(backend_store_uri=new_mlflow_store(tmp_path / "store"), port=free_port(), auth=True,
                          log_file=tmp_path / "server.log")
    with server:
        uri = server.url.replace("http://", f"http://admin:{password}@")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        config = _config_file(tmp_path, 'experiment = "leaks"')
        assert cli_main(["run", config]) == 0
        captured = capsys.readouterr()
        assert f"in {redact_uri(uri)}" in captured.out  # the "MLflow run ... in ..." line, without the password
        client = MlflowClient(tracking_uri=uri)
        run = client.search_runs([client.get_experiment_by_name("leaks").experiment_id])[0]
        logged = _everything_logged(uri, run.info.run_id, tmp_path)
    for text in (logged, captured.out + captured.err, _checkpoint_text(tmp_path)):
        assert password not in text and secret not in text


def test_redaction_rules() -> None:
    assert redact_uri("postgresql://alice:pw@db:5432/mlflow") == "postgresql://alice:***@db:5432/mlflow"
    assert redact_uri("http://host:5000/?token=abc&x=1") == "http://host:5000/?token=***&x=1"
    assert redact_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redact_text("error: store http://bob:pw@h:5000/x cannot be used") == \
        "error: store http://bob:***@h:5000/x cannot be used"
    assert all(is_secret_name(n) for n in ("MY_API_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "api_key"))
    assert not any(is_secret_name(n) for n in ("EVOPRUNE_ASSETS", "HOME", "KERAS_BACKEND"))


def test_a_redacted_uri_takes_its_password_from_the_environment(monkeypatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    stored = "http://alice:***@host:5000"
    with pytest.raises(ValueError, match=r"tracking URI http://alice:\*\*\*@host:5000 was stored without its password"):
        usable_uri(stored)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:pw@host:5000")
    assert usable_uri(stored) == "http://alice:pw@host:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert usable_uri(stored) == "http://host:5000"
    assert usable_uri("sqlite:////x/mlflow.db") == "sqlite:////x/mlflow.db"


def test_a_literal_password_in_tracking_uri_is_redacted_in_params_and_dicts(monkeypatch) -> None:
    monkeypatch.setenv("DB_TOKEN", "tok-123456")
    config = config_from_dict({"tracking": {"uri": "http://alice:secretpw@host:5000", "run_name": "x${DB_TOKEN}"},
                               "data": {"source": "builtin:synthetic"}})
    assert config.tracking.uri == "http://alice:secretpw@host:5000" and config.tracking.run_name == "xtok-123456"
    params = flatten(config)
    assert params["tracking.uri"] == "http://alice:***@host:5000" and params["tracking.run_name"] == "x${DB_TOKEN}"
    assert "secretpw" not in repr(config.to_dict()) and "tok-123456" not in repr(config.to_dict())
    # A password from a secret-named variable is logged as its template, expanded again when read back.
    monkeypatch.setenv("DB_PASSWORD", "pw-from-env")
    config = config_from_dict({"tracking": {"uri": "http://alice:${DB_PASSWORD}@host:5000"}})
    assert config.tracking.uri == "http://alice:pw-from-env@host:5000"
    assert config.to_dict()["tracking"]["uri"] == "http://alice:${DB_PASSWORD}@host:5000"
    assert config_from_dict(config.to_dict()).tracking.uri == "http://alice:pw-from-env@host:5000"


def test_resume_takes_the_redacted_stores_password_from_the_environment(tmp_path, monkeypatch, capsys) -> None:
    """A checkpoint records its store without the password; `evoprune resume` asks the environment for it."""
    import types

    import evoprune_tf.search.checkpoint as checkpoint_module

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "checkpoint.pkl"
    path.write_bytes(b"not read: load_checkpoint is replaced below")
    stored = types.SimpleNamespace(config={"progress": False}, tracking_uri="http://alice:***@head:5000")
    monkeypatch.setattr(checkpoint_module, "load_checkpoint", lambda p, **kw: stored)
    resumed: list = []
    monkeypatch.setattr(run_module, "resume", lambda p, config, **kw: resumed.append(config))
    assert cli_main(["resume", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the run's tracking store http://alice:***@head:5000 was stored without its password; expected "
        "MLFLOW_TRACKING_URI set to it with the password, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert cli_main(["resume", str(path)]) == 0
    assert resumed[0].tracking.uri == "http://head:5000"
