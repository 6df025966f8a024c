"""TASCNet stage 1's configuration space: what may be replaced, unfrozen and put on top (`SearchSpace`).

A configuration says, from the top of the backbone down, how many *levels* are replaced
by new conv layers (each with its own filter count and kernel size), how many
pretrained levels below are fine-tuned, and the head's Dense layers and dropout (see
`evoprune_tf.tascnet.models`). `SearchSpace` maps integer genomes to configurations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras

from evoprune_tf.nn.cut import cut_points

__all__ = [
    "FILTER_CHOICES",
    "KERNEL_CHOICES",
    "UNITS_CHOICES",
    "DROPOUT_CHOICES",
    "SEARCHABLE",
    "Configuration",
    "SearchSpace",
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


SEARCHABLE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Dense)


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
            if not isinstance(layer, SEARCHABLE):
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
