"""Genome encodings: a binary genome <-> which parts of a dense head are active.

A head is ``features -> hidden[0] -> ... -> hidden[-1] -> classes``. Every layer
(hidden and output) has a kernel; an encoding decides, from a 0/1 genome, which
input features, which hidden neurons and (for connection pruning) which single
connections of one layer are kept. `HeadMasks` is the decoded form; it turns into
per-layer kernel masks for `MaskedDense` and into index sets for the fast trainer.

The three encodings of EvoPruneDeepTL:

* `FeatureSelection`: one bit per backbone feature (prunes the inputs of the first layer).
* `NeuronPruning`: one bit per neuron of each pruned hidden layer; a pruned neuron
  loses all its connections.
* `ConnectionPruning`: one bit per connection (kernel entry) of one chosen layer.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Sequence

import numpy as np

__all__ = [
    "HeadSpec",
    "HeadMasks",
    "Encoding",
    "FeatureSelection",
    "NeuronPruning",
    "ConnectionPruning",
    "ENCODINGS",
    "make_encoding",
    "genome_key",
    "pack_genome",
    "unpack_genome",
    "binary_genome",
]


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """Shape of a dense head over backbone features.

    Attributes:
        n_features: width of the backbone's pooled features (head input).
        n_classes: number of output classes (softmax).
        hidden: units of each hidden layer; the reference uses ``(512,)`` or ``(512, 512)``.
        use_bias: whether hidden layers have a bias (the reference sparse layers have none);
            the output layer always has one.
    """

    n_features: int
    n_classes: int
    hidden: tuple[int, ...] = (512,)
    use_bias: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.n_features < 1:
            raise ValueError(f"n_features={self.n_features}; expected a positive integer")
        if self.n_classes < 2:
            raise ValueError(f"n_classes={self.n_classes}; expected at least 2")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden={self.hidden}; expected positive layer widths")

    @property
    def widths(self) -> tuple[int, ...]:
        """Units at every boundary: ``(n_features, *hidden, n_classes)``."""
        return (self.n_features, *self.hidden, self.n_classes)

    @property
    def n_layers(self) -> int:
        """Number of kernels (hidden layers + output layer)."""
        return len(self.hidden) + 1

    def n_parameters(self) -> int:
        """Parameters of the full, unpruned head."""
        return self.all_active().active_parameters(self)

    def all_active(self) -> "HeadMasks":
        """The unpruned head."""
        return HeadMasks(units=tuple(np.ones(w, dtype=bool) for w in self.widths))


@dataclasses.dataclass(frozen=True)
class HeadMasks:
    """Which units and connections of a head are active.

    Attributes:
        units: one boolean vector per boundary of `HeadSpec.widths`; ``units[0]`` are the
            input features, ``units[-1]`` the classes (always all active).
        connections: optional ``{layer: (in, out) bool}`` connection masks, applied on top
            of the unit masks.
    """

    units: tuple[np.ndarray, ...]
    connections: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

    def kernel_masks(self) -> list[np.ndarray]:
        """Per-layer float32 kernel masks ``(in, out)``: 1 keeps a connection, 0 prunes it."""
        masks = []
        for layer in range(len(self.units) - 1):
            mask = np.outer(self.units[layer], self.units[layer + 1]).astype(np.float32)
            if layer in self.connections:
                mask *= self.connections[layer]
            masks.append(mask)
        return masks

    def active_parameters(self, spec: HeadSpec) -> int:
        """Kernel entries and biases that survive pruning (what a compact model holds)."""
        total = 0
        for layer, mask in enumerate(self.kernel_masks()):
            total += int(mask.sum())
            is_output = layer == len(self.units) - 2
            if is_output or spec.use_bias:
                total += int(self.units[layer + 1].sum())
        return total

    def active_units(self) -> int:
        """Active input features plus active hidden neurons."""
        return int(sum(u.sum() for u in self.units[:-1]))


class Encoding(abc.ABC):
    """Maps a 0/1 genome of fixed length to `HeadMasks` for a given `HeadSpec`."""

    name: str = "encoding"

    def __init__(self, spec: HeadSpec) -> None:
        self.spec = spec

    @property
    @abc.abstractmethod
    def genome_length(self) -> int:
        """Number of genes."""

    @abc.abstractmethod
    def _decode(self, genes: np.ndarray) -> HeadMasks:
        """Decode a validated boolean genome."""

    def validate(self, genome: Sequence[int] | np.ndarray) -> np.ndarray:
        """Check length and values; return the genome as a boolean array.

        Raises:
            ValueError: the genome has the wrong length or values other than 0 and 1.
        """
        return binary_genome(genome, self.genome_length, self.describe())

    def decode(self, genome: Sequence[int] | np.ndarray) -> HeadMasks:
        """Decode a genome into head masks (validated)."""
        return self._decode(self.validate(genome))

    def kernel_masks(self, genome: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """Per-layer kernel masks of a genome (for `MaskedDense.set_mask`)."""
        return self.decode(genome).kernel_masks()

    def active_fraction(self, genome: Sequence[int] | np.ndarray) -> float:
        """Fraction of genes that are on (= active features / neurons / connections)."""
        genes = self.validate(genome)
        return float(genes.mean())

    def active_parameters(self, genome: Sequence[int] | np.ndarray) -> int:
        """Parameters that survive in the compact head of this genome."""
        return self.decode(genome).active_parameters(self.spec)

    def describe(self) -> str:
        """A short human description, used in errors and reports."""
        return f"{type(self).__name__} over head {self.spec.widths}"

    def config(self) -> dict:
        """The encoding's options, for tracking."""
        return {"encoding": self.name}


class FeatureSelection(Encoding):
    """One bit per backbone feature: prunes the inputs of the first layer."""

    name = "feature_selection"

    @property
    def genome_length(self) -> int:
        return self.spec.n_features

    def _decode(self, genes: np.ndarray) -> HeadMasks:
        units = list(self.spec.all_active().units)
        units[0] = genes.copy()
        return HeadMasks(units=tuple(units))


class NeuronPruning(Encoding):
    """One bit per neuron of each pruned hidden layer.

    Args:
        spec: the head.
        layers: indices of the hidden layers to prune (default: all of them). Genes are
            laid out layer after layer.
    """

    name = "neuron_pruning"

    def __init__(self, spec: HeadSpec, layers: Sequence[int] | None = None) -> None:
        super().__init__(spec)
        if not spec.hidden:
            raise ValueError("neuron pruning needs at least one hidden layer; hidden=()")
        layers = tuple(range(len(spec.hidden))) if layers is None else tuple(int(i) for i in layers)
        bad = [i for i in layers if not 0 <= i < len(spec.hidden)]
        if bad or not layers or len(set(layers)) != len(layers):
            raise ValueError(
                f"layers={list(layers)}; expected distinct hidden-layer indices in [0, {len(spec.hidden) - 1}]"
            )
        self.layers = tuple(sorted(layers))

    @property
    def genome_length(self) -> int:
        return sum(self.spec.hidden[i] for i in self.layers)

    def _decode(self, genes: np.ndarray) -> HeadMasks:
        units = list(self.spec.all_active().units)
        start = 0
        for i in self.layers:
            width = self.spec.hidden[i]
            units[i + 1] = genes[start : start + width].copy()
            start += width
        return HeadMasks(units=tuple(units))

    def config(self) -> dict:
        return {"encoding": self.name, "pruned_layers": list(self.layers)}


class ConnectionPruning(Encoding):
    """One bit per connection (kernel entry) of one layer, row-major ``(in, out)``.

    Args:
        spec: the head.
        layer: index of the kernel to prune (0 = features -> first hidden layer).
    """

    name = "connection_pruning"

    def __init__(self, spec: HeadSpec, layer: int = 0) -> None:
        super().__init__(spec)
        if not 0 <= int(layer) < spec.n_layers:
            raise ValueError(f"layer={layer}; expected a kernel index in [0, {spec.n_layers - 1}]")
        self.layer = int(layer)

    @property
    def shape(self) -> tuple[int, int]:
        """Kernel shape of the pruned layer."""
        return self.spec.widths[self.layer], self.spec.widths[self.layer + 1]

    @property
    def genome_length(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def _decode(self, genes: np.ndarray) -> HeadMasks:
        base = self.spec.all_active()
        return HeadMasks(units=base.units, connections={self.layer: genes.reshape(self.shape).copy()})

    def config(self) -> dict:
        return {"encoding": self.name, "pruned_layer": self.layer}


ENCODINGS: dict[str, type[Encoding]] = {
    FeatureSelection.name: FeatureSelection,
    NeuronPruning.name: NeuronPruning,
    ConnectionPruning.name: ConnectionPruning,
}


def make_encoding(name: str, spec: HeadSpec, **options) -> Encoding:
    """Build an encoding by name (``feature_selection``, ``neuron_pruning``, ``connection_pruning``).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; expected one of {sorted(ENCODINGS)}")
    return ENCODINGS[name](spec, **options)


# -------------------------------------------------------------------- the genome codec


def binary_genome(genome: Sequence[int] | np.ndarray, length: int, what: str) -> np.ndarray:
    """A 0/1 genome of ``length`` genes as a boolean array: every binary encoding's check.

    Args:
        genome: 0/1 integers or booleans.
        length: the encoding's genome length.
        what: the encoding, for the message (its ``describe()``).

    Returns:
        The genome as a boolean array.

    Raises:
        ValueError: the genome has the wrong length or values other than 0 and 1.
    """
    genes = np.asarray(genome)
    if genes.ndim != 1 or genes.shape[0] != length:
        raise ValueError(f"genome has shape {genes.shape}; expected ({length},) for {what}")
    if genes.dtype.kind not in "biuf":
        raise ValueError(f"genome has dtype {genes.dtype}; expected 0/1 integers or booleans")
    if genes.dtype != bool:
        bad = np.setdiff1d(np.unique(genes), [0, 1])
        if bad.size:
            raise ValueError(f"genome holds values {bad[:5].tolist()}; expected only 0 and 1")
        genes = genes.astype(bool)
    return genes


def genome_key(genome: Sequence[int] | np.ndarray) -> bytes:
    """A compact hashable key of a 0/1 genome: its length and its packed bits (non-zero genes count as 1)."""
    genes = np.asarray(genome).ravel() != 0
    return len(genes).to_bytes(8, "little") + np.packbits(genes).tobytes()


def pack_genome(genome: Sequence[int] | np.ndarray) -> str:
    """A 0/1 genome as a compact hex string (`numpy.packbits`, big-endian bit order).

    Non-zero genes count as 1; the last byte is zero-padded, so keep the length to
    unpack (see `unpack_genome`).
    """
    return np.packbits(np.asarray(genome).ravel() != 0).tobytes().hex()


def unpack_genome(packed: str, length: int) -> np.ndarray:
    """Inverse of `pack_genome`: the first ``length`` bits as a uint8 0/1 array."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(packed), dtype=np.uint8))
    if length > len(bits):
        raise ValueError(f"length={length}; expected at most {len(bits)} for a {len(packed)}-character genome")
    return bits[:length].astype(np.uint8)
