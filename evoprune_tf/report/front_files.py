"""The report's files of a front: ``pareto_front.csv``, the Pareto plots, and their logging to the run."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from evoprune_tf.plots import pareto_plots
from evoprune_tf.records import write_csv
from evoprune_tf.report.front_rows import test_columns

__all__ = ["ArtifactTracker", "ArtifactLog", "write_front_table", "front_plots"]


class ArtifactTracker(Protocol):
    """What the report uses of a tracker (`evoprune_tf.tracking.MLflowTracker`)."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or a folder under ``artifact_path``."""


class ArtifactLog:
    """Logs report files to the tracker (when there is one) and lists their paths inside the run.

    Args:
        tracker: the run's tracker, or None (the files are then only listed).
    """

    def __init__(self, tracker: ArtifactTracker | None) -> None:
        self.tracker = tracker
        self.paths: list[str] = []

    def __call__(self, path: Path, artifact_path: str | None) -> None:
        """Log a file, or every file of a folder, under ``artifact_path``."""
        if self.tracker is not None:
            self.tracker.log_artifact(path, artifact_path)
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        self.paths.extend(f"{artifact_path}/{p.name}" if artifact_path else p.name for p in files)


def write_front_table(path: Path, names: Sequence[str], rows: list[dict], banded: set[int],
                      genome_length: int) -> Path:
    """``pareto_front.csv``: one line per member, search values on validation, test metrics, genome.

    Args:
        path: the CSV file.
        names: the objective names (``val_<name>`` columns).
        rows: the `member_rows`.
        banded: the `banded_members`.
        genome_length: genes per genome (to unpack the packed genomes).

    Returns:
        The path.
    """
    header = ["member", *[f"val_{n}" for n in names], "search_val_accuracy", "search_val_auroc",
              "active_fraction", "active_features", "active_parameters", "retrain_val_accuracy",
              "test_accuracy", "test_accuracy_std", "test_auroc", "test_auroc_std", "trade_off",
              "banded_ensemble", "genome_length", "genome"]
    lines = [
        [r["index"], *[r["search"][n] for n in names], r["search_val_accuracy"], r["search_val_auroc"],
         r["active_fraction"], r["active_features"], r["active_parameters"], r["val_accuracy"],
         r["test_accuracy"], r["test_accuracy_std"], r["test_auroc"], r["test_auroc_std"], r["trade_off"],
         int(r["index"] in banded), genome_length, r["genome"]]
        for r in rows
    ]
    return write_csv(path, header, lines)


def front_plots(points: np.ndarray, names: list[str], rows: list[dict], picks: dict[str, int], with_auroc: bool,
                folder: Path) -> list[Path]:
    """Pareto plots of the search objectives and of the test metrics; knee star, heavy/light rings.

    Args:
        points: the members' search objectives.
        names: their names.
        rows: the `member_rows` (test metrics).
        picks: trade-off name -> member index.
        with_auroc: add the test AUROC axis.
        folder: where the PNGs go.

    Returns:
        The PNG paths (validation first; the test plot only when every member has a test accuracy).
    """
    ends = sorted({picks["heavy"], picks["light"]})
    paths = []
    if points.shape[1] >= 2:
        paths.append(pareto_plots(points, [f"{n} (val)" for n in names], folder / "pareto_validation.png",
                                  knee_index=picks["knee"], highlight=ends))
    if all(r["test_accuracy"] is not None for r in rows):
        test_names = ["test accuracy", "active fraction"] + (["test AUROC"] if with_auroc else [])
        paths.append(pareto_plots(test_columns(rows, with_auroc), test_names, folder / "pareto_test.png",
                                  knee_index=picks["knee"], highlight=ends))
    return paths
