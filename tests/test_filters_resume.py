"""`evoprune resume` for a DeepPruningES run (its own file, so xdist can run it beside the end-to-end test)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_runs import Interrupt
from test_filters_run import tiny_config

from evoprune_tf.app.run import resume, run


@pytest.mark.slow
def test_an_interrupted_deep_pruning_es_run_resumes_to_the_uninterrupted_result(tmp_path):
    """`evoprune resume` for a filter run: Ctrl-C after generation 1, resume, same archive and report as one go."""
    whole = run(tiny_config(tmp_path / "whole", algorithm={"population": 3}))
    config = tiny_config(tmp_path / "cut", algorithm={"population": 3})
    with pytest.raises(KeyboardInterrupt):
        run(config, callbacks=[Interrupt(1, KeyboardInterrupt())])
    checkpoints = list((tmp_path / "cut" / "checkpoints").rglob("checkpoint.pkl"))
    assert len(checkpoints) == 1
    resumed = resume(checkpoints[0])
    assert [g["nevals"] for g in resumed.logbook] == [g["nevals"] for g in whole.logbook]
    key = lambda ind: (tuple(ind.fitness.values), bytes(np.asarray(ind, dtype=np.int8)))  # noqa: E731
    assert sorted(map(key, resumed.halloffame)) == sorted(map(key, whole.halloffame))
    assert [r["test_accuracy"] for r in resumed.table] == [r["test_accuracy"] for r in whole.table]
