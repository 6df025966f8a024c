"""Where a run writes (checkpoints, report files, feature cache, MLflow artifacts), checked before slow work.

Shared by every method through `evoprune_tf.session.RunSession`; ``config`` is the run's
`ExperimentConfig` (only its ``name``, ``checkpoint``, ``report``, ``tracking`` and
``cache_dir`` values are read here).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from evoprune_tf.features.extract import default_cache_dir
from evoprune_tf.tracking.store import check_artifact_store, check_writable_folder, resolve_tracking_uri, store_folder

__all__ = ["check_output_locations", "checkpoint_dir", "report_files", "report_folder"]


def checkpoint_dir(config: Any) -> Path:
    """Where a run's checkpoint folders go: ``checkpoint.dir``, else next to the MLflow store.

    With a SQLite store that is ``<store folder>/checkpoints`` (with the artifacts), so a
    run's files stay in one place and ``evoprune resume RUN_ID`` finds them from any
    folder; without tracking or with a server, ``./mlruns/checkpoints``.

    Returns:
        An absolute path.
    """
    if config.checkpoint.dir:
        return Path(config.checkpoint.dir).expanduser().absolute()
    if config.tracking.enabled:
        from evoprune_tf.tracking.store import store_folder

        folder = store_folder(config.tracking.uri)
        if folder is not None:
            return folder / "checkpoints"
    return (Path("mlruns") / "checkpoints").absolute()


def report_folder(config: Any, run_id: str | None = None, *, uri: str | None = None) -> Path:
    """Where a run's report files go (Pareto front, trade-off models, tables, explanations).

    ``report.dir`` when set (the files go straight into it: give each run its own). Else
    ``<store folder>/reports/<run id>`` for a SQLite store, next to the run's artifacts
    and checkpoints; without a run id (tracking off) ``<run id>`` is
    ``<name>-<YYYYmmdd-HHMMSS>``. A server store has no local folder: then this is a new
    temporary folder (``evoprune-report-*`` in the system's temporary folder), which the
    caller deletes once its files are logged as MLflow artifacts
    (`report_files` does both). Nothing goes to the current folder
    unless the store or ``report.dir`` is there.

    Args:
        config: the run's config.
        run_id: the MLflow run id (None without tracking).
        uri: the store the run lives in (default ``tracking.uri``, then
            ``$MLFLOW_TRACKING_URI``, then the project's store).

    Returns:
        An absolute path (not created, except the temporary folder).
    """
    if config.report.dir:
        return Path(config.report.dir).expanduser().absolute()
    name = run_id or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = store_folder(config.tracking.uri if uri is None else uri)
    if folder is not None:
        return folder / "reports" / name
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    return Path(tempfile.mkdtemp(prefix=f"evoprune-report-{safe}-")).absolute()



@contextlib.contextmanager
def report_files(config: Any, run_id: str | None, *, uri: str | None = None) -> Iterator[Path]:
    """The run's report folder (`report_folder`) for the duration of a block.

    A temporary folder (a tracking server's run without ``report.dir``) is deleted when
    the block ends: its files were logged to the run inside the block. Any other folder
    is kept.

    Args:
        config: the run's config.
        run_id: the MLflow run id (None without tracking).
        uri: the store the run lives in (default: the config's).

    Yields:
        The folder (absolute; created by whoever writes into it).
    """
    folder = report_folder(config, run_id, uri=uri)
    # Only a server-tracked run's folder is temporary; without tracking nothing logged
    # the files, so they stay where report_folder put them.
    temporary = (not config.report.dir and config.tracking.enabled
                 and store_folder(config.tracking.uri if uri is None else uri) is None)
    try:
        yield folder
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def check_output_locations(config: Any, *, features_cached: bool = False, checkpoints: bool = True,
                           writes_report_files: bool = False) -> None:
    """Check every folder a run writes to before long work starts.

    The checkpoint folder, the feature cache folder, the report folder (`report_folder`;
    for runs that write report files) and (with tracking) the local MLflow artifact
    store must be writable; each failure is one line naming which location it is.

    Args:
        config: the run's config.
        features_cached: skip the cache folder (features were handed in, nothing is cached).
        checkpoints: the method checkpoints (``checkpoint.enabled`` then matters).
        writes_report_files: the method's report writes local files (the report folder is checked).

    Raises:
        ValueError: the first location that cannot be written.
    """
    if checkpoints and config.checkpoint.enabled:
        what = "checkpoint.dir" if config.checkpoint.dir else "checkpoint folder (next to the MLflow store)"
        check_writable_folder(checkpoint_dir(config), what)
    if not features_cached:
        if config.cache_dir:
            check_writable_folder(config.cache_dir, "cache_dir (feature cache)")
        else:
            check_writable_folder(default_cache_dir(), "feature cache (EVOPRUNE_CACHE_DIR)")
    # Runs whose report writes local files (multi-objective, DeepPruningES, TASCNet); a
    # single-objective report only logs report.json to MLflow.
    if writes_report_files:
        if config.report.dir:
            check_writable_folder(config.report.dir, "report.dir")
        else:
            store = store_folder(config.tracking.uri)
            # The run id is not known yet: the folder that will hold it is what can fail.
            check_writable_folder(store / "reports" if store is not None else tempfile.gettempdir(),
                                  "report folder (next to the MLflow store)" if store is not None
                                  else "report folder (temporary, for a tracking server)")
    if config.tracking.enabled:
        check_artifact_store(resolve_tracking_uri(config.tracking.uri), config.tracking.experiment)
