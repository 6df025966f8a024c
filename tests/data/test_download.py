"""`download:NAME` datasets: fetched with keras.utils.get_file from a local HTTP server standing in for the internet."""

from __future__ import annotations

import http.server
import io
import pathlib
import socket
import threading
import time
import zipfile

import numpy as np
import pytest

from evoprune_tf.data import load_images
from evoprune_tf.data.download import (
    CACHE_SUBDIR,
    DEFAULT_DOWNLOAD_BASE,
    DOWNLOAD_BASE_ENV,
    DownloadError,
    check_download,
    dataset_folder,
    dataset_urls,
    download_dataset,
    is_downloaded,
    known_datasets,
    offline_instructions,
)

CLASSES = ("paper", "rock", "scissors")
N_TRAIN, N_TEST = 4, 2  # images per class in the served archives


def _png(seed: int, size: int = 12, mode: str = "RGBA") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, len(mode)), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def write_rps_zip(path: pathlib.Path, top: str | None, per_class: int, seed: int = 0, junk: bool = True) -> None:
    """An archive in the real ones' layout: ``<top>/<class>/<class>NN.png`` (``top=None``: classes at the root)."""
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(path, "w") as archive:
        for c, name in enumerate(CLASSES):
            archive.writestr(f"{prefix}{name}/", b"")
            for i in range(per_class):
                archive.writestr(f"{prefix}{name}/{name}{i:02d}.png", _png(seed + 100 * c + i))
        if junk:  # macOS debris that must never become a class
            archive.writestr(f"__MACOSX/{prefix}rock/._rock00.png", b"not an image")


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``folder``; counts every request."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.requests: list[tuple[str, str]] = []
        served = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(served.folder), **kwargs)

            def send_head(self):
                served.requests.append((self.command, self.path))
                return super().send_head()

            def log_message(self, *args):  # keep pytest's output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/data"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def rps_server(tmp_path, request):
    """Serves tiny rps.zip / rps-test-set.zip at <base>/data/ and stops in a finaliser."""
    data = tmp_path / "served" / "data"
    data.mkdir(parents=True)
    write_rps_zip(data / "rps.zip", "rps", N_TRAIN, seed=0)
    write_rps_zip(data / "rps-test-set.zip", "rps-test-set", N_TEST, seed=5000)
    server = _Server(tmp_path / "served")
    request.addfinalizer(server.stop)
    return server


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def closed_port_base() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/data"


def test_load_images_downloads_once_and_reads_the_class_folders(rps_server, keras_home, monkeypatch):
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, rps_server.base)
    splits = load_images("download:rock_paper_scissors", image_size=16, val_fraction=0.25)
    assert splits.class_names == CLASSES
    assert splits.name == "rock_paper_scissors"
    assert len(splits.train_labels) + len(splits.val_labels) == 3 * N_TRAIN
    assert np.bincount(splits.test_labels).tolist() == [N_TEST] * 3
    assert splits.train_images.shape[1:] == (16, 16, 3)
    assert [r for _, r in rps_server.requests] == ["/data/rps.zip", "/data/rps-test-set.zip"]

    folder = keras_home / CACHE_SUBDIR / "rock_paper_scissors"
    assert sorted(p.name for p in folder.iterdir()) == ["test", "train"]
    assert sorted(p.name for p in (folder / "train").iterdir()) == list(CLASSES)
    assert len(list((folder / "train" / "rock").iterdir())) == N_TRAIN
    # the archives and Keras' unpacked copies are gone: the dataset is on disk once
    assert list((keras_home / CACHE_SUBDIR / "downloads").iterdir()) == []
    assert not (keras_home / CACHE_SUBDIR / ".rock_paper_scissors.partial").exists()

    again = load_images("download:rock_paper_scissors", image_size=16, val_fraction=0.25)
    assert len(rps_server.requests) == 2  # the second call never asks the server
    assert again.content_hash() == splits.content_hash()


def test_cache_dir_argument_and_no_network_once_downloaded(rps_server, keras_home, tmp_path):
    cache = tmp_path / "elsewhere"
    assert not is_downloaded("rock_paper_scissors", cache_dir=cache)
    folder = download_dataset("rock_paper_scissors", cache_dir=cache, base_url=rps_server.base)
    assert folder == dataset_folder("rock_paper_scissors", cache_dir=cache)
    assert folder == cache / CACHE_SUBDIR / "rock_paper_scissors"
    assert is_downloaded("rock_paper_scissors", cache_dir=cache)
    assert not keras_home.exists() or not (keras_home / CACHE_SUBDIR).exists()
    # cached: neither the check nor a download touches the (now dead) network
    rps_server.stop()
    check_download("rock_paper_scissors", cache_dir=cache, base_url=closed_port_base(), timeout=1)
    assert download_dataset("rock_paper_scissors", cache_dir=cache, base_url=closed_port_base()) == folder


def test_archives_put_in_the_download_folder_are_used_offline(tmp_path):
    downloads = tmp_path / CACHE_SUBDIR / "downloads"
    downloads.mkdir(parents=True)
    write_rps_zip(downloads / "rps.zip", "rps", 2)
    write_rps_zip(downloads / "rps-test-set.zip", "rps-test-set", 1)
    dead = closed_port_base()
    check_download("rock_paper_scissors", cache_dir=tmp_path, base_url=dead, timeout=1)
    folder = download_dataset("rock_paper_scissors", cache_dir=tmp_path, base_url=dead)
    assert len(list((folder / "test" / "paper").iterdir())) == 1


def test_archives_without_their_top_folder_are_found(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_rps_zip(served / "rps.zip", None, 2, junk=False)
    write_rps_zip(served / "rps-test-set.zip", "extra/rps-test-set", 1)
    base = (served).as_uri()  # file:// mirrors work as well
    folder = download_dataset("rock_paper_scissors", cache_dir=tmp_path / "cache", base_url=base)
    assert sorted(p.name for p in (folder / "train").iterdir()) == list(CLASSES)
    assert sorted(p.name for p in (folder / "test").iterdir()) == list(CLASSES)


def test_download_failure_is_one_line_naming_the_url_and_the_offline_way(tmp_path, rps_server):
    (rps_server.folder / "data" / "rps-test-set.zip").unlink()  # the test archive is missing: HTTP 404
    with pytest.raises(DownloadError) as caught:
        download_dataset("rock_paper_scissors", cache_dir=tmp_path / "cache", base_url=rps_server.base)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{rps_server.base}/rps-test-set.zip" in message and "404" in message
    assert "offline" in message and "rps-test-set.zip in" in message and "--data" in message
    assert not is_downloaded("rock_paper_scissors", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / CACHE_SUBDIR / "rock_paper_scissors").exists()

    # the train split already unpacked is kept: the retry fetches only the missing archive
    write_rps_zip(rps_server.folder / "data" / "rps-test-set.zip", "rps-test-set", 1)
    before = len(rps_server.requests)
    download_dataset("rock_paper_scissors", cache_dir=tmp_path / "cache", base_url=rps_server.base)
    assert [r for _, r in rps_server.requests[before:]] == ["/data/rps-test-set.zip"]


def test_unreachable_server_fails_fast_in_the_check(tmp_path):
    began = time.perf_counter()
    with pytest.raises(DownloadError, match=r"cannot download http://127\.0\.0\.1:\d+/data/rps\.zip .*offline"):
        check_download("rock_paper_scissors", cache_dir=tmp_path, base_url=closed_port_base(), timeout=2)
    assert time.perf_counter() - began < 5


def test_check_download_asks_with_head_only(tmp_path, rps_server):
    check_download("rock_paper_scissors", cache_dir=tmp_path, base_url=rps_server.base)
    assert rps_server.requests == [("HEAD", "/data/rps.zip"), ("HEAD", "/data/rps-test-set.zip")]
    assert not is_downloaded("rock_paper_scissors", cache_dir=tmp_path)


def test_published_hash_is_checked_when_asked(tmp_path, rps_server):
    # the served archives are not the published ones, so verification must refuse them
    with pytest.raises(DownloadError, match=r"rps\.zip .*hash"):
        download_dataset("rock_paper_scissors", cache_dir=tmp_path, base_url=rps_server.base, verify=True)
    assert not is_downloaded("rock_paper_scissors", cache_dir=tmp_path)


def test_an_archive_that_is_not_a_dataset_is_refused_and_dropped(tmp_path, rps_server):
    (rps_server.folder / "data" / "rps.zip").write_bytes(b"<html>captive portal</html>")
    with pytest.raises(DownloadError, match=r"did not unpack into a folder with the class folders paper, rock, sc"):
        download_dataset("rock_paper_scissors", cache_dir=tmp_path, base_url=rps_server.base)
    assert not (tmp_path / CACHE_SUBDIR / "downloads" / "rps.zip").exists()  # so a retry downloads again


def test_unknown_names_and_bad_base_urls_are_one_line_value_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown downloadable dataset 'mnist'; expected one of rock_paper_scissors"):
        load_images("download:mnist", image_size=16)
    with pytest.raises(ValueError, match=r"unknown downloadable dataset ''"):
        download_dataset("", cache_dir=tmp_path)
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, "storage.example.org/data")
    with pytest.raises(ValueError, match=rf"{DOWNLOAD_BASE_ENV}='storage.example.org/data'; expected a URL"):
        dataset_urls("rock_paper_scissors")


def test_half_made_dataset_folder_is_reported_not_overwritten(tmp_path):
    folder = tmp_path / CACHE_SUBDIR / "rock_paper_scissors"
    (folder / "train" / "rock").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"exists but lacks some of train/\{paper,rock,scissors\}/ and test/"):
        download_dataset("rock_paper_scissors", cache_dir=tmp_path, base_url=closed_port_base())
    assert (folder / "train" / "rock").is_dir()


def test_urls_registry_and_offline_instructions(monkeypatch, tmp_path):
    monkeypatch.delenv(DOWNLOAD_BASE_ENV, raising=False)
    assert "rock_paper_scissors" in known_datasets()
    assert dataset_urls("rock_paper_scissors") == (
        f"{DEFAULT_DOWNLOAD_BASE}/rps.zip", f"{DEFAULT_DOWNLOAD_BASE}/rps-test-set.zip",
    )
    assert dataset_urls("Rock_Paper_Scissors", base_url="http://mirror/x/")[0] == "http://mirror/x/rps.zip"
    text = offline_instructions("rock_paper_scissors", cache_dir=tmp_path)
    assert "https://storage.googleapis.com/download.tensorflow.org/data/rps.zip" in text
    assert "https://storage.googleapis.com/download.tensorflow.org/data/rps-test-set.zip" in text
    assert str(tmp_path / CACHE_SUBDIR / "downloads") in text
    assert f"{tmp_path / CACHE_SUBDIR / 'rock_paper_scissors'}/train/{{paper,rock,scissors}}/" in text
    assert not (tmp_path / CACHE_SUBDIR).exists()  # saying where costs no folders


def test_archives_put_by_hand_are_hash_checked_and_used_offline(tmp_path, monkeypatch):
    import dataclasses
    import hashlib

    import evoprune_tf.data.download as download

    dead = closed_port_base()  # never the public base: no real internet in tests
    downloads = tmp_path / CACHE_SUBDIR / "downloads"
    downloads.mkdir(parents=True)
    write_rps_zip(downloads / "rps.zip", "rps", 2)
    write_rps_zip(downloads / "rps-test-set.zip", "rps-test-set", 1)
    # not the published archives: Keras wants to download them again, and cannot
    with pytest.raises(DownloadError, match=r"cannot download http://127\.0\.0\.1:\d+/data/rps\.zip .*refused"):
        download_dataset("rock_paper_scissors", cache_dir=tmp_path, base_url=dead, verify=True)
    assert not (downloads / "rps.zip").exists()  # Keras dropped the wrong file
    # with the sums of these very files (standing in for the real archives) they unpack offline
    write_rps_zip(downloads / "rps.zip", "rps", 2)
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in downloads.iterdir()}
    entry = download._DATASETS["rock_paper_scissors"]
    archives = tuple(dataclasses.replace(a, sha256=sums[a.file_name]) for a in entry.archives)
    monkeypatch.setitem(download._DATASETS, "rock_paper_scissors", dataclasses.replace(entry, archives=archives))
    check_download("rock_paper_scissors", cache_dir=tmp_path, base_url=dead, timeout=1)
    folder = download_dataset("rock_paper_scissors", cache_dir=tmp_path, base_url=dead, verify=True)
    assert len(list((folder / "train" / "scissors").iterdir())) == 2
