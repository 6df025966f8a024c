"""TASCNet's checkpoints: after every stage-1 candidate and every stage-2 iteration, resumed exactly.

A TASCNet run writes the suite's data-only checkpoint (`evoprune_tf.search.checkpoint`:
tagged JSON and arrays in one ``.npz`` with a SHA-256, no pickle) through the run
session's `CheckpointCallback`, so ``evoprune resume RUN_ID`` finds it, checks its digest
against the run's ``evoprune.checkpoint_sha256`` tag and continues the same MLflow run.
Its `EvolutionState` counts steps (``generation``: candidates and iterations saved so
far, ``evaluations``: trained candidates) and keeps TASCNet's progress in
``info["tascnet"]``:

- ``candidates``: each trained stage-1 candidate's record and the Python and NumPy RNG
  states right after its training. A resumed run replays the search with the same seed:
  each stored candidate returns its stored scores (no training) and puts the RNGs where
  the uninterrupted run had them, so the search draws the same next genomes.
- ``stage2``: the `LoopState` after the last iteration: the keep masks that turn the
  stage-2 input model into the current and the accepted model, their weights and the
  unpruned model's (and the
  current model's seed-generator states), the recorded trajectories, the records, the
  best accuracy, the patience count, the epoch count and the stop reason. A resumed run
  rebuilds the input model's architecture, applies the masks, loads the weights and goes
  on with the next iteration, which `tascnet_prune` seeds with `iteration_seed`.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Mapping

import numpy as np
from deap import tools

from evoprune_tf.search.callbacks import EvolutionState

__all__ = ["TascnetCheckpoints", "ReplayingEvaluator", "seed_states", "set_seed_states"]


class TascnetCheckpoints:
    """A TASCNet run's progress, saved through the session's checkpoint callback.

    Args:
        session: the `RunSession` (its ``resumed`` checkpoint, when resuming).

    Raises:
        ValueError: the resumed checkpoint holds no TASCNet progress (one line).
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        resumed = session.resumed
        info = resumed.state.info.get("tascnet") if resumed is not None else {"candidates": [], "stage2": None}
        if not isinstance(info, dict) or not isinstance(info.get("candidates"), list):
            raise ValueError(f"checkpoint {resumed.path} holds no TASCNet progress; expected a checkpoint "
                             "written by a run with algorithm.name = 'tascnet'")
        self.candidates: list[dict] = list(info["candidates"])
        self.restored_candidates = len(self.candidates)
        self.stage2: dict | None = info.get("stage2")
        self.step = int(resumed.state.generation) if resumed is not None else 0
        # What `CheckpointCallback` reads from an evaluator: TASCNet keeps its own records instead.
        self.cache: dict = {}
        self.n_trained, self.n_cache_hits, self.train_seconds = 0, 0, 0.0
        self.callback: Any = None

    def start(self) -> None:
        """Make the checkpoint callback, once the MLflow run is open (a resumed run re-tags its checkpoint)."""
        self.callback = self.session.checkpoint_callback(self)
        if self.callback is not None:
            self.callback.on_start(self.state())

    def state(self) -> EvolutionState:
        """The `EvolutionState` a checkpoint stores."""
        return EvolutionState(population=[], halloffame=None, logbook=tools.Logbook(), generation=self.step,
                              evaluations=len(self.candidates),
                              info={"tascnet": {"candidates": self.candidates, "stage2": self.stage2}})

    def _save(self, force: bool = False) -> None:
        self.step += 1
        every = max(1, int(self.session.config.checkpoint.every))
        if self.callback is not None and (force or self.step % every == 0):
            self.callback.save(self.state())

    def add_candidate(self, record: Any, rng: tuple[Any, Any]) -> None:
        """Keep a trained stage-1 candidate (and the RNG states after its training); checkpoint."""
        self.candidates.append({
            "index": int(record.index), "genome": [int(g) for g in record.genome],
            "configuration": record.configuration.to_dict(), "val_loss": float(record.val_loss),
            "val_accuracy": float(record.val_accuracy), "params": int(record.params),
            "seconds": float(record.seconds), "python_random": rng[0], "numpy_random": rng[1],
        })
        self._save()

    def save_stage2(self, state: Any) -> None:
        """Keep the stage-2 loop state after an iteration; checkpoint (always after the last one)."""
        trajectories = state.recorder.trajectories() if state.recorder is not None else None
        self.stage2 = {
            "iteration": state.iteration, "epoch": state.epoch, "best_accuracy": float(state.best_accuracy),
            "below": list(state.below), "stop_reason": state.stop_reason, "finished": bool(state.finished),
            "history": [dataclasses.asdict(r) for r in state.history],
            "accepted": state.history.index(state.accepted),
            "masks": [dict(m) for m in state.masks], "kept_masks": state.kept_masks,
            "current_weights": [np.asarray(w) for w in state.current.get_weights()],
            "current_seeds": seed_states(state.current),
            "kept_weights": [np.asarray(w) for w in state.kept_weights],
            "unpruned_weights": [np.asarray(w) for w in state.unpruned_weights],
            "trajectories": trajectories,
        }
        self._save(force=state.finished)

    def restore_stage2(self, model: Any) -> Any:
        """The `LoopState` of the checkpoint, rebuilt on ``model`` (the stage-2 input architecture), or None."""
        from evoprune_tf.methods.tascnet.stage2 import IterationRecord, LoopState
        from evoprune_tf.nn.surgery import prune_filters

        saved = self.stage2
        if saved is None:
            return None
        models = [model]
        for keep in saved["masks"]:
            models.append(prune_filters(models[-1], keep))
        current, kept = models[-1], models[int(saved["kept_masks"])]
        current.set_weights(saved["current_weights"])
        set_seed_states(current, saved["current_seeds"])
        if kept is not current:
            kept.set_weights(saved["kept_weights"])
        history = [IterationRecord(**r) for r in saved["history"]]
        trajectories = saved["trajectories"]
        return LoopState(
            current=current, kept=kept, kept_weights=list(saved["kept_weights"]),
            recorder=_Trajectories(trajectories) if trajectories is not None else None, history=history,
            accepted=history[int(saved["accepted"])], best_accuracy=float(saved["best_accuracy"]),
            epoch=int(saved["epoch"]), iteration=int(saved["iteration"]), below=[int(i) for i in saved["below"]],
            stop_reason=str(saved["stop_reason"]), finished=bool(saved["finished"]),
            masks=[dict(m) for m in saved["masks"]], kept_masks=int(saved["kept_masks"]),
            unpruned_weights=list(saved["unpruned_weights"]),
        )


class ReplayingEvaluator:
    """Stage-1 evaluation that replays a checkpoint's candidates before training new ones.

    Args:
        evaluate: configuration -> scores (the `CandidateEvaluator`).
        candidates: the checkpoint's candidate entries (`TascnetCheckpoints.candidates`).

    Attributes:
        rng: the Python and NumPy RNG states right after the last call (stored with a
            newly trained candidate).
    """

    def __init__(self, evaluate: Callable[[Any], Mapping[str, float]], candidates: list[dict]) -> None:
        self.evaluate = evaluate
        self.done = list(candidates)
        self.calls = 0
        self.rng: tuple[Any, Any] = (None, None)

    @property
    def replaying(self) -> bool:
        """Whether the last call returned a stored candidate."""
        return self.calls <= len(self.done)

    def __call__(self, configuration: Any) -> dict[str, float]:
        from evoprune_tf.methods.tascnet.models import Configuration

        index, self.calls = self.calls, self.calls + 1
        if index < len(self.done):
            entry = self.done[index]
            stored = Configuration.from_dict(entry["configuration"])
            if stored != configuration:
                raise ValueError(f"checkpoint's stage-1 candidate {index} is {stored.describe()}, but the resumed "
                                 f"search asked for {configuration.describe()}; expected the config and code the "
                                 "run was started with")
            random.setstate(entry["python_random"])
            np.random.set_state(entry["numpy_random"])
            self.rng = (entry["python_random"], entry["numpy_random"])
            return {k: entry[k] for k in ("val_loss", "val_accuracy", "params", "seconds")}
        scores = dict(self.evaluate(configuration))
        self.rng = (random.getstate(), np.random.get_state())
        return scores


class _Trajectories:
    """The trajectories a checkpoint stored, in place of the recorder that recorded them."""

    def __init__(self, trajectories: Mapping[str, np.ndarray]) -> None:
        self._trajectories = {str(k): np.asarray(v) for k, v in trajectories.items()}

    def trajectories(self) -> dict[str, np.ndarray]:
        return dict(self._trajectories)


def seed_states(model: Any) -> list[np.ndarray]:
    """The seed-generator states of a model's layers (e.g. Dropout's), which ``get_weights`` leaves out."""
    out = []
    for layer in model.layers:
        weights = {id(w) for w in layer.weights}
        out.extend(np.asarray(v.numpy()) for v in layer.variables if id(v) not in weights)
    return out


def set_seed_states(model: Any, states: list[np.ndarray]) -> None:
    """Put back the `seed_states` of a model of the same architecture."""
    variables = [v for layer in model.layers for v in layer.variables
                 if id(v) not in {id(w) for w in layer.weights}]
    if len(variables) != len(states):
        raise ValueError(f"the checkpoint holds {len(states)} seed-generator states for a model with "
                         f"{len(variables)}; expected the architecture the run was checkpointed with")
    for variable, value in zip(variables, states):
        variable.assign(np.asarray(value).astype(variable.dtype))
