"""Callbacks: what an evolution loop reports to, one call per generation.

The loops in `evoprune_tf.search.algorithms` call ``on_start(state)`` once,
``on_generation(state)`` after every generation (every ``report_every`` evaluations in
steady-state loops) and ``on_end(state)`` once, also when the run fails. A callback
stops the run by setting ``state.stop = True``. Tracking (MLflow), checkpoints and the
progress bar are callbacks: the loop imports none of them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
from deap import tools

__all__ = [
    "EvolutionState",
    "Callback",
    "CallbackList",
    "ProgressBar",
    "EarlyStop",
    "TargetReached",
]


@dataclasses.dataclass
class EvolutionState:
    """Everything an evolution loop needs to continue; callbacks read it, checkpoints save it.

    Attributes:
        population: the current population (DEAP individuals).
        halloffame: `deap.tools.HallOfFame` or `deap.tools.ParetoFront`.
        logbook: one record per generation.
        generation: generations (reports) done; 0 is the initial population.
        evaluations: fitness evaluations requested so far (cache hits included).
        budget: evaluations (steady state) or generations (generational) the run may use.
        stop: set by a callback to end the run after this generation.
        started: ``time.time()`` at the start (of this process's part of the run).
        info: free-form extras the loop or callbacks want to keep (checkpointed).
    """

    population: list
    halloffame: Any
    logbook: tools.Logbook
    generation: int = 0
    evaluations: int = 0
    budget: int = 0
    budget_unit: str = "evaluations"
    stop: bool = False
    started: float = dataclasses.field(default_factory=time.time)
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def last(self) -> dict:
        """The newest logbook record (empty before the first generation)."""
        return self.logbook[-1] if len(self.logbook) else {}

    @property
    def progress(self) -> float:
        """Fraction of the budget spent, in [0, 1]."""
        done = self.evaluations if self.budget_unit == "evaluations" else self.generation
        return min(1.0, done / self.budget) if self.budget else 0.0


class Callback:
    """Base class: override what you need."""

    def on_start(self, state: EvolutionState) -> None:
        """Called once before the first generation is reported."""

    def on_generation(self, state: EvolutionState) -> None:
        """Called after every generation (including generation 0)."""

    def on_end(self, state: EvolutionState, error: BaseException | None = None) -> None:
        """Called once at the end; ``error`` is set when the loop raised."""


class CallbackList(Callback):
    """Calls several callbacks in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = [c for c in callbacks if c is not None]

    def on_start(self, state: EvolutionState) -> None:
        for c in self.callbacks:
            c.on_start(state)

    def on_generation(self, state: EvolutionState) -> None:
        for c in self.callbacks:
            c.on_generation(state)

    def on_end(self, state: EvolutionState, error: BaseException | None = None) -> None:
        for c in self.callbacks:
            c.on_end(state, error)


class ProgressBar(Callback):
    """A tqdm bar over the budget: generation, evaluations, best, active %, evals/s, ETA.

    On a terminal it is a bar; when the stream is not a terminal (a redirected log, a
    CI job) it writes one plain line per generation instead, so logs are not filled
    with carriage-return redraws.

    Args:
        stats: optional callable returning extra counters (e.g. the evaluator's
            ``stats``) whose ``evals_per_second`` and ``cache_hits`` are shown.
        file: stream to draw on (default stderr).
        disable: turn the bar off (e.g. in tests).
        lines: one line per generation instead of a bar; None (default) decides by
            whether ``file`` is a terminal.
    """

    def __init__(self, *, stats: Callable[[], dict] | None = None, file=None, disable: bool = False,
                 lines: bool | None = None) -> None:
        self.stats = stats
        self.file = file or sys.stderr
        self.disable = disable
        self.lines = lines
        self._bar = None
        self._began = 0.0

    def _as_lines(self) -> bool:
        if self.lines is not None:
            return self.lines
        isatty = getattr(self.file, "isatty", None)
        try:
            return not (callable(isatty) and isatty())
        except (ValueError, OSError):  # a closed stream
            return True

    def on_start(self, state: EvolutionState) -> None:
        self._began = time.time()
        self._done_at_start = self._done(state)
        if self.disable or self._as_lines():
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=state.budget, unit="eval" if state.budget_unit == "evaluations" else "gen",
            file=self.file, dynamic_ncols=True, initial=self._done(state),
        )

    def _done(self, state: EvolutionState) -> int:
        return state.evaluations if state.budget_unit == "evaluations" else state.generation

    def _fields(self, state: EvolutionState) -> dict:
        rec = state.last
        fields: dict = {"gen": state.generation, "evals": state.evaluations}
        if "best" in rec:
            fields["best"] = f"{rec['best']:.4f}"
        if "best_active" in rec:
            fields["active"] = f"{100 * rec['best_active']:.0f}%"
        if "front_size" in rec:
            fields["front"] = rec["front_size"]
        if "hypervolume" in rec:
            fields["hv"] = f"{rec['hypervolume']:.4f}"
        if self.stats is not None:
            extra = self.stats()
            fields["ev/s"] = f"{extra.get('evals_per_second', 0):.2f}"
            fields["hits"] = extra.get("cache_hits", 0)
        return fields

    def on_generation(self, state: EvolutionState) -> None:
        if self.disable:
            return
        if self._bar is None:
            if self._as_lines():
                self._line(state)
            return
        self._bar.set_postfix(self._fields(state), refresh=False)
        self._bar.update(self._done(state) - self._bar.n)

    def _line(self, state: EvolutionState) -> None:
        fields = self._fields(state)
        done, total = self._done(state), state.budget
        elapsed = time.time() - self._began
        progressed = done - getattr(self, "_done_at_start", 0)
        eta = elapsed / progressed * max(0, total - done) if progressed > 0 and total else None
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        tail = f" [{done}/{total}, {elapsed:.0f}s" + (f", ETA {eta:.0f}s]" if eta is not None else "]")
        print(f"{text}{tail}", file=self.file, flush=True)

    def on_end(self, state: EvolutionState, error: BaseException | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EarlyStop(Callback):
    """Stops when the best fitness has not improved for ``patience`` generations.

    Args:
        patience: generations without improvement of ``record[key]``.
        key: the logbook field watched (default ``best``; larger is better).
        min_delta: smallest increase that counts.
    """

    def __init__(self, patience: int, key: str = "best", min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"early stop patience={patience}; expected a positive integer")
        self.patience, self.key, self.min_delta = patience, key, min_delta

    def on_generation(self, state: EvolutionState) -> None:
        values = [rec[self.key] for rec in state.logbook if self.key in rec]
        if len(values) <= self.patience:
            return
        best_before = max(values[: -self.patience])
        if max(values[-self.patience :]) <= best_before + self.min_delta:
            state.stop = True
            state.info["stopped_early"] = state.generation


class TargetReached(Callback):
    """Stops once ``record[key] >= target``."""

    def __init__(self, target: float, key: str = "best") -> None:
        self.target, self.key = target, key

    def on_generation(self, state: EvolutionState) -> None:
        if state.last.get(self.key, -np.inf) >= self.target:
            state.stop = True
