"""`demo_config()` on a user's machine: the download path when the local stand-in server is up, plain help if not."""

from __future__ import annotations

import http.server
import io
import socket
import threading
import zipfile

import numpy as np
import pytest

import evoprune_tf.app.demo as demo
from evoprune_tf.data.download import CACHE_SUBDIR, DOWNLOAD_BASE_ENV, is_downloaded

CLASSES = ("paper", "rock", "scissors")


def _write_zip(path, top, per_class, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as archive:
        for name in CLASSES:
            for i in range(per_class):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(buffer, format="PNG")
                archive.writestr(f"{top}/{name}/{name}{i}.png", buffer.getvalue())


@pytest.fixture
def server(tmp_path, request):
    """A ThreadingHTTPServer on 127.0.0.1 serving tiny RPS archives at <base>/; counts requests."""
    folder = tmp_path / "served"
    folder.mkdir()
    _write_zip(folder / "rps.zip", "rps", 3, 0)
    _write_zip(folder / "rps-test-set.zip", "rps-test-set", 2, 1)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def send_head(self):
            requests.append((self.command, self.path))
            return super().send_head()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)

    request.addfinalizer(stop)
    return f"http://127.0.0.1:{httpd.server_address[1]}", requests


@pytest.fixture
def user_machine(tmp_path, monkeypatch):
    """No shared assets, an empty Keras cache in tmp_path, and a weights probe that records instead of downloading."""
    monkeypatch.delenv("EVOPRUNE_ASSETS", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    probes = []
    monkeypatch.setattr(demo, "_probe_weights", lambda: probes.append("imagenet"))
    return tmp_path / "keras", probes


def test_online_demo_uses_the_download_source_and_imagenet_weights(server, user_machine, monkeypatch):
    base, requests = server
    home, probes = user_machine
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, base)
    config, sentence = demo.demo_config()
    assert config.data.source == "download:rock_paper_scissors"
    assert config.backbone.weights == "imagenet"
    assert config.data.name == "rps" and not config.data.standardize
    assert probes == ["imagenet"]
    assert sentence.startswith("Rock-Paper-Scissors (downloaded, in ")
    assert str(home / CACHE_SUBDIR / "rock_paper_scissors") in sentence
    # downloaded during the probe, so the run reads the cache
    assert is_downloaded("rock_paper_scissors")
    assert [r for m, r in requests if m == "GET"] == ["/rps.zip", "/rps-test-set.zip"]
    count = len(requests)
    again, _ = demo.demo_config()
    assert again.data.source == config.data.source and len(requests) == count  # a cached demo asks nobody


def test_offline_demo_falls_back_and_says_what_to_download(user_machine, monkeypatch):
    _, probes = user_machine
    with socket.socket() as probe:  # a port where nothing listens: the server is down
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, dead)
    config, sentence = demo.demo_config()
    assert config.data.source == "builtin:synthetic" and config.backbone.weights == "none"
    assert config.data.standardize
    assert probes == []  # the dataset check failed first, in seconds
    assert f"real data unavailable: cannot download {dead}/rps.zip" in sentence
    assert f"{dead}/rps.zip" in sentence.split("\n", 1)[1] and f"{dead}/rps-test-set.zip" in sentence
    assert ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5") in sentence
    assert "EVOPRUNE_ASSETS=" in sentence and "datasets/rps_28px/{train,test}/{paper,rock,scissors}/" in sentence
    assert "datasets/evoprune/downloads/" in sentence


def test_offline_help_names_the_public_urls(monkeypatch):
    monkeypatch.delenv(DOWNLOAD_BASE_ENV, raising=False)
    text = demo.offline_help()
    assert "https://storage.googleapis.com/download.tensorflow.org/data/rps.zip" in text
    assert "https://storage.googleapis.com/download.tensorflow.org/data/rps-test-set.zip" in text
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in text


def test_a_failing_weights_download_falls_back_too(server, user_machine, monkeypatch):
    base, _ = server
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, base)

    def no_weights():
        raise RuntimeError("cannot download 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5'")

    monkeypatch.setattr(demo, "_probe_weights", no_weights)
    config, sentence = demo.demo_config()
    assert config.data.source == "builtin:synthetic"
    assert "real data unavailable: cannot download 'mobilenet_v2_weights" in sentence


def test_shared_assets_still_win(tmp_path, user_machine, monkeypatch):
    _, probes = user_machine
    (tmp_path / "assets" / "datasets" / "rps_28px").mkdir(parents=True)
    (tmp_path / "assets" / "weights").mkdir()
    (tmp_path / "assets" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").touch()
    monkeypatch.setenv("EVOPRUNE_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, "http://127.0.0.1:9/never-asked")
    config, sentence = demo.demo_config()
    assert config.data.source == str(tmp_path / "assets" / "datasets" / "rps_28px")
    assert config.backbone.weights.endswith("weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    assert sentence.startswith("shared assets:") and probes == []


def test_a_run_reads_the_download_source(server, tmp_path, monkeypatch):
    """The whole pipeline (input checks, loading, features, search, report) on ``download:rock_paper_scissors``."""
    from evoprune_tf.app.config import load_config
    from evoprune_tf.app.run import run

    base, requests = server
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, base)
    config = load_config(overrides={
        "seed": 0, "progress": False,
        "data": {"source": "download:rock_paper_scissors", "image_size": 32, "standardize": True},
        "backbone": {"name": "mobilenet", "weights": "none"}, "head": {"hidden": [8]}, "train": {"epochs": 1},
        "algorithm": {"population": 4, "evaluations": 4}, "report": {"seeds": 1},
        "tracking": {"enabled": False}, "checkpoint": {"enabled": False}, "cache_dir": str(tmp_path / "cache"),
    })
    result = run(config)
    assert result.features.x_test.shape[0] == 3 * 2  # the served test archive: 2 images per class
    assert result.features.x_train.shape[0] + result.features.x_val.shape[0] == 3 * 3
    assert [r for m, r in requests if m == "GET"] == ["/rps.zip", "/rps-test-set.zip"]


def test_a_run_on_an_unreachable_download_fails_in_one_line_before_any_work(tmp_path, monkeypatch):
    """`evoprune run --data download:NAME` offline: the input check names the URL before a backbone is built."""
    from evoprune_tf.app.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, dead)
    monkeypatch.chdir(tmp_path)

    def no_work(*args, **kwargs):
        raise AssertionError("features were prepared before the download was checked")

    monkeypatch.setattr("evoprune_tf.methods.head.run.prepare_features", no_work)
    errors = io.StringIO()
    monkeypatch.setattr("sys.stderr", errors)
    status = main(["run", "--data", "download:rock_paper_scissors", "--weights", "none", "--no-tracking",
                   "--no-progress", "--evaluations", "2", "--population", "2"])
    lines = [line for line in errors.getvalue().splitlines() if line.strip()]
    assert status == 2
    assert len(lines) == 1 and f"cannot download {dead}/rps.zip" in lines[0], lines
    assert not (tmp_path / "keras" / CACHE_SUBDIR / "rock_paper_scissors").exists()
