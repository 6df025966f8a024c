"""DeepPruningES with the ``latency`` objective end to end: the table is measured, stored, used and reported."""

from __future__ import annotations

import io
import math

import pytest

from test_filters_run import HEAD_EPOCHS, tiny_config

from evoprune_tf.methods.deep_pruning_es import run as filters_run
from evoprune_tf.report import latency, latency_lut
from evoprune_tf.report.latency_lut import LatencyTable


class KerasTable(LatencyTable):
    """The run's table, timed by Keras with few runs (LiteRT conversions per key would dominate the test)."""

    def __init__(self, folder=None, **kwargs):
        super().__init__(folder, backend="keras", runs=3)


@pytest.mark.slow
def test_a_run_with_the_latency_objective_reports_predicted_latency_and_its_rank_correlation(tmp_path, monkeypatch):
    monkeypatch.setattr(latency_lut, "LatencyTable", KerasTable)
    # The report's measured Keras b32 column, untimed: timing traces each whole deployable
    # network (~7 s of CPU a report) and is the end-to-end test's (`test_filters_run.py`).
    # A stand-in that grows with the model keeps the rank correlation over distinct values;
    # the table's own per-layer timings (batch 1) stay measured.
    timed = latency.keras_latency_ms

    def report_column(model, *args, batch=latency.KERAS_BATCH, **kwargs):
        if batch != latency.KERAS_BATCH:
            return timed(model, *args, batch=batch, **kwargs)
        return 1e-3 * model.count_params()

    monkeypatch.setattr(latency, "keras_latency_ms", report_column)
    config = tiny_config(tmp_path, objectives={"names": ["error", "latency"]}, encoding={"blocks": 1},
                         algorithm={"population": 3, "generations": 1}, report={"litert": False})
    out = io.StringIO()
    result = filters_run.run_filter_pruning(config, out=out, head_epochs=HEAD_EPOCHS)
    evaluator = result.evaluator
    table = evaluator.latency_table
    assert isinstance(table, KerasTable) and table.path.parent == tmp_path / "cache" / "latency" and table.path.is_file()
    # Every evaluated genome's objective is its predicted suffix latency over the unpruned suffix's.
    for individual in result.population:
        record = evaluator.lookup(individual)
        assert record.latency_fraction == pytest.approx(record.latency_ms / evaluator.suffix_latency_ms)
        assert individual.fitness.values[1] == pytest.approx(record.latency_fraction)
    # The report predicts each final model from the same table and compares with what it measured.
    for row in result.table:
        assert row["predicted_ms"] == pytest.approx(table.predict_ms(result.models[row["model"]]))
    rho = result.table[0]["latency_rank_correlation"]
    assert math.isnan(rho) or -1.0 <= rho <= 1.0
    assert "latency objective: predicted" in out.getvalue()
