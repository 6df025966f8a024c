"""TASCNet stage 2: prune filters by the similarity of their training trajectories.

`tascnet_prune` runs the authors' loop on a flat functional model (a stage-1 candidate's
trainable part, or the text CNN):

1. fine-tune, recording each epoch's kernels of every prunable conv layer with more than
   ``min_filters`` filters (`KernelTrajectoryRecorder`);
2. per layer, pair the filters by the cosine similarity of their flattened trajectories,
   ``prune_percent`` of the filters, most similar first (``order="least_similar"``
   reproduces the public code, which sorts ascending) (`select_pairs`);
3. train ``reg_epochs`` with loss = cross-entropy + ``reg_weight * exp(-sum of the pairs'
   cosine similarities)`` (`PairSimilarityModel`), pulling each pair together;
4. in each pair delete the filter with the smaller L1 norm, or merge the two by
   L1-weighted average (``mode="merge"``) (`filters_to_remove`), then remove the filters
   physically with `evoprune_tf.nn.surgery.prune_filters`;
5. fine-tune (this fine-tune is step 1 of the next iteration: it records the next
   trajectories) and repeat while the validation accuracy stays within ``tolerance`` of
   the best seen; the first iteration that falls below is rolled back and ends the loop.
   With ``patience = p > 0`` (an option; 0 is the paper's rule) the loop goes on pruning
   the rejected model for up to ``p`` iterations in a row that stay below, as Keras'
   ``EarlyStopping(patience=p)`` goes on training: an iteration back within the
   tolerance is accepted and resets the count, and the result is always the last
   accepted model.

Layers versus coupling groups: similarity works per conv *layer*, surgery per coupling
*group*. A layer is pruned only when it is the sole producer of a prunable group (then
the layer's keep mask is the group's). Layers whose filters are tied to other layers'
(ResNet's residual stage groups, MobileNetV2's residual projections, which sum into the
same channels) are left whole rather than pruned by one member's trajectories; DenseNet's
concatenated layers are sole producers of their own part and are pruned.

The learning rate follows one running epoch count over the whole loop (halved every
``halve_every`` epochs), as the recipe describes one long training.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import keras
import numpy as np

from evoprune_tf.nn.coupling import filter_groups
from evoprune_tf.nn.flops import count_flops
from evoprune_tf.nn.surgery import prune_filters
from evoprune_tf.methods.tascnet.models import TrainRecipe, compile_sgd, evaluate_model, fine_tune
from evoprune_tf.methods.tascnet.similarity import (
    ORDERS,
    PairSimilarityModel,
    assign_pruned_weights,
    filters_to_remove,
    n_pairs,
    select_pairs,
)
from evoprune_tf.methods.tascnet.trajectories import KernelTrajectoryRecorder, conv_kernels, find_conv_layers

__all__ = [
    "IterationRecord",
    "LoopState",
    "PruneSettings",
    "Stage2Result",
    "conv_filter_counts",
    "iteration_seed",
    "plot_tradeoff",
    "prunable_layers",
    "tascnet_prune",
]


@dataclasses.dataclass(frozen=True)
class PruneSettings:
    """Options of the stage-2 loop (defaults: the paper's).

    Attributes:
        prune_percent: percentage of each layer's filters removed per iteration, in (0, 50].
        order: ``"most_similar"`` (the described method) or ``"least_similar"`` (the code).
        mode: ``"delete"`` or ``"merge"``.
        min_filters: only layers with more than this many filters are pruned (128).
        layer_names: restrict pruning to these conv layers (None: all eligible).
        reg_weight: factor of the pair-similarity term (1.0).
        reg_epochs: epochs trained with the term before each removal.
        tolerance: stop when validation accuracy falls more than this below the best (0.02).
        patience: iterations below the tolerance allowed in a row before the loop stops
            (0: the paper's rule, stop at the first); the result is the last accepted model.
        max_iterations: most prune iterations.
        epochs: epochs of each fine-tune (the first one and the one after each removal).
        recipe: the SGD recipe.
    """

    prune_percent: float = 5.0
    order: str = "most_similar"
    mode: str = "delete"
    min_filters: int = 128
    layer_names: tuple[str, ...] | None = None
    reg_weight: float = 1.0
    reg_epochs: int = 1
    tolerance: float = 0.02
    patience: int = 0
    max_iterations: int = 10
    epochs: int = 3
    recipe: TrainRecipe = dataclasses.field(default_factory=TrainRecipe)

    def __post_init__(self) -> None:
        n_pairs(2, self.prune_percent)  # raises the one-line (0, 50] error
        if self.order not in ORDERS:
            raise ValueError(f"order={self.order!r}; expected one of {ORDERS}")
        if self.mode not in ("delete", "merge"):
            raise ValueError(f"mode={self.mode!r}; expected 'delete' or 'merge'")
        for name in ("min_filters", "reg_epochs", "patience", "max_iterations", "epochs"):
            value = getattr(self, name)
            low = 1 if name == "epochs" else 0
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name}={value!r}; expected an integer >= {low}")
        if not 0.0 <= float(self.tolerance) <= 1.0:
            raise ValueError(f"tolerance={self.tolerance!r}; expected an accuracy difference in [0, 1]")
        if not math.isfinite(self.reg_weight) or self.reg_weight < 0:
            raise ValueError(f"reg_weight={self.reg_weight!r}; expected a finite number >= 0")


@dataclasses.dataclass
class IterationRecord:
    """One stage-2 iteration (iteration 0 = the fine-tuned unpruned model).

    Attributes:
        iteration: the index.
        params: parameters of the model.
        macs: kernel multiply-accumulates (batch 1).
        flops: ``2 * macs``.
        val_loss: validation cross-entropy.
        val_accuracy: validation accuracy.
        filters: ``{conv layer: filters}``.
        removed: filters removed in this iteration.
        accepted: False for an iteration that fell below the tolerance (rolled back).
        seconds: wall time of the iteration.
        test_accuracy: test accuracy when test data was given (else NaN); never used
            for decisions.
    """

    iteration: int
    params: int
    macs: int
    flops: int
    val_loss: float
    val_accuracy: float
    filters: dict[str, int]
    removed: int
    accepted: bool
    seconds: float
    test_accuracy: float = math.nan

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics for MLflow (``filters.<layer>`` per conv layer)."""
        out = {
            "params": float(self.params), "macs": float(self.macs), "flops": float(self.flops),
            "val_loss": self.val_loss, "val_accuracy": self.val_accuracy,
            "removed": float(self.removed), "accepted": float(self.accepted), "seconds": self.seconds,
            "conv_filters": float(sum(self.filters.values())),
        }
        if math.isfinite(self.test_accuracy):
            out["test_accuracy"] = self.test_accuracy
        out.update({f"filters.{name}": float(n) for name, n in self.filters.items()})
        return out


@dataclasses.dataclass
class Stage2Result:
    """The outcome of `tascnet_prune`.

    Attributes:
        model: the last accepted (compact) model.
        history: every iteration, the rejected ones included.
        unpruned: iteration 0's record (the fine-tuned unpruned model).
        final: the record of ``model``.
        stop_reason: why the loop ended.
        unpruned_model: a copy of the input model with the weights it was scored with at
            iteration 0 (the unpruned reference of the latency table).
    """

    model: keras.Model
    history: list[IterationRecord]
    unpruned: IterationRecord
    final: IterationRecord
    stop_reason: str
    unpruned_model: keras.Model | None = None


def conv_filter_counts(model: keras.Model) -> dict[str, int]:
    """``{layer: filters}`` of every Conv1D/Conv2D layer of a model.

    Args:
        model: a built model.

    Returns:
        The counts in model order.
    """
    try:
        return {layer.name: int(layer.filters) for layer in find_conv_layers(model, min_filters=0)}
    except ValueError:  # no conv layer at all
        return {}


def prunable_layers(
    model: keras.Model, *, min_filters: int = 128, layer_names: Sequence[str] | None = None
) -> list[str]:
    """The conv layers stage 2 prunes now.

    A layer qualifies when it is a Conv1D/Conv2D with more than ``min_filters`` filters,
    is named in ``layer_names`` (when given) and is the sole producer of a prunable
    coupling group (see the module docstring).

    Args:
        model: a flat functional model.
        min_filters: the filter threshold.
        layer_names: optional restriction.

    Returns:
        Layer names (= their group names), in model order.
    """
    sole = {g.producers[0] for g in filter_groups(model) if g.prunable and len(g.producers) == 1}
    wanted = None if layer_names is None else set(layer_names)
    out = []
    for name, filters in conv_filter_counts(model).items():
        if filters > min_filters and name in sole and (wanted is None or name in wanted):
            out.append(name)
    return out


def _record(model: keras.Model, iteration: int, val: tuple[np.ndarray, np.ndarray], removed: int,
            accepted: bool, started: float, test: tuple[np.ndarray, np.ndarray] | None) -> IterationRecord:
    cost = count_flops(model)
    loss, accuracy = evaluate_model(model, val)
    test_accuracy = evaluate_model(model, test)[1] if test is not None else math.nan
    return IterationRecord(
        iteration=iteration, params=int(cost.params), macs=int(cost.macs), flops=int(cost.flops),
        val_loss=loss, val_accuracy=accuracy, filters=conv_filter_counts(model), removed=int(removed),
        accepted=accepted, seconds=time.perf_counter() - started, test_accuracy=test_accuracy,
    )


def _recorder(model: keras.Model, settings: PruneSettings) -> KernelTrajectoryRecorder | None:
    names = prunable_layers(model, min_filters=settings.min_filters, layer_names=settings.layer_names)
    return KernelTrajectoryRecorder(layer_names=names) if names else None


@dataclasses.dataclass
class LoopState:
    """Where the stage-2 loop stands after an iteration: what a checkpoint keeps to continue it exactly.

    Attributes:
        current: the model the next iteration prunes (trained in place by it first).
        kept: the last accepted model (the result); may be ``current`` itself.
        kept_weights: ``kept``'s weights as they were when it was scored.
        recorder: holds the trajectories of ``current``'s last fine-tune (``trajectories()``);
            None when no layer is left to prune.
        history: every iteration's record, the rejected ones included.
        accepted: the record of ``kept``.
        best_accuracy: the best validation accuracy of an accepted iteration.
        epoch: epochs trained so far (the learning-rate schedule follows it).
        iteration: the last finished iteration (0: the fine-tuned unpruned model).
        below: rejected iterations since the last accepted one.
        stop_reason: why the loop ended (or will, at the iteration cap).
        finished: the loop has stopped.
        masks: the keep masks applied to the input model, in order, that give ``current``.
        kept_masks: how many of ``masks`` give ``kept``.
        unpruned_weights: the input model's weights after iteration 0 (the unpruned reference).
    """

    current: keras.Model
    kept: keras.Model
    kept_weights: list
    recorder: object
    history: list[IterationRecord]
    accepted: IterationRecord
    best_accuracy: float
    epoch: int
    iteration: int = 0
    below: list[int] = dataclasses.field(default_factory=list)
    stop_reason: str = ""
    finished: bool = False
    masks: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    kept_masks: int = 0
    unpruned_weights: list = dataclasses.field(default_factory=list)


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of stage-2 iteration ``iteration`` >= 1 (each iteration is seeded, so a resume repeats it)."""
    return (int(seed) + 1_000_003 * int(iteration)) % 2**32


def tascnet_prune(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    settings: PruneSettings = PruneSettings(),
    *,
    on_iteration: Callable[[IterationRecord], None] | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    resume: LoopState | None = None,
    on_state: Callable[[LoopState], None] | None = None,
) -> Stage2Result:
    """Run the stage-2 loop (see the module docstring).

    Args:
        model: a flat functional model (trained in place, then replaced by compact copies).
        train: ``(x, y)`` training data (integer labels).
        val: ``(x, y)`` validation data (the stopping rule reads its accuracy).
        settings: the `PruneSettings`.
        on_iteration: called with each `IterationRecord` (tracking).
        seed: seeds Keras' RNGs first, and each iteration with `iteration_seed` (None: leave them).
        progress: called with a one-line message per iteration (e.g. ``print``).
        test: ``(x, y)`` scored into each record's ``test_accuracy`` for the report only.
        resume: continue from this state (a checkpoint's) instead of fine-tuning ``model``.
        on_state: called with the `LoopState` after every iteration, 0 included (checkpoints).

    Returns:
        The `Stage2Result`.
    """
    say = progress or (lambda message: None)
    if resume is None:
        if seed is not None:
            keras.utils.set_random_seed(int(seed))
        state = _first_iteration(model, train, val, settings, test)
        if on_iteration:
            on_iteration(state.accepted)
        say(f"stage 2 iteration 0: {state.accepted.params} params, {state.accepted.flops} FLOPs, "
            f"val acc {state.accepted.val_accuracy:.4f}")
        if on_state:
            on_state(state)
    else:
        state = resume
    while not state.finished:
        if state.iteration >= settings.max_iterations:
            state.finished = True
            break
        if seed is not None:
            keras.utils.set_random_seed(iteration_seed(seed, state.iteration + 1))
        _iterate(state, train, val, settings, test, on_iteration, say)
        if on_state:
            on_state(state)
    if state.below:
        state.stop_reason += (f"; iteration{'s' if len(state.below) > 1 else ''} {', '.join(map(str, state.below))} "
                              f"rolled back to iteration {state.accepted.iteration}")
        say(f"stage 2 {state.stop_reason}")
    state.kept.set_weights(state.kept_weights)
    unpruned = keras.models.clone_model(model)  # `model` itself was trained on by iteration 1
    unpruned.set_weights(state.unpruned_weights)
    return Stage2Result(model=state.kept, history=state.history, unpruned=state.history[0], final=state.accepted,
                        stop_reason=state.stop_reason, unpruned_model=unpruned)


def _first_iteration(model: keras.Model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                     settings: PruneSettings, test: tuple[np.ndarray, np.ndarray] | None) -> LoopState:
    """Iteration 0: fine-tune the unpruned model, recording the trajectories, and score it."""
    started = time.perf_counter()
    recorder = _recorder(model, settings)
    fine_tune(model, train, None, epochs=settings.epochs, recipe=settings.recipe, epoch_offset=0,
              callbacks=[recorder] if recorder else [])
    first = _record(model, 0, val, 0, True, started, test)
    # The next iteration trains and edits `current` in place before it prunes a copy, so the
    # accepted model's weights are kept as they were when it was scored.
    weights = model.get_weights()
    return LoopState(current=model, kept=model, kept_weights=weights, recorder=recorder, history=[first],
                     accepted=first, best_accuracy=first.val_accuracy, epoch=settings.epochs,
                     stop_reason=f"max_iterations={settings.max_iterations} reached", unpruned_weights=weights)


def _iterate(state: LoopState, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
             settings: PruneSettings, test: tuple[np.ndarray, np.ndarray] | None,
             on_iteration: Callable[[IterationRecord], None] | None, say: Callable[[str], None]) -> None:
    """One prune iteration: pair, regularise, remove, fine-tune, score; accept or count it below."""
    started = time.perf_counter()
    if state.recorder is None:
        state.stop_reason = f"no conv layer with more than min_filters={settings.min_filters} filters left to prune"
        state.finished = True
        return
    iteration, recipe = state.iteration + 1, settings.recipe
    pairs = select_pairs(state.recorder.trajectories(), settings.prune_percent, settings.order)
    if settings.reg_weight > 0 and settings.reg_epochs > 0:
        wrapped = PairSimilarityModel(state.current, pairs, weight=settings.reg_weight)
        compile_sgd(wrapped, recipe)
        fine_tune(wrapped, train, None, epochs=settings.reg_epochs, recipe=recipe, epoch_offset=state.epoch,
                  compile_model=False)
        state.epoch += settings.reg_epochs
    plan = filters_to_remove(pairs, *conv_kernels(state.current, list(pairs)), mode=settings.mode)
    assign_pruned_weights(state.current, plan)
    # Each pruned layer is the sole producer of the group named after it.
    state.current = prune_filters(state.current, plan.keep)
    state.masks.append({name: np.asarray(mask, dtype=bool) for name, mask in plan.keep.items()})
    state.recorder = _recorder(state.current, settings)
    fine_tune(state.current, train, None, epochs=settings.epochs, recipe=recipe, epoch_offset=state.epoch,
              callbacks=[state.recorder] if state.recorder else [])
    state.epoch += settings.epochs
    record = _record(state.current, iteration, val, plan.n_removed, True, started, test)
    record.accepted = record.val_accuracy >= state.best_accuracy - settings.tolerance
    state.history.append(record)
    state.iteration = iteration
    if on_iteration:
        on_iteration(record)
    if record.accepted:
        say(f"stage 2 iteration {iteration}: -{record.removed} filters, {record.params} params, "
            f"{record.flops} FLOPs, val acc {record.val_accuracy:.4f}")
        state.below, state.best_accuracy = [], max(state.best_accuracy, record.val_accuracy)
        state.accepted, state.kept, state.kept_weights = record, state.current, state.current.get_weights()
        state.kept_masks = len(state.masks)
        return
    state.below.append(iteration)
    say(f"stage 2 iteration {iteration}: -{record.removed} filters, val acc {record.val_accuracy:.4f} "
        f"below best {state.best_accuracy:.4f} - tolerance {settings.tolerance} "
        f"({len(state.below)} in a row, patience {settings.patience})")
    if len(state.below) > settings.patience:
        state.stop_reason = (f"iteration {iteration}: val accuracy {record.val_accuracy:.4f} below best "
                             f"{state.best_accuracy:.4f} - tolerance {settings.tolerance}")
        state.finished = True


def plot_tradeoff(history: Sequence[IterationRecord], path: str, *, title: str = "TASCNet stage 2") -> str:
    """Save a plot of parameters and FLOPs against validation accuracy over the iterations.

    Left: parameters and FLOPs (relative to iteration 0) and validation accuracy per
    iteration; right: accuracy against FLOPs, one labelled point per iteration. A
    rolled-back iteration is drawn hollow.

    Args:
        history: the records of `tascnet_prune`.
        path: the PNG file to write.
        title: the figure title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r.iteration for r in history]
    p0, f0 = max(1, history[0].params), max(1, history[0].flops)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(its, [r.params / p0 for r in history], "o-", label="params (rel.)")
    left.plot(its, [r.flops / f0 for r in history], "s-", label="FLOPs (rel.)")
    left.set_xlabel("iteration")
    left.set_ylabel("relative to unpruned")
    axis = left.twinx()
    axis.plot(its, [r.val_accuracy for r in history], "^--", color="tab:green", label="val accuracy")
    axis.set_ylabel("validation accuracy")
    left.legend(loc="lower left")
    axis.legend(loc="lower right")
    for record in history:
        face = "tab:blue" if record.accepted else "none"
        right.scatter(record.flops / 1e6, record.val_accuracy, facecolors=face, edgecolors="tab:blue")
        right.annotate(str(record.iteration), (record.flops / 1e6, record.val_accuracy), fontsize=8)
    right.set_xlabel("MFLOPs (searched layers)")
    right.set_ylabel("validation accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
