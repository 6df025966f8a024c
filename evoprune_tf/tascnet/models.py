"""TASCNet candidate networks: configuration space, model building and the SGD recipe.

Stage 1 (after the authors' AutoTune) searches the deeper layers of a pretrained CNN. A
*configuration* says, from the top of the backbone down:

* ``replace``: how many of the top *levels* are removed and replaced by as many new,
  re-initialised conv layers (Conv2D without bias -> BatchNormalization -> ReLU, ``same``
  padding), each with its own filter count (32/64/128/256) and kernel size (1 or 3);
* ``unfreeze``: how many pretrained levels directly below the replaced part are
  fine-tuned (greedy unfreezing from the top down); everything below stays frozen;
* the head: global average pooling, 1-2 Dense+ReLU layers of 64-1024 units, each
  followed by Dropout 0-0.9, then the softmax layer.

A *level* boundary is a layer whose output separates the graph (`evoprune_tf.nn.cut`):
the block cut points of the backbone (default: the last three), or, with explicit
``layers``, the last separator below each named Conv/Dense layer. Level 0 is the
backbone's output; level ``k`` is the ``k``-th boundary from the top.

Because the part below the unfrozen levels is frozen, a candidate is a pair: the frozen
``prefix`` (shared with the backbone, never trained) and the trainable ``model`` from the
prefix's output to the softmax: a flat functional model, so that filter surgery
(`evoprune_tf.nn.surgery`) and FLOPs counting (`evoprune_tf.nn.flops`) apply to it
directly. `PrefixFeatures` computes (and caches) the prefix outputs once per cut, so a
candidate trains on cached activations. "The searched layers" of the reports are the
trainable model's layers.

The configuration space lives in `evoprune_tf.tascnet.search_space` and the SGD recipe in
`evoprune_tf.tascnet.recipe`; their names stay importable from here.

Kept pretrained layers keep their ImageNet weights; their BatchNormalization layers stay
in inference mode (``trainable = False``) because batches of 32 would overwrite the
ImageNet statistics.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import keras
import numpy as np

from evoprune_tf.nn.cut import split_model
from evoprune_tf.tascnet.recipe import TrainRecipe, compile_sgd, evaluate_model, fine_tune
from evoprune_tf.tascnet.search_space import (
    DROPOUT_CHOICES,
    FILTER_CHOICES,
    KERNEL_CHOICES,
    UNITS_CHOICES,
    Configuration,
    SearchSpace,
    make_search_space,
)

__all__ = [
    "DROPOUT_CHOICES",
    "FILTER_CHOICES",
    "KERNEL_CHOICES",
    "UNITS_CHOICES",
    "Candidate",
    "Configuration",
    "PrefixFeatures",
    "SearchSpace",
    "TrainRecipe",
    "build_base",
    "build_candidate",
    "compile_sgd",
    "evaluate_model",
    "export_model",
    "fine_tune",
    "make_search_space",
]


def build_base(
    name: str,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    **options: Any,
) -> keras.Model:
    """A flat Keras Applications backbone without pooling: images -> last feature map.

    Built through `evoprune_tf.backbones.build_backbone` (its weight loading and
    errors); the application inside is re-rooted at the input of its global pooling,
    so the result is a flat functional model (what cutting and surgery need). Its input
    takes *preprocessed* images (`evoprune_tf.backbones.preprocess`).

    Args:
        name: backbone name (``"MobileNetV2"``, ``"ResNet50"``, ``"VGG16"``, ``"DenseNet121"``...).
        weights: ``"imagenet"``, a weights file, or ``None`` (random).
        image_size: input side.
        **options: backbone options (``alpha``...).

    Returns:
        The model (frozen: ``trainable = False``).
    """
    from evoprune_tf.backbones import build_backbone

    wrapper = build_backbone(name, weights=weights, image_size=image_size, **options)
    application = wrapper.layers[-1]
    pooling = application.layers[-1]
    base = keras.Model(application.input, pooling.input, name=application.name)
    base.trainable = False
    return base


@dataclasses.dataclass
class Candidate:
    """A candidate network: frozen prefix + trainable model.

    Attributes:
        prefix: images -> cut activations (frozen, shares the backbone's layers).
        model: cut activations -> class probabilities (flat functional; trained, pruned).
        cut: the prefix's output layer (the key of its cached features).
        configuration: what it was built from.
    """

    prefix: keras.Model
    model: keras.Model
    cut: str
    configuration: Configuration


def build_candidate(
    base: keras.Model,
    configuration: Configuration,
    space: SearchSpace,
    n_classes: int,
    *,
    seed: int = 0,
) -> Candidate:
    """Build the network a configuration describes (see the module docstring).

    Args:
        base: the flat backbone of `build_base`.
        configuration: the configuration (``replace`` + ``unfreeze`` <= ``space.levels``).
        space: the search space the levels come from.
        n_classes: softmax width.
        seed: seeds the new layers' initialisers and dropout.

    Returns:
        The `Candidate`.

    Raises:
        ValueError: a configuration that does not fit the space.
    """
    r, u = configuration.replace, configuration.unfreeze
    if r < 0 or u < 0 or r + u > space.levels or len(configuration.convs) != r:
        raise ValueError(
            f"configuration '{configuration.describe()}' does not fit {space.levels} levels; "
            "expected replace + unfreeze <= levels and one conv per replaced level"
        )
    cut = space.level_layer(r + u)
    if cut == space.top:
        prefix = base
        inputs = keras.Input(shape=tuple(base.output.shape)[1:], name=f"{cut}_cut")
        x = inputs
    else:
        prefix, rest = split_model(base, cut)
        inputs = rest.input
        for layer in rest.layers:
            # split_model copies the frozen flags; unfrozen levels train, BN stays in inference mode.
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        x = inputs if u == 0 else rest.get_layer(space.level_layer(r)).output
    prefix.trainable = False
    for i, (filters, kernel) in enumerate(configuration.convs, start=1):
        x = keras.layers.Conv2D(
            int(filters), int(kernel), padding="same", use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=seed * 100 + i), name=f"tascnet_conv{i}",
        )(x)
        x = keras.layers.BatchNormalization(name=f"tascnet_bn{i}")(x)
        x = keras.layers.ReLU(name=f"tascnet_relu{i}")(x)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="tascnet_pool")(x)
    elif len(x.shape) == 3:
        x = keras.layers.GlobalAveragePooling1D(name="tascnet_pool")(x)
    for j, (units, dropout) in enumerate(configuration.dense, start=1):
        x = keras.layers.Dense(
            int(units), activation="relu",
            kernel_initializer=keras.initializers.HeNormal(seed=seed * 100 + 50 + j), name=f"tascnet_dense{j}",
        )(x)
        x = keras.layers.Dropout(float(dropout), seed=seed * 100 + 70 + j, name=f"tascnet_dropout{j}")(x)
    outputs = keras.layers.Dense(
        int(n_classes), activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 100 + 99), name="predictions",
    )(x)
    model = keras.Model(inputs, outputs, name="tascnet_candidate")
    return Candidate(prefix, model, cut, configuration)


class PrefixFeatures:
    """Cached outputs of the frozen prefixes, per cut layer and split.

    Args:
        images: ``{"train": uint8 images, "val": ..., "test": ...}`` (raw 0..255 RGB).
        preprocess: the backbone's ``preprocess_input`` (applied to a float copy).
        batch_size: prediction batch size.
    """

    def __init__(self, images: Mapping[str, np.ndarray], preprocess: Callable[..., Any], *, batch_size: int = 64) -> None:
        self.images = dict(images)
        self.preprocess = preprocess
        self.batch_size = int(batch_size)
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def get(self, candidate: Candidate) -> dict[str, np.ndarray]:
        """``{split: prefix outputs}`` of a candidate's cut (computed once per cut).

        Args:
            candidate: the candidate whose ``prefix`` and ``cut`` are used.

        Returns:
            Float32 activations per split.
        """
        if candidate.cut not in self._cache:
            out = {}
            for split, images in self.images.items():
                if len(images) == 0:
                    out[split] = np.zeros((0, *candidate.prefix.output.shape[1:]), dtype=np.float32)
                    continue
                x = self.preprocess(np.array(images, dtype=np.float32))
                out[split] = np.asarray(candidate.prefix.predict(x, batch_size=self.batch_size, verbose=0), dtype=np.float32)
            self._cache[candidate.cut] = out
        return self._cache[candidate.cut]


def export_model(
    prefix: keras.Model | None,
    model: keras.Model,
    *,
    preprocess_module: str | None = None,
    name: str = "tascnet",
) -> keras.Model:
    """One deployable model: [preprocessing ->] [frozen prefix ->] trained model.

    Args:
        prefix: the frozen prefix, or None (the model takes the raw input, e.g. text).
        model: the trained (pruned) model.
        preprocess_module: ``keras.applications`` module whose ``preprocess_input`` goes
            in front (images in 0..255), or None.
        name: model name.

    Returns:
        The model (nested prefix and model; save it with ``model.save("x.keras")``).
    """
    if prefix is None:
        return model
    inputs = keras.Input(shape=tuple(prefix.input.shape)[1:], name="image")
    x = inputs
    if preprocess_module:
        from evoprune_tf.backbones import BackbonePreprocessing

        x = BackbonePreprocessing(preprocess_module, name="preprocess")(x)
    x = prefix(x, training=False)
    return keras.Model(inputs, model(x), name=name)
