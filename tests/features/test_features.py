"""Tests of evoprune_tf.features.extract: extraction, the on-disk cache and its integrity checks."""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np
import pytest

from evoprune_tf import backbones
from evoprune_tf.features import extract as features
from evoprune_tf.data import ImageSplits
from evoprune_tf.features.extract import (
    FeatureCacheWarning,
    default_cache_dir,
    extract_features,
    extract_features_with_info,
    feature_cache_key,
    load_features,
)
from evoprune_tf.features.splits import FeatureSplits

SIZE = 32
TINY = {"alpha": 0.25}  # MobileNet alpha 0.25: 256 features, the cheapest real backbone


def make_images(seed: int = 0, n: tuple[int, int, int] = (10, 5, 7), name: str = "synthetic") -> ImageSplits:
    rng = np.random.default_rng(seed)

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8), np.arange(count, dtype=np.int64) % 2

    (xa, ya), (xb, yb), (xc, yc) = split(n[0]), split(n[1]), split(n[2])
    return ImageSplits(xa, ya, xb, yb, xc, yc, class_names=("left", "right"), name=name)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Fixed (randomly drawn once) weights of the tiny MobileNet, so outputs are reproducible."""
    path = tmp_path_factory.mktemp("weights") / "tiny_mobilenet.weights.h5"
    model = backbones.build_backbone("MobileNet", weights=None, image_size=SIZE, **TINY)
    model.layers[-1].save_weights(path)
    return path


def _extract(images: ImageSplits, cache_dir: pathlib.Path, weights: pathlib.Path, **kwargs):
    return extract_features_with_info(
        images, backbone="mobilenet", weights=weights, image_size=SIZE, cache_dir=cache_dir,
        backbone_kwargs=TINY, progress=False, **kwargs,
    )


def _forbid_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("build_backbone called on a cache hit")

    monkeypatch.setattr(backbones, "build_backbone", fail)


def test_features_are_float32_with_the_images_labels_and_match_the_model(tmp_path: pathlib.Path, weights_file: pathlib.Path) -> None:
    images = make_images()
    feats, info = _extract(images, tmp_path, weights_file, batch_size=4)  # 10, 5, 7: padded last batches
    assert isinstance(feats, FeatureSplits) and not info.hit
    assert feats.x_train.shape == (10, 256) and feats.x_val.shape == (5, 256) and feats.x_test.shape == (7, 256)
    assert all(x.dtype == np.float32 for x in (feats.x_train, feats.x_val, feats.x_test))
    assert np.array_equal(feats.y_val, images.val_labels) and feats.y_val.dtype == np.int64
    assert feats.class_names == ("left", "right") and feats.name == "synthetic"
    model = backbones.build_backbone("MobileNet", weights=weights_file, image_size=SIZE, **TINY)
    direct = np.asarray(model.predict(images.test_images.astype(np.float32), verbose=0))
    np.testing.assert_allclose(feats.x_test, direct, rtol=1e-4, atol=1e-5)
    assert info.path is not None and info.path.parent == tmp_path and info.path.suffix == ".npz"
    # no temporary files left; the entry's lock file stays (see the concurrent-miss test)
    assert sorted(p.name for p in tmp_path.iterdir()) == [info.path.name, info.path.name + ".lock"]


def test_second_call_hits_the_cache_without_building(tmp_path: pathlib.Path, weights_file: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = make_images()
    first, info1 = _extract(images, tmp_path, weights_file)
    _forbid_building(monkeypatch)
    renamed = make_images(name="same pixels, other name")
    second, info2 = _extract(renamed, tmp_path, weights_file)
    assert info2.hit and info2.path == info1.path and info2.key == info1.key
    for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(first, key), getattr(second, key))
    assert second.name == "same pixels, other name"
    # The plain function and other spellings of the same backbone reuse it too.
    again = extract_features(
        images, backbone="MOBILENET", weights=weights_file, cache_dir=tmp_path, backbone_kwargs={"alpha": 0.250}, progress=False
    )
    assert np.array_equal(again.x_val, first.x_val)


def test_two_callers_missing_one_entry_together_extract_it_once(
    tmp_path: pathlib.Path, weights_file: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grid's workers that start on the same data: the first extracts, the others wait and read its file.

    Two threads stand in for two processes: an flock taken through two separate opens
    excludes the other open, within one process too. The slowed backbone pass keeps the
    first caller inside the extraction while the second one looks up the cache.
    """
    import threading
    import time

    passes = []
    real_pass = features.run_backbone

    def slow_pass(*args, **kwargs):
        passes.append(threading.current_thread().name)
        time.sleep(1.0)
        return real_pass(*args, **kwargs)

    monkeypatch.setattr(features, "run_backbone", slow_pass)
    images = make_images()
    start = threading.Barrier(2)
    results = {}

    def call(name: str) -> None:
        start.wait()
        results[name] = _extract(images, tmp_path, weights_file, tensorflow_child=False)

    threads = [threading.Thread(target=call, args=(name,), name=name) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(passes) == 1
    (first, first_info), (second, second_info) = results["a"], results["b"]
    assert sorted([first_info.hit, second_info.hit]) == [False, True]
    assert np.array_equal(first.x_test, second.x_test) and first_info.path == second_info.path


def test_a_changed_image_misses(tmp_path: pathlib.Path, weights_file: pathlib.Path) -> None:
    images = make_images()
    _, info1 = _extract(images, tmp_path, weights_file)
    images.val_images[2, 5, 5, 1] ^= 1
    _, info2 = _extract(images, tmp_path, weights_file)
    assert not info2.hit and info2.key != info1.key
    assert len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper"])
def test_a_corrupt_cache_file_is_detected_and_recomputed(
    tmp_path: pathlib.Path, weights_file: pathlib.Path, damage: str
) -> None:
    images = make_images()
    good, info = _extract(images, tmp_path, weights_file)
    path = info.path
    assert path is not None
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\0" * 100)
    else:  # a well-formed archive whose features were changed after the checksum
        with np.load(path) as archive:
            stored = {k: archive[k] for k in archive.files}
        stored["features"] = stored["features"] + 1.0
        with open(path, "wb") as handle:
            np.savez(handle, **stored)
        assert zipfile.is_zipfile(path)
    with pytest.warns(FeatureCacheWarning, match="corrupt or unreadable.*recomputing"):
        again, info2 = _extract(images, tmp_path, weights_file)
    assert not info2.hit
    np.testing.assert_allclose(again.x_train, good.x_train, rtol=1e-5, atol=1e-6)
    _, info3 = _extract(images, tmp_path, weights_file)  # rewritten and trusted again
    assert info3.hit


def test_cache_key_parts(weights_file: pathlib.Path, tmp_path: pathlib.Path) -> None:
    images = make_images()
    key = feature_cache_key(images, backbone="MobileNet", weights=weights_file, backbone_kwargs=TINY)
    assert key == feature_cache_key(
        features.images_digest(images), backbone="mobile_net", weights=weights_file, image_size=SIZE,
        backbone_kwargs={"alpha": 0.25}
    )
    copy = tmp_path / "renamed.h5"
    copy.write_bytes(weights_file.read_bytes())
    assert key == feature_cache_key(images, backbone="MobileNet", weights=copy, backbone_kwargs=TINY)
    with open(copy, "ab") as handle:
        handle.write(b"\0")
    different = {
        feature_cache_key(images, backbone="MobileNet", weights=copy, backbone_kwargs=TINY),
        feature_cache_key(images, backbone="MobileNet", weights="imagenet", backbone_kwargs=TINY),
        feature_cache_key(images, backbone="MobileNet", weights=None, backbone_kwargs=TINY),
        feature_cache_key(images, backbone="MobileNet", weights=weights_file, backbone_kwargs={"alpha": 0.5}),
        feature_cache_key(features.images_digest(images), backbone="MobileNet", weights=weights_file, image_size=64,
                          backbone_kwargs=TINY),
        feature_cache_key(images, backbone="MobileNetV2", weights=weights_file),
        feature_cache_key(make_images(seed=1), backbone="MobileNet", weights=weights_file, backbone_kwargs=TINY),
    }
    assert key not in different and len(different) == 7


def test_cache_off_and_default_folder(tmp_path: pathlib.Path, weights_file: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    images = make_images(n=(4, 2, 0))
    feats, info = extract_features_with_info(
        images, backbone="MobileNet", weights=weights_file, backbone_kwargs=TINY, progress=False, cache=False
    )
    assert info.path is None and not info.hit and not (tmp_path / "env-cache").exists()
    assert feats.x_test.shape == (0, 256)
    _, info = extract_features_with_info(images, backbone="MobileNet", weights=weights_file, backbone_kwargs=TINY, progress=False)
    assert info.path is not None and info.path.parent == tmp_path / "env-cache"
    monkeypatch.delenv("EVOPRUNE_CACHE_DIR")
    assert default_cache_dir() == pathlib.Path.home() / ".cache" / "evoprune_tf" / "features"


def test_errors_are_raised_before_any_work(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_building(monkeypatch)
    images = make_images()
    with pytest.raises(ValueError, match=r"image_size=64 but the images are 32x32"):
        extract_features(images, backbone="MobileNet", weights=None, image_size=64, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size=0"):
        extract_features(images, backbone="MobileNet", weights=None, batch_size=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        extract_features(images, backbone="nope", weights=None, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"weights file '.*missing\.h5' does not exist"):
        extract_features(images, backbone="MobileNet", weights=tmp_path / "missing.h5", cache_dir=tmp_path)
    small = ImageSplits(*(a[:, :16, :16] if a.ndim == 4 else a for a in (
        images.train_images, images.train_labels, images.val_images, images.val_labels, images.test_images, images.test_labels
    )), class_names=images.class_names)
    with pytest.raises(ValueError, match=r"image_size=16 for MobileNet; expected an integer >= 32"):
        extract_features(small, backbone="MobileNet", weights=None, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_load_features_from_a_folder(tmp_path: pathlib.Path, weights_file: pathlib.Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for class_name in ("a", "b"):
        (tmp_path / "ds" / class_name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "ds" / class_name / f"{i}.png")
    feats = load_features(
        tmp_path / "ds", backbone="MobileNet", weights=weights_file, image_size=SIZE, backbone_kwargs=TINY,
        cache_dir=tmp_path / "cache", progress=False, test_fraction=0.25, val_fraction=0.25,
    )
    assert feats.name == "ds" and feats.class_names == ("a", "b")
    assert (len(feats.x_train), len(feats.x_val), len(feats.x_test)) == (6, 2, 4)
    assert feats.n_features == 256
    assert len(list((tmp_path / "cache").glob("MobileNet_32px_*.npz"))) == 1


@pytest.mark.assets
def test_shared_mobilenet_v2_features_of_rps_are_cached(assets: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = assets / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    kwargs = dict(backbone="mobilenet_v2", weights=weights, image_size=96, max_per_class=20, cache_dir=tmp_path, progress=False)
    feats = load_features(assets / "datasets" / "rps_28px", **kwargs)
    assert feats.n_features == 1280 and feats.x_train.dtype == np.float32
    assert (len(feats.x_train) + len(feats.x_val), len(feats.x_test)) == (60, 60)
    assert np.isfinite(feats.x_train).all() and feats.x_train.std() > 0
    _forbid_building(monkeypatch)
    again = load_features(assets / "datasets" / "rps_28px", **kwargs)
    assert np.array_equal(again.x_test, feats.x_test)


def test_weights_identity_is_memoised(weights_file: pathlib.Path) -> None:
    first = features.weights_identity(weights_file)
    assert first.startswith("sha256:") and features.weights_identity(str(weights_file)) == first
    assert features.weights_identity(None) == "random-init" and features.weights_identity("imagenet") == "imagenet"
