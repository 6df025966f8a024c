"""`quiet_startup`: what it keeps off the terminal, and what it lets through."""

from __future__ import annotations

import logging

from evoprune_tf.app.cli import quiet_startup


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)


def test_the_retracing_warning_is_dropped_and_other_tensorflow_warnings_pass() -> None:
    logger = logging.getLogger("tensorflow")
    before = list(logger.filters)
    try:
        quiet_startup()
        quiet_startup()  # idempotent: one filter, not two
        added = [f for f in logger.filters if f not in before]
        assert len(added) <= 1 and len(logger.filters) == len(before) + len(added)
        assert not logger.filter(_record(
            "5 out of the last 18 calls to <function f> triggered tf.function retracing. Tracing is expensive"))
        assert logger.filter(_record("Model was constructed with shape (None, 3) for input"))
    finally:
        logger.filters[:] = before
