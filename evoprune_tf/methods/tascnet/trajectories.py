"""Recording each conv filter's weight trajectory during fine-tuning (TASCNet stage 2, step 1).

TASCNet judges two filters redundant when their weights moved alike while the network was
fine-tuned. `KernelTrajectoryRecorder` is a Keras callback that snapshots the kernels of
the selected Conv1D / Conv2D layers when training begins and after every epoch;
`KernelTrajectoryRecorder.trajectories` then gives, per layer, one row per filter: the
filter's flattened kernel at each snapshot, concatenated in time order.

`find_conv_layers` and `conv_kernels` are the same selection and read-out for callers
that work on a model outside ``fit`` (e.g. the pruning step of the outer loop).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import keras
import numpy as np

__all__ = ["KernelTrajectoryRecorder", "conv_kernels", "filter_matrix", "find_conv_layers", "iter_layers"]

# Layers whose kernel is (*window, in_channels, filters) with one output channel per filter.
# DepthwiseConv2D, SeparableConv and the transposed convs have other kernel layouts and
# are not Conv1D/Conv2D subclasses, so isinstance leaves them out.
_CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D)


def iter_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of a model, depth first, nested models' layers included.

    Args:
        model: a built Keras model (a frozen backbone may be one of its layers).

    Yields:
        The layers, each once (a nested model itself is yielded before its layers).
    """
    seen: set[int] = set()
    stack = list(reversed(model.layers))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        if isinstance(layer, keras.Model):
            stack.extend(reversed(layer.layers))


def find_conv_layers(
    model: keras.Model,
    *,
    min_filters: int = 128,
    layer_names: Sequence[str] | None = None,
) -> list[keras.layers.Layer]:
    """The Conv1D / Conv2D layers TASCNet prunes, in model order.

    Args:
        model: a built Keras model.
        min_filters: without ``layer_names``, keep the layers with *more than* this many
            filters (TASCNet: 128; the 100-filter text CNN needs a smaller value).
        layer_names: explicit layer names instead (each must be a Conv1D/Conv2D of the
            model, nested models searched too); ``min_filters`` is then ignored.

    Returns:
        The layers.

    Raises:
        ValueError: an unknown or non-conv name, or no layer passes ``min_filters``.
    """
    convs = [layer for layer in iter_layers(model) if isinstance(layer, _CONV_TYPES)]
    if layer_names is not None:
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        by_name = {layer.name: layer for layer in convs}
        missing = [n for n in layer_names if n not in by_name]
        if missing:
            raise ValueError(
                f"layer_names {missing} are not Conv1D/Conv2D layers of model '{model.name}'; "
                f"expected some of {sorted(by_name)}"
            )
        if not layer_names:
            raise ValueError("layer_names=[] selects no layer; expected at least one conv layer name or None")
        return [by_name[n] for n in dict.fromkeys(layer_names)]
    if isinstance(min_filters, bool) or int(min_filters) != min_filters or min_filters < 0:
        raise ValueError(f"min_filters={min_filters!r}; expected a non-negative integer")
    chosen = [layer for layer in convs if int(layer.filters) > min_filters]
    if not chosen:
        widths = sorted({int(layer.filters) for layer in convs})
        raise ValueError(
            f"no Conv1D/Conv2D layer of model '{model.name}' has more than min_filters={min_filters} filters "
            f"(widths: {widths}); expected a smaller min_filters or explicit layer_names"
        )
    return chosen


def filter_matrix(kernel: np.ndarray) -> np.ndarray:
    """A conv kernel as one row per filter: ``(filters, fan_in)``.

    Args:
        kernel: Keras layout ``(*window, in_channels, filters)``.

    Returns:
        ``(filters, prod(window) * in_channels)`` array (a copy).
    """
    kernel = np.asarray(kernel)
    return np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]).T)


def conv_kernels(
    model: keras.Model, layer_names: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Current kernels and biases of named conv layers, as NumPy copies.

    Args:
        model: a built Keras model.
        layer_names: the Conv1D/Conv2D layers to read (nested models searched too).

    Returns:
        ``(kernels, biases)``: ``{name: (*window, in, filters)}`` and ``{name: (filters,)
        or None}`` (None for ``use_bias=False``).
    """
    layers = find_conv_layers(model, layer_names=layer_names)
    kernels = {layer.name: np.array(keras.ops.convert_to_numpy(layer.kernel)) for layer in layers}
    biases = {
        layer.name: None if layer.bias is None else np.array(keras.ops.convert_to_numpy(layer.bias))
        for layer in layers
    }
    return kernels, biases


class KernelTrajectoryRecorder(keras.callbacks.Callback):
    """Keras callback recording conv kernels at train begin and after each epoch.

    Each ``fit`` starts a new recording (the previous one is dropped), so one recorder
    can follow the fine-tune / prune / fine-tune loop even as the layers shrink.

    Example::

        recorder = KernelTrajectoryRecorder(min_filters=64)
        model.fit(x, y, epochs=5, callbacks=[recorder])
        trajectories = recorder.trajectories()  # {"conv_k3": (100, 6 * 150), ...}

    Args:
        layer_names: the Conv1D/Conv2D layers to record; ``None`` records every one with
            more than ``min_filters`` filters (resolved when training begins).
        min_filters: the filter-count threshold used without ``layer_names`` (TASCNet: 128).
        include_initial: also snapshot the kernels when training begins, so that a fit of
            ``E`` epochs records ``E + 1`` snapshots (``E`` without it).
        dtype: dtype of the stored snapshots (float32 keeps memory at 4 bytes a weight).
    """

    def __init__(
        self,
        layer_names: Sequence[str] | None = None,
        *,
        min_filters: int = 128,
        include_initial: bool = True,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        if isinstance(min_filters, bool) or int(min_filters) != min_filters or min_filters < 0:
            raise ValueError(f"min_filters={min_filters!r}; expected a non-negative integer")
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        self.layer_names_requested = None if layer_names is None else list(layer_names)
        self.min_filters = int(min_filters)
        self.include_initial = bool(include_initial)
        self.dtype = np.dtype(dtype)
        self._layers: list[keras.layers.Layer] = []
        self._snapshots: dict[str, list[np.ndarray]] = {}
        self.epochs_recorded: list[int] = []

    @property
    def layer_names(self) -> list[str]:
        """Names of the layers being recorded (empty before the first ``fit``)."""
        return [layer.name for layer in self._layers]

    @property
    def n_snapshots(self) -> int:
        """Number of snapshots recorded by the current (or last) ``fit``."""
        return len(next(iter(self._snapshots.values()))) if self._snapshots else 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Select the layers and take the initial snapshot.

        Args:
            logs: unused (Keras callback signature).
        """
        self._layers = find_conv_layers(
            self.model, min_filters=self.min_filters, layer_names=self.layer_names_requested
        )
        self._snapshots = {layer.name: [] for layer in self._layers}
        self.epochs_recorded = []
        if self.include_initial:
            self._record()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Snapshot the kernels after an epoch.

        Args:
            epoch: the epoch index Keras passes.
            logs: unused.
        """
        self._record()
        self.epochs_recorded.append(int(epoch))

    def _record(self) -> None:
        for layer in self._layers:
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            self._snapshots[layer.name].append(filter_matrix(kernel).astype(self.dtype, copy=False))

    def snapshots(self) -> dict[str, np.ndarray]:
        """Per layer the recorded kernels as ``(n_snapshots, filters, fan_in)`` arrays.

        Returns:
            ``{layer name: array}``, in time order (initial snapshot first).
        """
        self._check_recorded()
        return {name: np.stack(snaps) for name, snaps in self._snapshots.items()}

    def trajectories(self) -> dict[str, np.ndarray]:
        """Per layer each filter's flattened weight trajectory.

        Row ``f`` is filter ``f``'s kernel (flattened over window and input channels) at
        snapshot 0, then at snapshot 1, ...: ``(filters, n_snapshots * fan_in)``.

        Returns:
            ``{layer name: array}``.

        Raises:
            RuntimeError: nothing has been recorded yet (no ``fit`` with this callback).
        """
        self._check_recorded()
        return {name: np.concatenate(snaps, axis=1) for name, snaps in self._snapshots.items()}

    def _check_recorded(self) -> None:
        if self.n_snapshots == 0:
            raise RuntimeError(
                "KernelTrajectoryRecorder holds no snapshot; pass it to model.fit(callbacks=[...]) first"
            )
