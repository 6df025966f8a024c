"""`evoprune_tf.app.scripts`: the experiment scripts build their config like `evoprune run`."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from evoprune_tf.app.config import merge
from evoprune_tf.app.scripts import TASCNET_IMAGE_RECIPE, Dataset, TascnetImageSet, experiment_main

ROOT = pathlib.Path(__file__).resolve().parents[2]

CONFIG = """\
[operators]
mate = { name = "uniform", indpb = 0.3 }
[algorithm]
population = 7
"""


def _dry_run(args: list[str], cwd: pathlib.Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "EVOPRUNE_ASSETS"}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "rps.py"), "--dry-run", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_rps_script_replaces_the_files_operator_spec_like_evoprune_run(tmp_path) -> None:
    (tmp_path / "F.toml").write_text(CONFIG)
    (tmp_path / "images").mkdir()
    config = _dry_run(["--config", "F.toml", "--mate", "two_point:", "--data", "images"], tmp_path)
    # Replaced, as --help says: a nested merge would keep the file's indpb=0.3 next to the new name.
    assert config["operators"]["mate"] == {"name": "two_point"}
    assert config["algorithm"]["population"] == 7  # the file's other values stay
    assert config["data"]["source"] == "images" and config["data"]["name"] == "rps"  # the script's defaults too


def test_the_files_values_win_over_the_scripts_defaults_and_the_command_line_over_both(tmp_path, capsys,
                                                                                     monkeypatch) -> None:
    monkeypatch.delenv("EVOPRUNE_ASSETS", raising=False)
    data = tmp_path / "from-file"
    data.mkdir()
    (tmp_path / "F.toml").write_text(CONFIG + f'[data]\nsource = "{data}"\nimage_size = 64\n')
    dataset = Dataset(name="toy", description="Toy.", download="Get it.", default_source="tfds:toy",
                      overrides={"data": {"image_size": 32}, "head": {"hidden": [4]}})
    assert experiment_main(dataset, ["--dry-run", "--config", str(tmp_path / "F.toml"), "--mate",
                                     "uniform:indpb=0.6", "--image-size", "48"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["data"]["source"] == str(data)  # the file's source, not the script's default
    assert config["data"]["image_size"] == 48 and config["head"]["hidden"] == [4]
    assert config["operators"]["mate"] == {"name": "uniform", "indpb": 0.6}
    assert experiment_main(dataset, ["--dry-run", "--data", str(tmp_path / "missing")]) == 2
    assert "missing does not exist. Get it." in capsys.readouterr().err


def test_a_tascnet_image_set_is_the_papers_recipe_on_its_data() -> None:
    image_set = TascnetImageSet(name="toy", description="Toy set.", source="tfds:toy", data_help="Get toy.",
                                head_download="Get it.")
    assert image_set.defaults == merge(TASCNET_IMAGE_RECIPE, {"data": {"source": "tfds:toy"},
                                                              "tracking": {"experiment": "tascnet-toy"}})
    assert image_set.download.startswith("Get toy. ImageNet weights: put vgg16_")
    assert image_set.dataset.default_source == "tfds:toy" and image_set.dataset.download == "Get it."
    assert "source" not in TASCNET_IMAGE_RECIPE["data"]  # the shared recipe is not written into
    with pytest.raises(SystemExit) as done:
        image_set.main(["--help"])
    assert done.value.code == 0
