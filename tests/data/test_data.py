"""Tests of evoprune_tf.data: class folders, .npz, TFDS (faked), conversions and errors."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from evoprune_tf.data import IMAGE_EXTENSIONS, ImageSplits, load_images, to_rgb_array


def _image(value: int, size: int = 8, mode: str = "RGB") -> Image.Image:
    """A solid image whose red channel encodes ``value`` (so every file is identifiable)."""
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[..., 0] = value
    array[..., 1] = 100
    image = Image.fromarray(array, "RGB")
    return image if mode == "RGB" else image.convert(mode)


def make_class_folders(root: pathlib.Path, counts: dict[str, int], *, start: int = 0, ext: str = ".png") -> int:
    """Write ``counts[class]`` small PNGs per class under ``root/<class>/``; return the next value."""
    value = start
    for class_name, count in counts.items():
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _image(value % 256).save(folder / f"img{i:03d}{ext}")
            value += 1
    return value


def _red_values(images: np.ndarray) -> set[int]:
    return {int(v) for v in images[:, 0, 0, 0]}


@pytest.fixture
def split_dataset(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "ds"
    nxt = make_class_folders(root / "train", {"cat": 10, "dog": 10, "eel": 10})
    make_class_folders(root / "test", {"cat": 3, "dog": 3, "eel": 3}, start=nxt)
    return root


def test_train_test_folders_carve_a_stratified_validation_split(split_dataset: pathlib.Path) -> None:
    splits = load_images(split_dataset, image_size=12, val_fraction=0.2)
    assert splits.class_names == ("cat", "dog", "eel")
    assert splits.name == "ds"
    assert splits.train_images.shape == (24, 12, 12, 3) and splits.train_images.dtype == np.uint8
    assert splits.val_images.shape == (6, 12, 12, 3)
    assert splits.test_images.shape == (9, 12, 12, 3)
    for labels in (splits.train_labels, splits.val_labels, splits.test_labels):
        assert labels.dtype == np.int64
    assert np.bincount(splits.val_labels).tolist() == [2, 2, 2]
    assert np.bincount(splits.test_labels).tolist() == [3, 3, 3]
    # Every image is in exactly one split, with its own label.
    train, val, test = (_red_values(x) for x in (splits.train_images, splits.val_images, splits.test_images))
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 39
    for images, labels in ((splits.train_images, splits.train_labels), (splits.val_images, splits.val_labels)):
        assert np.all(images[:, 0, 0, 0] // 10 == labels)  # values 0-9 cat, 10-19 dog, 20-29 eel


def test_splits_are_deterministic_per_seed(split_dataset: pathlib.Path) -> None:
    a = load_images(split_dataset, image_size=8, seed=3)
    b = load_images(split_dataset, image_size=8, seed=3)
    c = load_images(split_dataset, image_size=8, seed=4)
    assert a.content_hash() == b.content_hash()
    assert _red_values(a.val_images) != _red_values(c.val_images)


def test_single_folder_is_split_into_train_val_test(tmp_path: pathlib.Path) -> None:
    make_class_folders(tmp_path / "flat", {"a": 10, "b": 20})
    splits = load_images(tmp_path / "flat", image_size=8, val_fraction=0.25, test_fraction=0.2)
    assert np.bincount(splits.test_labels).tolist() == [2, 4]
    assert np.bincount(splits.val_labels).tolist() == [2, 4]
    assert np.bincount(splits.train_labels).tolist() == [6, 12]
    assert len(_red_values(splits.train_images) | _red_values(splits.val_images) | _red_values(splits.test_images)) == 30


def test_given_val_folder_is_used_and_train_val_only_holds_out_val_as_test(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "three"
    nxt = make_class_folders(root / "train", {"a": 6, "b": 6})
    nxt = make_class_folders(root / "val", {"a": 2, "b": 2}, start=nxt)
    make_class_folders(root / "test", {"a": 1, "b": 1}, start=nxt)
    splits = load_images(root, image_size=8)
    assert (len(splits.train_labels), len(splits.val_labels), len(splits.test_labels)) == (12, 4, 2)

    root = tmp_path / "pytorch_style"  # train/ + val/ like the hymenoptera tutorial data
    nxt = make_class_folders(root / "train", {"a": 5, "b": 5})
    make_class_folders(root / "val", {"a": 3, "b": 3}, start=nxt)
    splits = load_images(root, image_size=8, val_fraction=0.2)
    assert (len(splits.train_labels), len(splits.val_labels), len(splits.test_labels)) == (8, 2, 6)
    assert min(_red_values(splits.test_images)) >= 10  # the val/ images


def test_extensions_hidden_files_and_stray_files(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for i, ext in enumerate(IMAGE_EXTENSIONS):
        _image(i).save(root / "a" / f"x{i}{ext.upper() if i % 2 else ext}", format={".jpg": "JPEG", ".jpeg": "JPEG"}.get(ext))
    for i in range(3):
        _image(50 + i).save(root / "b" / f"y{i}.PNG")
    _image(99).save(root / "b" / ".hidden.png", format="PNG")
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("top-level files are not classes")
    (root / ".ipynb_checkpoints").mkdir()
    splits = load_images(root, image_size=8, test_fraction=0.0, val_fraction=0.3)
    total = len(splits.train_labels) + len(splits.val_labels) + len(splits.test_labels)
    assert total == len(IMAGE_EXTENSIONS) + 3
    assert len(splits.test_labels) == 0 and splits.test_images.shape == (0, 8, 8, 3)
    assert splits.class_names == ("a", "b")


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "PT", "I;16", "CMYK", "1"])
def test_every_image_mode_becomes_rgb(tmp_path: pathlib.Path, mode: str) -> None:
    rgb = _image(200, size=10)
    if mode == "PT":  # palette with a transparent index
        image = rgb.convert("P")
        image.info["transparency"] = 0
    elif mode == "I;16":
        image = Image.fromarray((np.full((10, 10), 40000)).astype(np.uint16))
    else:
        image = rgb.convert(mode)
    path = tmp_path / "img.png" if mode != "CMYK" else tmp_path / "img.jpg"
    image.save(path)
    with Image.open(path) as reopened:
        array = to_rgb_array(reopened, 6)
    assert array.shape == (6, 6, 3) and array.dtype == np.uint8
    if mode in ("RGBA", "P", "PT"):
        assert abs(int(array[0, 0, 0]) - 200) <= 8  # alpha dropped, colour kept
    if mode == "I;16":
        assert np.all(array == round(40000 / 257))


def test_rgba_alpha_is_dropped_not_composited() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 2] = 255  # blue, fully transparent
    array = to_rgb_array(Image.fromarray(rgba, "RGBA"), 4)
    assert array[0, 0].tolist() == [0, 0, 255]


def test_resize_is_pillow_bilinear() -> None:
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(source).resize((7, 7), Image.Resampling.BILINEAR))
    assert np.array_equal(to_rgb_array(Image.fromarray(source), 7), expected)


def test_max_per_class_subsamples_each_split_deterministically(split_dataset: pathlib.Path) -> None:
    a = load_images(split_dataset, image_size=8, max_per_class=5, val_fraction=0.2)
    b = load_images(split_dataset, image_size=8, max_per_class=5, val_fraction=0.2)
    assert a.content_hash() == b.content_hash()
    assert np.bincount(a.train_labels).tolist() == [4, 4, 4]
    assert np.bincount(a.val_labels).tolist() == [1, 1, 1]
    assert np.bincount(a.test_labels).tolist() == [3, 3, 3]  # already below the cap


def test_content_hash_is_stable_and_sensitive() -> None:
    zeros = np.zeros((2, 2, 2, 3), np.uint8)
    labels = np.array([0, 1], np.int64)
    splits = ImageSplits(zeros, labels, zeros, labels, zeros[:0], labels[:0], ("a", "b"), name="x")
    # A fixed value: the hash keys the on-disk feature cache, so it must not drift.
    assert splits.content_hash() == "262ee6f0a8edd37277746a80cface304a5341d9e6b074a9f638ca97b2187ad52"
    renamed = ImageSplits(zeros, labels, zeros, labels, zeros[:0], labels[:0], ("a", "b"), name="y")
    assert renamed.content_hash() == splits.content_hash()
    other_names = ImageSplits(zeros, labels, zeros, labels, zeros[:0], labels[:0], ("a", "c"))
    assert other_names.content_hash() != splits.content_hash()
    pixel = zeros.copy()
    pixel[1, 1, 1, 2] = 1
    changed = ImageSplits(pixel, labels, zeros, labels, zeros[:0], labels[:0], ("a", "b"))
    assert changed.content_hash() != splits.content_hash()
    moved = ImageSplits(zeros, labels, zeros, labels[::-1].copy(), zeros[:0], labels[:0], ("a", "b"))
    assert moved.content_hash() != splits.content_hash()


def test_content_hash_is_the_same_in_another_process(split_dataset: pathlib.Path) -> None:
    code = (
        "import sys; from evoprune_tf.data import load_images; "
        "print(load_images(sys.argv[1], image_size=8).content_hash())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(split_dataset)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == load_images(split_dataset, image_size=8).content_hash()


def test_loading_images_does_not_import_tensorflow(split_dataset: pathlib.Path) -> None:
    code = (
        "import sys; from evoprune_tf.data import load_images; load_images(sys.argv[1], image_size=8); "
        "import evoprune_tf.features.extract, evoprune_tf.backbones; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(split_dataset)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ errors


def test_missing_folder(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        load_images(tmp_path / "nowhere", image_size=8)


def test_fewer_than_two_classes(tmp_path: pathlib.Path) -> None:
    make_class_folders(tmp_path / "one", {"only": 3})
    with pytest.raises(ValueError, match=r"holds 1 class folder.*'only'.*at least two"):
        load_images(tmp_path / "one", image_size=8)


def test_empty_class_folder(tmp_path: pathlib.Path) -> None:
    make_class_folders(tmp_path / "ds", {"a": 3})
    (tmp_path / "ds" / "b").mkdir()
    (tmp_path / "ds" / "b" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"class folder '.*b' holds no images"):
        load_images(tmp_path / "ds", image_size=8)


def test_unreadable_image_is_named_or_skipped(tmp_path: pathlib.Path) -> None:
    make_class_folders(tmp_path / "ds", {"a": 4, "b": 4})
    bad = tmp_path / "ds" / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image '.*broken\.jpg'.*skip_bad_images=True") as info:
        load_images(tmp_path / "ds", image_size=8)
    assert "\n" not in str(info.value)
    splits = load_images(tmp_path / "ds", image_size=8, skip_bad_images=True)
    assert splits.skipped == [str(bad)]
    assert len(splits.train_labels) + len(splits.val_labels) + len(splits.test_labels) == 8


def test_class_names_differ_between_train_and_test(tmp_path: pathlib.Path) -> None:
    make_class_folders(tmp_path / "ds" / "train", {"a": 3, "b": 3})
    make_class_folders(tmp_path / "ds" / "test", {"a": 1, "c": 1})
    with pytest.raises(ValueError, match=r"class folders differ.*\['a', 'b'\].*\['a', 'c'\]"):
        load_images(tmp_path / "ds", image_size=8)


def test_unknown_source_forms(tmp_path: pathlib.Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("a,b")
    with pytest.raises(ValueError, match=r"data\.csv' is a file but not a \.npz"):
        load_images(csv, image_size=8)
    with pytest.raises(ValueError, match="has type int"):
        load_images(42, image_size=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names no dataset"):
        load_images("tfds:", image_size=8)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"image_size": 0}, "image_size=0"),
        ({"image_size": 8.5}, "image_size=8.5"),
        ({"image_size": 8, "val_fraction": 1.0}, "val_fraction=1.0"),
        ({"image_size": 8, "test_fraction": -0.1}, "test_fraction=-0.1"),
        ({"image_size": 8, "max_per_class": 0}, "max_per_class=0"),
    ],
)
def test_bad_arguments(split_dataset: pathlib.Path, kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        load_images(split_dataset, **kwargs)


# ------------------------------------------------------------------------------- .npz


def test_npz_with_resizing_grayscale_and_class_names(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "digits.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (20, 5, 5), dtype=np.uint8),  # grayscale, no channel axis
        y_train=np.repeat([0, 1], 10),
        x_test=rng.integers(0, 256, (4, 5, 5), dtype=np.uint8),
        y_test=np.array([[0], [1], [0], [1]]),
        class_names=np.array(["zero", "one"]),
    )
    splits = load_images(path, image_size=9)
    assert splits.name == "digits" and splits.class_names == ("zero", "one")
    assert splits.train_images.shape == (16, 9, 9, 3)
    assert splits.val_images.shape == (4, 9, 9, 3)
    assert splits.test_labels.tolist() == [0, 1, 0, 1]
    assert np.all(splits.train_images[..., 0] == splits.train_images[..., 2])  # gray -> RGB


def test_npz_with_given_val_already_at_size(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    path = tmp_path / "small.npz"
    np.savez(path, x_train=images, y_train=labels, x_val=images[:3], y_val=labels[:3],
             x_test=images.astype(np.float32), y_test=labels)
    splits = load_images(path, image_size=8)
    assert np.array_equal(splits.train_images, images)
    assert np.array_equal(splits.test_images, images)  # 0..255 floats are accepted
    assert splits.val_labels.tolist() == [0, 1, 2]
    assert splits.class_names == ("0", "1", "2")


def test_npz_errors(tmp_path: pathlib.Path) -> None:
    images = np.zeros((4, 8, 8, 3), np.uint8)
    labels = np.array([0, 1, 0, 1])
    missing = tmp_path / "missing.npz"
    np.savez(missing, x_train=images, y_train=labels, x_test=images)
    with pytest.raises(ValueError, match=r"lacks arrays \['y_test'\]"):
        load_images(missing, image_size=8)
    unit_floats = tmp_path / "floats.npz"
    np.savez(unit_floats, x_train=images.astype(np.float32) + 0.5, y_train=labels, x_test=images, y_test=labels)
    with pytest.raises(ValueError, match="x_train has dtype float32 with values in"):
        load_images(unit_floats, image_size=8)
    names = tmp_path / "names.npz"
    np.savez(names, x_train=images, y_train=labels + 1, x_test=images, y_test=labels, class_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="class_names has 2 names but labels reach 2"):
        load_images(names, image_size=8)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"cannot read '.*broken\.npz' as \.npz"):
        load_images(broken, image_size=8)


# -------------------------------------------------------------------------------- TFDS


def test_tfds_without_the_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install tensorflow-datasets.*\[tfds\]"):
        load_images("tfds:rock_paper_scissors", image_size=8)


def test_tfds_splits_through_a_fake_module(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)

    def examples(n: int) -> list[tuple[np.ndarray, int]]:
        return [(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), i % 3) for i in range(n)]

    calls = {}

    def load(name: str, **kwargs: object) -> tuple[dict, object]:
        calls["name"], calls["kwargs"] = name, kwargs
        label = types.SimpleNamespace(names=["rock", "paper", "scissors"])
        info = types.SimpleNamespace(features={"image": None, "label": label})
        return {"train": examples(30), "test": examples(9)}, info

    fake = types.ModuleType("tensorflow_datasets")
    fake.load = load  # type: ignore[attr-defined]
    fake.as_numpy = lambda dataset: iter(dataset)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    splits = load_images("tfds:rock_paper_scissors", image_size=6)
    assert calls["name"] == "rock_paper_scissors" and calls["kwargs"]["as_supervised"] is True
    assert splits.name == "rock_paper_scissors"
    assert splits.class_names == ("rock", "paper", "scissors")
    assert (len(splits.train_labels), len(splits.val_labels), len(splits.test_labels)) == (24, 6, 9)
    assert splits.train_images.shape[1:] == (6, 6, 3)

    def offline(name: str, **kwargs: object) -> None:
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'\nmore lines")

    fake.load = offline  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"cannot load TFDS dataset 'rock_paper_scissors' \(ConnectionError: Failed") as info:
        load_images("tfds:rock_paper_scissors", image_size=6)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------ real assets


@pytest.mark.assets
def test_shared_rps_loads_with_its_published_split(assets: pathlib.Path) -> None:
    splits = load_images(assets / "datasets" / "rps_28px", image_size=28, max_per_class=40)
    assert splits.class_names == ("paper", "rock", "scissors")
    assert np.bincount(splits.test_labels).tolist() == [40, 40, 40]
    assert np.bincount(splits.train_labels).tolist() == [32, 32, 32]
    assert splits.train_images.dtype == np.uint8 and splits.train_images.shape[1:] == (28, 28, 3)
    assert splits.train_images.std() > 10  # real pictures, not blank RGBA
