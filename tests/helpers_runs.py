"""Test helpers shared by the run, resume, grid and process tests: tiny configs, interrupts, process groups."""

from __future__ import annotations

import os

from evoprune_tf.search.callbacks import Callback


class Interrupt(Callback):
    """Raises ``error`` at generation ``at`` (after the checkpoint of that generation)."""

    def __init__(self, at: int, error: BaseException) -> None:
        self.at, self.error = at, error

    def on_generation(self, state) -> None:
        if state.generation == self.at:
            raise self.error


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_toml(*, checkpoint_dir: object, evaluations: int, tracking: str = "enabled = false",
             train: str = 'engine = "numpy"') -> str:
    """A tiny steady-state run on planted features (seed 6, 16 hidden units, 3 epochs, one report seed).

    Args:
        checkpoint_dir: the ``[checkpoint] dir``.
        evaluations: the budget.
        tracking: the body of the ``[tracking]`` table.
        train: more ``[train]`` lines; the NumPy engine unless told otherwise (``""``: the Keras engine).

    Returns:
        The TOML text.
    """
    return (f'seed = 6\nprogress = false\n[head]\nhidden = [16]\n[train]\nepochs = 3\n{train}\n'
            f'[algorithm]\npopulation = 8\nevaluations = {evaluations}\n[tracking]\n{tracking}\n'
            f'[checkpoint]\ndir = "{checkpoint_dir}"\n[report]\nseeds = 1\nexport_model = false\n')


def grid_toml(name: str, *, generations: int, experiment: str, grid: str = "", tracking: str = "") -> str:
    """A 2 x 2 grid (seeds 0, 1 x feature selection, neuron pruning) of tiny ``ea_simple`` runs on the NumPy engine.

    Args:
        name: the grid's name.
        generations: generations of every cell.
        experiment: the MLflow experiment.
        grid: more ``[grid]`` lines (runner, workers).
        tracking: more ``[tracking]`` lines (uri).

    Returns:
        The TOML text.
    """
    return (f'name = "tiny"\nprogress = false\n[grid]\nname = "{name}"\n{grid}\n[grid.axes]\nseed = [0, 1]\n'
            f'"encoding.name" = ["feature_selection", "neuron_pruning"]\n[head]\nhidden = [8]\n[train]\nepochs = 2\nengine = "numpy"\n'
            f'[algorithm]\nname = "ea_simple"\npopulation = 6\ngenerations = {generations}\n'
            f'[report]\nseeds = 1\nexport_model = false\n[tracking]\nexperiment = "{experiment}"\n{tracking}\n')
