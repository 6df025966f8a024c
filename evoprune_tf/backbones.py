"""Frozen Keras Applications backbones that turn raw RGB images into pooled features.

`build_backbone` returns a small functional model::

    image (0..255 float RGB) -> BackbonePreprocessing (the application's own
    preprocess_input) -> keras.applications.<Name>(include_top=False, pooling="avg")
    called with training=False -> (batch, feature_dim)

with the application frozen (``trainable = False``). Because preprocessing lives inside
the model, callers feed raw pixels and a saved model carries its preprocessing along.

Backbone names are case-insensitive and ignore ``_`` and ``-``: ``"mobilenet_v2"``,
``"MobileNetV2"`` and ``"mobilenetv2"`` are the same backbone. The canonical form is the
Keras constructor name (``"MobileNetV2"``, ``"ResNet50"``, ``"EfficientNetB0"``...);
`canonical_name` returns it.

Weights are ``"imagenet"`` (Keras' normal download into ``$KERAS_HOME/models/``, default
``~/.keras/models/``), a path to a weights file (``.h5`` or ``.weights.h5``), or ``None``
(random initialisation).

Importing this module is cheap: Keras is imported inside the functions that need it.
Before ``keras.models.load_model`` of a saved model that contains a backbone, import
`BackbonePreprocessing` from here (that registers the layer with Keras).
"""

from __future__ import annotations

import dataclasses
import operator
import os
import pathlib
import re
import socket
import urllib.error
import warnings
from typing import Any, Callable, Mapping

__all__ = [
    "BACKBONES",
    "BackboneInfo",
    "BackbonePreprocessing",
    "backbone_info",
    "build_backbone",
    "canonical_name",
    "canonical_options",
    "check_image_size",
    "feature_dim",
    "imagenet_weights_filename",
    "known_backbones",
    "preprocess",
]

# Seconds Keras may wait on the network for an "imagenet" download before giving up;
# Keras itself sets no timeout and can hang forever on a network that drops packets.
_DOWNLOAD_TIMEOUT_S = 60.0

# Warnings passed on from load_weights, deduplicated like ordinary ones.
_REEMITTED: dict[Any, Any] = {}


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """What we need to know about one Keras Applications backbone.

    Attributes:
        name: canonical name (= the Keras constructor name, e.g. ``"MobileNetV2"``).
        constructor_name: attribute of ``keras.applications`` that builds it.
        preprocess_module: ``keras.applications.<module>`` whose ``preprocess_input``
            the backbone expects.
        default_size: input side the ImageNet weights were trained at.
        feature_dim: width of the pooled output with default options.
        min_size: smallest input side Keras accepts.
        options: extra constructor keyword arguments accepted, with their defaults
            (e.g. ``(("alpha", 1.0),)`` for MobileNetV2).
        weights_stem: the ImageNet weights file name, with ``{rows}`` / ``{alpha}``
            placeholders where Keras picks it from the input size / width multiplier.
    """

    name: str
    constructor_name: str
    preprocess_module: str
    default_size: int
    feature_dim: int
    min_size: int = 32
    options: tuple[tuple[str, Any], ...] = ()
    weights_stem: str = ""

    @property
    def default_options(self) -> dict[str, Any]:
        """The accepted extra constructor arguments and their defaults."""
        return dict(self.options)


def _fixed(name: str, module: str, dim: int, stem: str, *, size: int = 224, min_size: int = 32) -> BackboneInfo:
    return BackboneInfo(name, name, module, size, dim, min_size, (), stem)


_EFFICIENTNET = (  # (variant, default size, pooled width)
    ("B0", 224, 1280), ("B1", 240, 1280), ("B2", 260, 1408), ("B3", 300, 1536),
    ("B4", 380, 1792), ("B5", 456, 2048), ("B6", 528, 2304), ("B7", 600, 2560),
)

#: Supported backbones by canonical name.
BACKBONES: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo(
            "MobileNet", "MobileNet", "mobilenet", 224, 1024, 32,
            (("alpha", 1.0), ("depth_multiplier", 1)), "mobilenet_{alpha}_{rows}_tf_no_top.h5",
        ),
        BackboneInfo(
            "MobileNetV2", "MobileNetV2", "mobilenet_v2", 224, 1280, 32, (("alpha", 1.0),),
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5",
        ),
        _fixed("ResNet50", "resnet50", 2048, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("ResNet101", "resnet", 2048, "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("ResNet152", "resnet", 2048, "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("ResNet50V2", "resnet_v2", 2048, "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("DenseNet121", "densenet", 1024, "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("DenseNet169", "densenet", 1664, "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("DenseNet201", "densenet", 1920, "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("VGG16", "vgg16", 512, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed("VGG19", "vgg19", 512, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _fixed(
            "InceptionV3", "inception_v3", 2048, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            size=299, min_size=75,
        ),
        _fixed(
            "Xception", "xception", 2048, "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            size=299, min_size=71,
        ),
        *(
            _fixed(f"EfficientNet{v}", "efficientnet", dim, f"efficientnet{v.lower()}_notop.h5", size=size)
            for v, size, dim in _EFFICIENTNET
        ),
    )
}

_BY_KEY = {re.sub(r"[_\-\s]", "", name).lower(): name for name in BACKBONES}


def known_backbones() -> tuple[str, ...]:
    """Canonical names of the supported backbones, sorted."""
    return tuple(sorted(BACKBONES))


def canonical_name(name: str) -> str:
    """The canonical (Keras constructor) name of a backbone.

    Args:
        name: any spelling, case-insensitive, ``_`` / ``-`` ignored (``"mobilenet_v2"``).

    Raises:
        ValueError: unknown backbone (the message lists the known ones).
    """
    key = re.sub(r"[_\-\s]", "", str(name)).lower()
    if key not in _BY_KEY:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(known_backbones())}")
    return _BY_KEY[key]


def backbone_info(name: str) -> BackboneInfo:
    """The `BackboneInfo` of a backbone (any spelling of its name)."""
    return BACKBONES[canonical_name(name)]


def canonical_options(name: str, **kwargs: Any) -> dict[str, Any]:
    """Validate extra constructor arguments and fill in the defaults.

    Numbers are normalised (``alpha=1`` and ``alpha=1.0`` are the same), so the result
    identifies the architecture and can go into a cache key.

    Raises:
        ValueError: an option the backbone does not take.
    """
    info = backbone_info(name)
    defaults = info.default_options
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        accepted = ", ".join(defaults) or "none"
        raise ValueError(f"backbone {info.name} takes no option(s) {unknown}; accepted options: {accepted}")
    options = {**defaults, **kwargs}
    for key, default in defaults.items():
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{info.name} option {key}={value!r}; expected a positive number")
        options[key] = float(value) if isinstance(default, float) else int(value)
    return options


def _make_divisible(value: float, divisor: int = 8) -> int:
    # Keras' channel rounding for MobileNetV2 (round to a multiple of 8, lose < 10%).
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def feature_dim(name: str, **kwargs: Any) -> int:
    """Width of the backbone's pooled features for the given constructor options.

    MobileNet's width scales with ``alpha`` (``int(1024 * alpha)``); MobileNetV2 keeps
    1280 for ``alpha <= 1`` and scales above.
    """
    info = backbone_info(name)
    options = canonical_options(info.name, **kwargs)
    if info.name == "MobileNet":
        return int(1024 * options["alpha"])
    if info.name == "MobileNetV2":
        alpha = options["alpha"]
        return _make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    return info.feature_dim


def imagenet_weights_filename(name: str, image_size: int | None = None, **kwargs: Any) -> str:
    """The file name Keras looks for in ``$KERAS_HOME/models/`` for ``weights="imagenet"``.

    MobileNet and MobileNetV2 have one file per input size (Keras falls back to the
    224 file for other sizes) and width multiplier.
    """
    info = backbone_info(name)
    options = canonical_options(info.name, **kwargs)
    size = image_size or info.default_size
    if info.name == "MobileNet":
        rows = size if size in (128, 160, 192, 224) else 224
        alpha = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}.get(options["alpha"], str(options["alpha"]))
        return info.weights_stem.format(alpha=alpha, rows=rows)
    if info.name == "MobileNetV2":
        rows = size if size in (96, 128, 160, 192, 224) else 224
        return info.weights_stem.format(alpha=float(options["alpha"]), rows=rows)
    return info.weights_stem


def preprocess(name: str) -> Callable[..., Any]:
    """The backbone's own ``keras.applications.<module>.preprocess_input``.

    `build_backbone` already applies it inside the model; use this only to feed the bare
    application. Note that Keras modifies float NumPy arrays in place.
    """
    import keras

    return getattr(keras.applications, backbone_info(name).preprocess_module).preprocess_input


def _keras_models_dir() -> pathlib.Path:
    try:  # where Keras really looks (KERAS_HOME is read when Keras is imported)
        from keras.src.backend.config import keras_home

        home = keras_home()
    except Exception:  # noqa: BLE001 - private API: fall back to the documented rule
        home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    return pathlib.Path(os.path.expanduser(home)) / "models"


def _first_line(error: BaseException | Warning | str, limit: int = 300) -> str:
    """A message squeezed onto one line (Keras often puts the useful part on line 2)."""
    line = " ".join(str(error).split()) or type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_image_size(name: str, image_size: int | None) -> int:
    """Validate an input size for a backbone (``None``: its default size).

    Raises:
        ValueError: not an integer, or below the backbone's ``min_size``.
    """
    return _check_image_size(backbone_info(name), image_size)


def _check_image_size(info: BackboneInfo, image_size: Any) -> int:
    if image_size is None:
        return info.default_size
    try:
        size = None if isinstance(image_size, bool) else operator.index(image_size)
    except TypeError:
        size = None
    if size is None or size < info.min_size:
        raise ValueError(
            f"image_size={image_size!r} for {info.name}; "
            f"expected an integer >= {info.min_size} (default {info.default_size})"
        )
    return size


def _check_weights(weights: Any) -> str | pathlib.Path | None:
    if weights is None or weights == "imagenet":
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights={weights!r}; expected 'imagenet', None or a path to a weights file")
    path = pathlib.Path(weights).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"weights file '{path}' does not exist; expected 'imagenet', None or a path to a weights file"
        )
    if not path.is_file():
        raise ValueError(f"weights '{path}' is not a file; expected a .h5 or .weights.h5 weights file")
    return path


def _construct(info: BackboneInfo, weights: str | None, size: int, options: Mapping[str, Any]) -> Any:
    import keras

    constructor = getattr(keras.applications, info.constructor_name)
    return constructor(
        include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg", **options
    )


def _build_imagenet(info: BackboneInfo, size: int, options: Mapping[str, Any]) -> Any:
    previous_timeout = socket.getdefaulttimeout()
    if previous_timeout is None:
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        return _construct(info, "imagenet", size, options)
    except Exception as error:  # noqa: BLE001 - Keras raises a bare Exception for fetch failures
        message = str(error)
        if "URL fetch failure" not in message and not isinstance(error, (urllib.error.URLError, TimeoutError)):
            cached = _keras_models_dir() / imagenet_weights_filename(info.name, size, **options)
            if cached.exists():  # downloaded earlier but unreadable now (truncated, another file...)
                raise RuntimeError(
                    f"cached ImageNet weights '{cached}' of {info.name} cannot be loaded "
                    f"({type(error).__name__}: {_first_line(error, 200)}); delete the file to download it again "
                    "or pass weights=<path to a good copy>"
                ) from None
            raise
        # Keras' message is "URL fetch failure on <url>: <errno> -- <reason>"; the URL
        # ends in the very file name Keras looks for in its cache.
        match = re.search(r"(https?://\S+?\.h5):?\s*(.*)", _first_line(error, 1000))
        if match:
            file_name, reason = match.group(1).rsplit("/", 1)[-1], match.group(2) or type(error).__name__
        else:
            file_name, reason = imagenet_weights_filename(info.name, size, **options), _first_line(error, 160)
        raise RuntimeError(
            f"cannot download '{file_name}' (ImageNet weights of {info.name}; {reason}): put that file in "
            f"{_keras_models_dir()}/ ($KERAS_HOME/models/, default ~/.keras/models/) "
            "or pass weights=<path to the file>"
        ) from None
    finally:
        if previous_timeout is None:
            socket.setdefaulttimeout(None)


def _build_from_file(info: BackboneInfo, path: pathlib.Path, size: int, options: Mapping[str, Any]) -> Any:
    if info.name.startswith("EfficientNet"):
        warnings.warn(
            f"{info.name} with weights='{path}': Keras adds its ImageNet input rescaling only for "
            "weights='imagenet'; for the ImageNet file put it in $KERAS_HOME/models/ and use weights='imagenet'",
            stacklevel=3,
        )
    # Build first, then load: errors from the constructor are about options, errors
    # from load_weights are about the file.
    base = _construct(info, None, size, options)
    described = info.name + (f"({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base.load_weights(str(path))
        except Exception as error:  # noqa: BLE001 - Keras raises ValueError, OSError, KeyError...
            raise ValueError(
                f"weights file '{path}' does not fit backbone {described} "
                f"({type(error).__name__}: {_first_line(error)}); "
                "expected a weights file of this architecture"
            ) from None
    # Keras only warns when a .weights.h5 file lacks some layers and leaves those
    # layers randomly initialised: that is a mismatch too, never a usable backbone.
    partial = [w for w in caught if re.search(r"freshly-initialized|[Ss]kipping|mismatch", str(w.message))]
    if partial:
        raise ValueError(
            f"weights file '{path}' does not fit backbone {described} ({len(partial)} layers not loaded, e.g. "
            f"{_first_line(partial[0].message, 160)}); expected a weights file of this architecture"
        )
    for warning in caught:  # pass the others on (Keras' NumPy-2 deprecation noise excepted)
        if not issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno, registry=_REEMITTED
            )
    return base


def build_backbone(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = "imagenet",
    image_size: int | None = None,
    **kwargs: Any,
) -> Any:
    """Build a frozen feature extractor: raw RGB images -> pooled backbone features.

    Args:
        name: backbone name, any spelling (see `canonical_name`, `known_backbones`).
        weights: ``"imagenet"`` (Keras download / cache), a path to a weights file of
            this architecture (``.h5`` or ``.weights.h5``), or ``None`` (random init).
        image_size: input side in pixels; defaults to the backbone's ``default_size``.
            The ImageNet weights work at other sizes (the pooled features adapt).
        **kwargs: extra constructor options the backbone accepts (``alpha`` for
            MobileNet / MobileNetV2, ``depth_multiplier`` for MobileNet).

    Returns:
        A ``keras.Model`` mapping ``(batch, size, size, 3)`` float pixels in 0..255 to
        ``(batch, feature_dim)`` features, with preprocessing inside and the backbone
        frozen (``trainable = False``, called with ``training=False``).

    Raises:
        ValueError: unknown backbone or option, bad image size, or a weights file of
            another architecture.
        FileNotFoundError: the weights path does not exist.
        RuntimeError: ``"imagenet"`` weights could not be downloaded (the message names
            the file to place in ``$KERAS_HOME/models/``).
    """
    info = backbone_info(name)
    options = canonical_options(info.name, **kwargs)
    size = _check_image_size(info, image_size)
    checked = _check_weights(weights)

    import keras

    if checked == "imagenet":
        base = _build_imagenet(info, size, options)
    elif checked is None:
        base = _construct(info, None, size, options)
    else:
        base = _build_from_file(info, checked, size, options)
    base.trainable = False

    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = _preprocessing_layer_class()(info.preprocess_module, name="preprocess")(inputs)
    outputs = base(x, training=False)
    return keras.Model(inputs, outputs, name=f"{info.name.lower()}_features")


# ------------------------------------------------------- the preprocessing layer (lazy)

_LAYER_CLASS: type | None = None


def _preprocessing_layer_class() -> type:
    """Define and register `BackbonePreprocessing` on first use (imports Keras)."""
    global _LAYER_CLASS
    if _LAYER_CLASS is not None:
        return _LAYER_CLASS
    import keras

    @keras.saving.register_keras_serializable(package="evoprune_tf")
    class BackbonePreprocessing(keras.layers.Layer):
        """Applies ``keras.applications.<module>.preprocess_input`` inside a model.

        A registered layer rather than a ``Lambda`` so that models save and load
        without ``safe_mode=False``.

        Args:
            preprocess_module: the ``keras.applications`` module, e.g. ``"mobilenet_v2"``.

        Input shape:
            ``(batch, height, width, 3)`` RGB pixels in 0..255 (any float or int dtype).

        Output shape:
            Same shape, float, as the application expects it.
        """

        def __init__(self, preprocess_module: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if not hasattr(getattr(keras.applications, preprocess_module, None), "preprocess_input"):
                raise ValueError(
                    f"preprocess_module={preprocess_module!r}; "
                    "expected a keras.applications module with preprocess_input"
                )
            self.preprocess_module = preprocess_module
            self._preprocess_input = getattr(keras.applications, preprocess_module).preprocess_input

        def call(self, inputs: Any) -> Any:
            return self._preprocess_input(keras.ops.cast(inputs, self.compute_dtype))

        def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "preprocess_module": self.preprocess_module}

    BackbonePreprocessing.__module__ = __name__
    BackbonePreprocessing.__qualname__ = "BackbonePreprocessing"
    _LAYER_CLASS = BackbonePreprocessing
    return BackbonePreprocessing


def __getattr__(attribute: str) -> Any:
    # PEP 562: `BackbonePreprocessing` needs Keras, so it is created on first access.
    if attribute == "BackbonePreprocessing":
        return _preprocessing_layer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")

