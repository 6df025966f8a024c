"""Issue 25 item 5: `evoprune run` of TASCNet prints its report and run id with --no-progress.

The run is the smallest the CLI takes: stage 1 alone with one candidate (the report table
and the run id are printed the same for every stage; stages 1 + 2 end to end:
tests/tascnet/test_stage1.py), with Keras' functions run eagerly (tests/helpers_eager.py):
what is printed is the point, not the traced graph.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import new_mlflow_store
from helpers_eager import EAGER_DATA_WARNING, eager_functions

from evoprune_tf.app.cli import main as cli_main


@pytest.mark.slow
@pytest.mark.filterwarnings(EAGER_DATA_WARNING)
def test_tascnet_run_prints_its_report_and_run_id_without_progress(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(48, 32, 32, 3), dtype=np.uint8)
    y = np.arange(48) % 2
    x[y == 1, :, :, 0] = 255
    np.savez(tmp_path / "tiny.npz", x_train=x[:36], y_train=y[:36], x_test=x[36:], y_test=y[36:])
    (tmp_path / "tascnet.toml").write_text(
        f'seed = 1\n[algorithm]\nname = "tascnet"\n'
        f'[data]\nsource = "{tmp_path / "tiny.npz"}"\nimage_size = 32\nval_fraction = 0.25\n'
        f'[backbone]\nname = "MobileNetV2"\nweights = "none"\n'
        f'[tracking]\nuri = "{new_mlflow_store(tmp_path)}"\nexperiment = "tascnet-cli"\n'
        f'[report]\nexport_model = false\nlitert = false\n'  # LiteRT: tests/tascnet/test_tascnet_latency.py
        f'[tascnet]\nstage = 1\nevaluations = 1\npopulation = 1\nsearch_epochs = 1\nfinal_epochs = 1\n'
        f'levels = 2\nlr = 0.01\n'
        f'configuration = {{replace = 0, unfreeze = 1, dense = [[64, 0.0]]}}\n'
    )
    monkeypatch.chdir(tmp_path)
    with eager_functions():
        assert cli_main(["run", str(tmp_path / "tascnet.toml"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| seed | params unpruned -> pruned" in out and "| 1 |" in out, out
    assert "MLflow run " in out and f"sqlite:///{tmp_path}/mlflow.db" in out, out
