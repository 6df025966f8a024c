"""Issue 25 item 5: runs started at once on a new SQLite store all succeed, and the store stays usable."""

from __future__ import annotations

import multiprocessing
import traceback

import pytest

from evoprune_tf.tracking.store import check_tracking_uri


def _start(uri: str, barrier, results, index: int) -> None:
    """What `evoprune run` does first with its store: check it, then open a run in an experiment."""
    try:
        from mlflow import MlflowClient

        barrier.wait(timeout=120)
        check_tracking_uri(uri)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.create_experiment(f"parallel-{index}")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "best", 1.0, step=0)
        client.set_terminated(run.info.run_id)
        results.put((index, "ok"))
    except BaseException:  # noqa: BLE001 - reported to the test
        results.put((index, traceback.format_exc(limit=3)))


@pytest.mark.slow
def test_three_processes_creating_one_new_sqlite_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_start, args=(uri, barrier, results, i)) for i in range(3)]
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=300) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == {0: "ok", 1: "ok", 2: "ok"}, outcomes

    # a later run on the same store works
    from mlflow import MlflowClient

    check_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("later"))
    client.log_metric(run.info.run_id, "best", 2.0)
    assert client.get_run(run.info.run_id).data.metrics["best"] == 2.0
    assert (tmp_path / "mlflow.db.lock").exists()
