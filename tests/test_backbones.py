"""Tests of evoprune_tf.backbones: registry, building, preprocessing, weights handling."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from evoprune_tf import backbones
from evoprune_tf.backbones import (
    BACKBONES,
    build_backbone,
    canonical_name,
    canonical_options,
    feature_dim,
    imagenet_weights_filename,
    known_backbones,
)

MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
MOBILENET_025_FILE = "mobilenet_2_5_224_tf_no_top.h5"


def _pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_mobilenet():
    """MobileNet alpha 0.25 at 32 px with random weights: the cheapest real backbone."""
    return build_backbone("mobilenet", weights=None, image_size=32, alpha=0.25)


# ----------------------------------------------------------------------------- registry


def test_registry_covers_the_papers_backbones() -> None:
    expected = {
        "MobileNetV2": 1280, "MobileNet": 1024, "ResNet50": 2048, "DenseNet121": 1024,
        "VGG16": 512, "VGG19": 512, "EfficientNetB0": 1280,
    }
    for name, dim in expected.items():
        assert name in known_backbones()
        assert BACKBONES[name].feature_dim == dim == feature_dim(name)
        assert BACKBONES[name].min_size >= 32 and BACKBONES[name].default_size >= 224
    assert known_backbones() == tuple(sorted(BACKBONES))


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("mobilenet_v2", "MobileNetV2"), ("MobileNetV2", "MobileNetV2"), ("MOBILENET-V2", "MobileNetV2"),
     ("resnet50", "ResNet50"), ("efficientnet_b0", "EfficientNetB0"), ("vgg19", "VGG19"), ("densenet121", "DenseNet121")],
)
def test_names_are_case_insensitive(spelling: str, canonical: str) -> None:
    assert canonical_name(spelling) == canonical
    assert backbones.backbone_info(spelling).name == canonical


def test_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'; expected one of") as info:
        build_backbone("resnet9000", weights=None)
    message = str(info.value)
    assert "\n" not in message
    assert all(name in message for name in known_backbones())
    with pytest.raises(ValueError, match="unknown backbone"):
        feature_dim("alexnet")


def test_feature_dim_follows_alpha() -> None:
    assert feature_dim("MobileNet", alpha=0.25) == 256
    assert feature_dim("MobileNet", alpha=0.5) == 512
    assert feature_dim("mobilenet_v2", alpha=0.35) == 1280
    assert feature_dim("mobilenet_v2", alpha=1.4) == 1792


def test_options_are_validated_and_normalised() -> None:
    assert canonical_options("mobilenet_v2", alpha=1) == {"alpha": 1.0}
    assert canonical_options("MobileNet") == {"alpha": 1.0, "depth_multiplier": 1}
    with pytest.raises(ValueError, match=r"ResNet50 takes no option\(s\) \['alpha'\]; accepted options: none"):
        canonical_options("resnet50", alpha=0.5)
    with pytest.raises(ValueError, match="option alpha=-1"):
        canonical_options("MobileNet", alpha=-1)


def test_imagenet_file_names_match_keras() -> None:
    assert imagenet_weights_filename("MobileNetV2", 96) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert imagenet_weights_filename("MobileNetV2", 100) == MOBILENET_V2_FILE  # Keras falls back to 224
    assert imagenet_weights_filename("MobileNet", 224, alpha=0.25) == MOBILENET_025_FILE
    assert imagenet_weights_filename("ResNet50") == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert imagenet_weights_filename("EfficientNetB0") == "efficientnetb0_notop.h5"


# ----------------------------------------------------------------------------- building


def test_build_gives_a_frozen_extractor_with_preprocessing_inside(tiny_mobilenet) -> None:
    import keras

    model = tiny_mobilenet
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 256)
    assert model.trainable_weights == []
    base = model.layers[-1]
    assert base.trainable is False
    x = _pixels(3, 32)
    expected = base(keras.applications.mobilenet.preprocess_input(x.copy()), training=False)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), rtol=1e-5, atol=1e-5)
    assert isinstance(model.layers[1], backbones.BackbonePreprocessing)


@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "DenseNet121", "VGG19", "EfficientNetB0", "InceptionV3"])
def test_preprocessing_layer_matches_the_applications_function(name: str) -> None:
    layer = backbones.BackbonePreprocessing(BACKBONES[name].preprocess_module)
    x = _pixels(2, 5)
    expected = backbones.preprocess(name)(x.copy())
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-6, atol=1e-4)


def test_mobilenet_v2_builds_at_small_size() -> None:
    model = build_backbone("mobilenet_v2", weights=None, image_size=32, alpha=0.35)
    assert model.output_shape == (None, 1280)
    assert np.asarray(model.predict(_pixels(2, 32), verbose=0)).shape == (2, 1280)


def test_model_saves_and_loads_with_its_preprocessing(tiny_mobilenet, tmp_path: pathlib.Path) -> None:
    import keras

    path = tmp_path / "extractor.keras"
    tiny_mobilenet.save(path)
    loaded = keras.models.load_model(path)
    x = _pixels(2, 32, seed=1)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(tiny_mobilenet(x)), atol=1e-6)


def test_bad_image_size() -> None:
    with pytest.raises(ValueError, match=r"image_size=16 for MobileNetV2; expected an integer >= 32"):
        build_backbone("MobileNetV2", weights=None, image_size=16)
    with pytest.raises(ValueError, match=r"image_size=60 for InceptionV3; expected an integer >= 75"):
        build_backbone("InceptionV3", weights=None, image_size=60)


# ------------------------------------------------------------------------------ weights


def test_weights_file_round_trip_and_wrong_architecture(tiny_mobilenet, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mobilenet_025.weights.h5"
    tiny_mobilenet.layers[-1].save_weights(path)
    again = build_backbone("MobileNet", weights=path, image_size=32, alpha=0.25)
    x = _pixels(2, 32, seed=2)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(tiny_mobilenet(x)), atol=1e-6)
    with pytest.raises(ValueError, match=r"weights file '.*mobilenet_025\.weights\.h5' does not fit backbone MobileNetV2") as info:
        build_backbone("MobileNetV2", weights=path, image_size=32, alpha=0.35)
    assert "\n" not in str(info.value)


def test_a_weights_file_that_loads_only_partly_is_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keras only *warns* when a .weights.h5 file lacks some layers and leaves them random.
    real_construct = backbones._construct

    def construct(*args: object, **kwargs: object):
        model = real_construct(*args, **kwargs)

        def load_weights(path: str) -> None:
            import warnings

            warnings.warn("Skipping variable loading for layer 'Conv1': layers will retain their freshly-initialized weights")

        model.load_weights = load_weights
        return model

    monkeypatch.setattr(backbones, "_construct", construct)
    path = tmp_path / "partial.weights.h5"
    path.write_bytes(b"stub")
    with pytest.raises(ValueError, match=r"'.*partial\.weights\.h5' does not fit backbone MobileNet\(alpha=0\.25.*1 layers not loaded"):
        build_backbone("MobileNet", weights=path, image_size=32, alpha=0.25)


def test_missing_weights_path(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"weights file '.*nope\.h5' does not exist"):
        build_backbone("MobileNetV2", weights=tmp_path / "nope.h5", image_size=32)
    with pytest.raises(ValueError, match="is not a file"):
        build_backbone("MobileNetV2", weights=tmp_path, image_size=32)
    with pytest.raises(ValueError, match="weights=3; expected 'imagenet', None or a path"):
        build_backbone("MobileNetV2", weights=3, image_size=32)  # type: ignore[arg-type]


def test_offline_imagenet_names_the_file_keras_wants() -> None:
    # This machine is offline and KERAS_HOME is a fresh temporary folder (conftest), so
    # Keras' real download path fails; the error must say which file to put where.
    wanted = "mobilenet_2_5_128_tf_no_top.h5"
    models_dir = backbones._keras_models_dir()
    if (models_dir / wanted).exists():
        pytest.skip(f"{models_dir / wanted} is cached: nothing to download")
    try:
        build_backbone("MobileNet", weights="imagenet", image_size=128, alpha=0.25)
    except RuntimeError as error:
        message = str(error)
    else:
        pytest.skip("the ImageNet download succeeded: this machine is online")
    assert "\n" not in message
    assert f"cannot download '{wanted}'" in message
    assert str(models_dir) in message and "$KERAS_HOME/models/" in message
    assert "weights=<path" in message


@pytest.fixture
def keras_models_dir():
    """Keras' real cache folder (under the tests' temporary KERAS_HOME); files added are removed."""
    folder = backbones._keras_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    yield folder
    for path in set(folder.iterdir()) - before:
        path.unlink()


def test_unreadable_cached_imagenet_file_is_named(keras_models_dir: pathlib.Path) -> None:
    cached = keras_models_dir / "mobilenet_2_5_192_tf_no_top.h5"
    cached.write_bytes(b"truncated download")
    with pytest.raises(RuntimeError, match=rf"cached ImageNet weights '.*{cached.name}' of MobileNet cannot be loaded"):
        build_backbone("MobileNet", weights="imagenet", image_size=192, alpha=0.25)


@pytest.mark.assets
def test_imagenet_loads_offline_from_the_keras_cache(assets: pathlib.Path, keras_models_dir: pathlib.Path) -> None:
    # Keras names MobileNet files by input size; the 224 file serves any size.
    (keras_models_dir / "mobilenet_2_5_160_tf_no_top.h5").write_bytes((assets / "weights" / MOBILENET_025_FILE).read_bytes())
    from_cache = build_backbone("MobileNet", weights="imagenet", image_size=160, alpha=0.25)
    from_path = build_backbone("MobileNet", weights=assets / "weights" / MOBILENET_025_FILE, image_size=160, alpha=0.25)
    x = _pixels(2, 160)
    np.testing.assert_allclose(np.asarray(from_cache(x)), np.asarray(from_path(x)), atol=1e-6)


@pytest.mark.assets
def test_wrong_architecture_weights_file_from_assets(assets: pathlib.Path) -> None:
    path = assets / "weights" / MOBILENET_025_FILE
    with pytest.raises(ValueError, match=rf"weights file '.*{MOBILENET_025_FILE}' does not fit backbone MobileNetV2") as info:
        build_backbone("MobileNetV2", weights=path, image_size=96)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ real ImageNet features


def _softmax_probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """Validation accuracy of a softmax regression with bias on the *raw* features (NumPy).

    Raw, not standardised: that is what a dense head over the features sees. Random-init
    MobileNetV2 features are ~1e-11 in size, so the bias dominates and the probe is at
    chance; standardised per feature, the same random features would score far higher.
    """
    x_train, x_val = x_train.astype(np.float64), x_val.astype(np.float64)
    n_classes = int(y_train.max()) + 1
    onehot = np.eye(n_classes)[y_train]
    w, b = np.zeros((x_train.shape[1], n_classes)), np.zeros(n_classes)
    for _ in range(300):
        logits = x_train @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= 0.05 * (x_train.T @ (p - onehot) / len(x_train) + 1e-2 * w)
        b -= 0.05 * (p - onehot).mean(0)
    return float(np.mean((x_val @ w + b).argmax(1) == y_val))


@pytest.mark.assets
def test_imagenet_features_separate_rps_far_better_than_random(assets: pathlib.Path) -> None:
    from evoprune_tf.data import load_images

    images = load_images(assets / "datasets" / "rps_28px", image_size=96, max_per_class=75, val_fraction=0.3)
    pretrained = build_backbone("MobileNetV2", weights=assets / "weights" / MOBILENET_V2_FILE, image_size=96)
    random_init = build_backbone("MobileNetV2", weights=None, image_size=96)
    accuracy, scale = {}, {}
    for label, model in (("imagenet", pretrained), ("random", random_init)):
        x_train = np.asarray(model.predict(images.train_images.astype(np.float32), batch_size=64, verbose=0))
        x_val = np.asarray(model.predict(images.val_images.astype(np.float32), batch_size=64, verbose=0))
        assert x_train.shape == (len(images.train_labels), 1280)
        accuracy[label] = _softmax_probe_accuracy(x_train, images.train_labels, x_val, images.val_labels)
        scale[label] = float(np.abs(x_train).max())
    assert accuracy["imagenet"] > 0.7, accuracy
    assert accuracy["random"] < 0.5, accuracy
    assert 0.5 < scale["imagenet"] <= 6.0, scale  # ReLU6 outputs, pooled
    assert scale["random"] < 1e-6, scale
