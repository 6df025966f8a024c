"""What the tracker logs of an evolution when it ends: logbook, hall of fame, masks, fronts, plots.

`EvolutionArtifacts` is mixed into `evoprune_tf.tracking.MLflowTracker`; it writes the
files into a folder and logs them through the tracker's ``log_artifact`` and ``client``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evoprune_tf.encodings import pack_genome
from evoprune_tf.plots import convergence_plot, mask_heatmap, pareto_plots
from evoprune_tf.records import csv_cell, csv_text, flat_record, write_csv
from evoprune_tf.search.callbacks import EvolutionState
from evoprune_tf.search.pareto import knee_point, non_dominated

__all__ = ["EvolutionArtifacts"]


class EvolutionArtifacts:
    """The tracker's artifact steps (needs ``objective_names``, ``title``, ``run_id``, ``client``, ``log_artifact``)."""

    objective_names: list[str] | None
    title: str
    run_id: str | None

    def _names(self, k: int) -> list[str]:
        if self.objective_names is not None and len(self.objective_names) == k:
            return list(self.objective_names)
        return [f"obj{i}" for i in range(k)]

    def _rows(self, individuals: Sequence) -> tuple[list[str], list[list[Any]]]:
        """CSV header and rows: fitness values, active fraction, packed genome."""
        k = len(individuals[0].fitness.values) if individuals else 0
        names = self._names(k)
        # An objective named active_fraction is that column already: not twice.
        extra = "active_fraction" not in names
        header = [*names, *(["active_fraction"] if extra else []), "genome"]
        rows = [
            [*map(float, ind.fitness.values), *([float(np.mean(np.asarray(ind) != 0))] if extra else []),
             pack_genome(ind)]
            for ind in individuals
        ]
        return header, rows

    def _log_front(self, state: EvolutionState) -> None:

        valid = [ind for ind in state.population if ind.fitness.valid]
        if not valid:
            return
        points = np.array([ind.fitness.values for ind in valid], dtype=np.float64)
        front = [ind for ind, keep in zip(valid, non_dominated(points, valid[0].fitness.weights)) if keep]
        header, rows = self._rows(front)
        text = csv_text(header, rows)
        self.client.log_text(self.run_id, text, f"fronts/front_gen_{state.generation:04d}.csv")

    def _log_logbook(self, state: EvolutionState, folder: Path) -> None:
        records = [flat_record(r) for r in state.logbook]
        if not records:
            return
        header: list[str] = [k for k in ("gen", "nevals", "evaluations") if any(k in r for r in records)]
        for record in records:
            header.extend(k for k in record if k not in header)
        rows = [[csv_cell(r.get(k, "")) for k in header] for r in records]
        self.log_artifact(write_csv(folder / "logbook.csv", header, rows))

    def _log_halloffame(self, state: EvolutionState, folder: Path) -> None:
        members = [ind for ind in (state.halloffame or []) if ind.fitness.valid]
        if not members:
            return
        header, rows = self._rows(members)
        self.log_artifact(write_csv(folder / "halloffame.csv", header, rows))
        genomes = np.stack([np.asarray(ind).ravel() for ind in members]).astype(np.uint8)
        fitness = np.array([ind.fitness.values for ind in members], dtype=np.float64)
        path = folder / "best_genomes.npz"
        np.savez_compressed(
            path, genomes=genomes, fitness=fitness,
            weights=np.asarray(members[0].fitness.weights, dtype=np.float64),
            objective_names=np.array(self._names(fitness.shape[1])),
        )
        self.log_artifact(path, "masks")

    def _log_convergence(self, state: EvolutionState, folder: Path) -> None:

        if len(state.logbook):
            self.log_artifact(convergence_plot(state.logbook, folder / "convergence.png", title=self.title), "plots")

    def _log_population_masks(self, state: EvolutionState, folder: Path) -> None:

        if state.population:
            genomes = np.stack([np.asarray(ind).ravel() for ind in state.population])
            title = f"final population, generation {state.generation}"
            self.log_artifact(mask_heatmap(genomes, folder / "population_masks.png", title=title), "plots")

    def _log_pareto_plot(self, state: EvolutionState, folder: Path) -> None:

        members = [ind for ind in (state.halloffame or []) if ind.fitness.valid]
        if not members or len(members[0].fitness.values) < 2:
            return
        points = np.array([ind.fitness.values for ind in members], dtype=np.float64)
        knee = knee_point(points, members[0].fitness.weights)
        path = pareto_plots(points, self._names(points.shape[1]), folder / "pareto_front.png", knee_index=knee)
        self.log_artifact(path, "plots")
