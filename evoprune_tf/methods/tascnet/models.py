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

Kept pretrained layers keep their ImageNet weights; their BatchNormalization layers stay
in inference mode (``trainable = False``) because batches of 32 would overwrite the
ImageNet statistics.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from evoprune_tf.nn.cut import cut_points, split_model

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
    "evaluate_model",
    "export_model",
    "fine_tune",
    "make_search_space",
]

#: Filter counts of a replaced conv layer (AutoTune).
FILTER_CHOICES = (32, 64, 128, 256)
#: Kernel sizes of a replaced conv layer.
KERNEL_CHOICES = (1, 3)
#: Units of a head Dense layer (64-1024, powers of two).
UNITS_CHOICES = (64, 128, 256, 512, 1024)
#: Dropout after each head Dense layer (0-0.9).
DROPOUT_CHOICES = tuple(round(0.1 * i, 1) for i in range(10))

_SEARCHABLE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Dense)


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One stage-1 configuration (see the module docstring).

    Attributes:
        replace: top levels replaced by new conv layers.
        unfreeze: pretrained levels below them that are fine-tuned.
        convs: ``(filters, kernel_size)`` of each new conv layer, bottom-up (``replace`` of them).
        dense: ``(units, dropout)`` of each head Dense layer (1 or 2).
    """

    replace: int = 0
    unfreeze: int = 0
    convs: tuple[tuple[int, int], ...] = ()
    dense: tuple[tuple[int, float], ...] = ((256, 0.5),)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (lists), the inverse of `from_dict`."""
        return {
            "replace": self.replace,
            "unfreeze": self.unfreeze,
            "convs": [list(c) for c in self.convs],
            "dense": [list(d) for d in self.dense],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Configuration":
        """A configuration from `to_dict`'s output (e.g. a TOML table).

        Args:
            raw: ``{"replace": int, "unfreeze": int, "convs": [[f, k], ...], "dense": [[u, d], ...]}``.

        Returns:
            The configuration.

        Raises:
            ValueError: an unknown key or a malformed value.
        """
        unknown = sorted(set(raw) - {"replace", "unfreeze", "convs", "dense"})
        if unknown:
            raise ValueError(f"configuration keys {unknown} are unknown; expected replace, unfreeze, convs, dense")
        try:
            convs = tuple((int(f), int(k)) for f, k in raw.get("convs", ()))
            dense = tuple((int(u), float(d)) for u, d in raw.get("dense", ((256, 0.5),)))
            config = cls(int(raw.get("replace", len(convs))), int(raw.get("unfreeze", 0)), convs, dense)
        except (TypeError, ValueError):
            raise ValueError(
                f"configuration {dict(raw)!r} is malformed; expected convs [[filters, kernel], ...] "
                "and dense [[units, dropout], ...]"
            ) from None
        if config.replace != len(config.convs) or config.replace < 0 or config.unfreeze < 0:
            raise ValueError(f"configuration replace={config.replace} with {len(config.convs)} convs; expected one conv per replaced level")
        if not 1 <= len(config.dense) <= 2 or any(u < 1 or not 0.0 <= d < 1.0 for u, d in config.dense):
            raise ValueError(f"configuration dense={raw.get('dense')!r}; expected 1-2 [units >= 1, dropout in [0, 1)]")
        return config

    def describe(self) -> str:
        """One line, e.g. ``replace 1 [256x3], unfreeze 1, head [512 d0.3]``."""
        convs = ", ".join(f"{f}x{k}" for f, k in self.convs) or "-"
        head = ", ".join(f"{u} d{d:g}" for u, d in self.dense)
        return f"replace {self.replace} [{convs}], unfreeze {self.unfreeze}, head [{head}]"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The integer genome of stage 1 over one backbone.

    Genes, in order: ``replace`` (0..levels), ``unfreeze`` (0..levels), then per possible
    new conv layer a filter index and a kernel index, then the number of Dense layers
    (index 0 -> 1 layer, 1 -> 2 layers), then per Dense layer a units and a dropout
    index. Genes of unused layers are carried but ignored (several genomes decode to one
    configuration; the search caches fitness by configuration).

    Attributes:
        boundaries: the level cut layers, bottom-up (``boundaries[-1]`` is level 1).
        top: the backbone's output layer (level 0).
        filter_choices: filter counts of new conv layers.
        kernel_choices: kernel sizes of new conv layers.
        units_choices: head Dense units.
        dropout_choices: head dropout rates.
        max_dense: most head Dense layers (1 or 2).
    """

    boundaries: tuple[str, ...]
    top: str
    filter_choices: tuple[int, ...] = FILTER_CHOICES
    kernel_choices: tuple[int, ...] = KERNEL_CHOICES
    units_choices: tuple[int, ...] = UNITS_CHOICES
    dropout_choices: tuple[float, ...] = DROPOUT_CHOICES
    max_dense: int = 2

    @property
    def levels(self) -> int:
        """Number of levels that can be replaced or unfrozen."""
        return len(self.boundaries)

    def level_layer(self, level: int) -> str:
        """The layer whose output is level ``level`` (0 = the backbone output).

        Args:
            level: in ``[0, levels]``.

        Returns:
            The layer name.
        """
        return self.top if level == 0 else self.boundaries[-level]

    def choices(self) -> list[int]:
        """Per-gene choice counts (what the integer operators take)."""
        counts = [self.levels + 1, self.levels + 1]
        counts += [len(self.filter_choices), len(self.kernel_choices)] * self.levels
        counts += [self.max_dense]
        counts += [len(self.units_choices), len(self.dropout_choices)] * self.max_dense
        return counts

    def gene_names(self) -> list[str]:
        """A name per gene, for logs and CSV columns."""
        names = ["replace", "unfreeze"]
        for i in range(self.levels):
            names += [f"conv{i + 1}_filters", f"conv{i + 1}_kernel"]
        names.append("n_dense")
        for j in range(self.max_dense):
            names += [f"dense{j + 1}_units", f"dense{j + 1}_dropout"]
        return names

    def decode(self, genome: Sequence[int]) -> Configuration:
        """The configuration a genome stands for.

        Args:
            genome: choice indices, one per gene (see `choices`).

        Returns:
            The configuration (``unfreeze`` clipped so that ``replace + unfreeze <= levels``).

        Raises:
            ValueError: a wrong length or an index outside its gene's range.
        """
        genes = [int(g) for g in genome]
        counts = self.choices()
        if len(genes) != len(counts) or any(not 0 <= g < c for g, c in zip(genes, counts)):
            raise ValueError(f"genome {genes} does not fit the search space; expected indices below {counts}")
        replace = genes[0]
        unfreeze = min(genes[1], self.levels - replace)
        convs = tuple(
            (self.filter_choices[genes[2 + 2 * i]], self.kernel_choices[genes[3 + 2 * i]]) for i in range(replace)
        )
        head = 2 + 2 * self.levels
        n_dense = genes[head] + 1
        dense = tuple(
            (self.units_choices[genes[head + 1 + 2 * j]], float(self.dropout_choices[genes[head + 2 + 2 * j]]))
            for j in range(n_dense)
        )
        return Configuration(replace, unfreeze, convs, dense)


def make_search_space(
    base: keras.Model,
    *,
    layers: Sequence[str] | None = None,
    levels: int = 3,
    max_dense: int = 2,
) -> SearchSpace:
    """The stage-1 search space of a backbone.

    Args:
        base: the flat backbone (see `build_base`): input image -> last feature map.
        layers: names of the Conv/Dense layers whose replacement/unfreezing is searched;
            each gives the level boundary "the last separating layer below it" (layers
            sharing a boundary share a level). ``None``: the last ``levels`` block cut
            points of ``base``.
        levels: number of levels without ``layers``.
        max_dense: most head Dense layers (1 or 2).

    Returns:
        The `SearchSpace`.

    Raises:
        ValueError: an unknown layer, a layer that is not Conv1D/Conv2D/Dense, a layer
            with no separating layer below it, or too few cut points.
    """
    if max_dense not in (1, 2):
        raise ValueError(f"max_dense={max_dense!r}; expected 1 or 2 head Dense layers")
    names = [layer.name for layer in base.layers]
    position = {name: i for i, name in enumerate(names)}
    separators = cut_points(base, granularity="layer")
    if layers:
        found = set()
        for name in layers:
            if name not in position:
                raise ValueError(f"layer {name!r} of the configuration space is not in model '{base.name}'; expected a layer name of it")
            layer = base.get_layer(name)
            if not isinstance(layer, _SEARCHABLE):
                raise ValueError(
                    f"layer {name!r} ({type(layer).__name__}) of the configuration space is not a conv or dense "
                    "layer; expected a Conv1D, Conv2D or Dense layer"
                )
            below = [s for s in separators if position[s] < position[name]]
            if not below:
                raise ValueError(f"layer {name!r} has no separating layer below it; expected a layer above the first cut point")
            found.add(below[-1])
        boundaries = sorted(found, key=position.__getitem__)
    else:
        if isinstance(levels, bool) or int(levels) != levels or levels < 1:
            raise ValueError(f"levels={levels!r}; expected a positive integer")
        blocks = cut_points(base, granularity="block")
        if len(blocks) < levels:
            raise ValueError(f"model '{base.name}' has {len(blocks)} block cut points; expected at least levels={levels}")
        boundaries = blocks[-int(levels):]
    return SearchSpace(tuple(boundaries), names[-1], max_dense=max_dense)


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


@dataclasses.dataclass(frozen=True)
class TrainRecipe:
    """TASCNet's SGD recipe.

    Attributes:
        lr: initial learning rate (TASCNet: 1e-3).
        momentum: SGD momentum (0.9, Nesterov).
        halve_every: epochs between learning-rate halvings (20).
        batch_size: mini-batch size (32).
    """

    lr: float = 1e-3
    momentum: float = 0.9
    halve_every: int = 20
    batch_size: int = 32

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of a (0-based, running) epoch index.

        Args:
            epoch: epochs trained so far.

        Returns:
            ``lr * 0.5 ** (epoch // halve_every)``.
        """
        return float(self.lr * 0.5 ** (int(epoch) // max(1, int(self.halve_every))))


def compile_sgd(model: keras.Model, recipe: TrainRecipe) -> None:
    """Compile with SGD-Nesterov, sparse cross-entropy and accuracy.

    Args:
        model: the model (or a `PairSimilarityModel` wrapper).
        recipe: the recipe (its lr is replaced each epoch by the schedule).
    """
    optimizer = keras.optimizers.SGD(learning_rate=recipe.lr, momentum=recipe.momentum, nesterov=True)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fine_tune(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    recipe: TrainRecipe,
    epoch_offset: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    compile_model: bool = True,
) -> keras.callbacks.History:
    """Train with the recipe, the schedule following a running epoch count.

    Args:
        model: the model to train (compiled here unless ``compile_model`` is False).
        train: ``(x, y)``.
        val: ``(x, y)`` validation data shown in the history, or None.
        epochs: epochs of this call.
        recipe: the `TrainRecipe`.
        epoch_offset: epochs already trained in this run (the halving counts them).
        callbacks: extra Keras callbacks.
        compile_model: compile with `compile_sgd` first.

    Returns:
        Keras' ``History``.
    """
    if compile_model:
        compile_sgd(model, recipe)
    schedule = keras.callbacks.LearningRateScheduler(recipe.learning_rate)
    return model.fit(
        train[0], train[1], validation_data=val if val is not None and len(val[1]) else None,
        epochs=int(epoch_offset) + int(epochs), initial_epoch=int(epoch_offset),
        batch_size=recipe.batch_size, shuffle=True, verbose=0, callbacks=[schedule, *callbacks],
    )


def evaluate_model(model: keras.Model, data: tuple[np.ndarray, np.ndarray], *, batch_size: int = 256) -> tuple[float, float]:
    """Cross-entropy and accuracy of a model on one split (no compile needed).

    Args:
        model: a model producing class probabilities.
        data: ``(x, y)`` with integer labels.
        batch_size: prediction batch size.

    Returns:
        ``(loss, accuracy)``; ``(nan, nan)`` for an empty split.
    """
    x, y = data
    if len(y) == 0:
        return math.nan, math.nan
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))
    return loss, float(np.mean(np.argmax(probs, axis=1) == y))


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
