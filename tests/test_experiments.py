"""Experiment scripts: every one parses, explains missing data, resolves the shared assets."""

import importlib.util
import json
import pathlib

import pytest

SCRIPTS = sorted((pathlib.Path(__file__).parent.parent / "experiments").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_nine_datasets_have_scripts():
    names = {p.stem for p in SCRIPTS}
    assert {"rps", "hymenoptera", "leaves", "painting", "plants", "cataract", "srsmas", "caltech101",
            "stanford_dogs"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_help_documents_the_overrides(path, capsys):
    from evoprune_tf.app.scripts import experiment_main

    with pytest.raises(SystemExit) as done:
        experiment_main(_load(path).DATASET, ["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--data", "--algorithm", "--objectives", "--encoding", "--mate", "--evaluations"):
        assert option in text


@pytest.mark.parametrize("name", ["painting", "plants", "cataract", "srsmas"])
def test_missing_data_says_what_to_download(name, capsys, monkeypatch):
    from evoprune_tf.app.scripts import experiment_main

    monkeypatch.delenv("EVOPRUNE_ASSETS", raising=False)
    dataset = _load(next(p for p in SCRIPTS if p.stem == name)).DATASET
    assert experiment_main(dataset, []) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no data for") and "--data" in err and "\n" not in err
    assert experiment_main(dataset, ["--data", "/no/such/folder"]) == 2
    assert "/no/such/folder does not exist" in capsys.readouterr().err


def test_rps_defaults_to_the_shared_assets(assets, capsys):
    from evoprune_tf.app.scripts import experiment_main

    dataset = _load(next(p for p in SCRIPTS if p.stem == "rps")).DATASET
    assert experiment_main(dataset, ["--dry-run", "--algorithm", "nsga2", "--objectives",
                                     "accuracy,active_fraction"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["data"]["source"] == str(assets / "datasets" / "rps_28px")
    assert config["backbone"]["weights"].endswith("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    assert config["algorithm"]["name"] == "nsga2"
    assert config["operators"]["survive"] == "nsga2" and config["operators"]["mutate"]["indpb"] == "1/L"
