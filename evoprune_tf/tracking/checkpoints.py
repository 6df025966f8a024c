"""Where a run's checkpoint is: from a path, or from an MLflow run id (or a unique prefix).

`find_checkpoint` is what both ``evoprune resume TARGET`` and `evoprune_tf.resume`
call, so a run id works the same way in Python as on the command line;
`recorded_store` says in which store a resumed run continues when nothing names one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from evoprune_tf.tracking.redact import usable_uri
from evoprune_tf.tracking.store import DEFAULT_TRACKING_URI, find_run, resolve_tracking_uri, sqlite_store_missing, \
    store_folder

__all__ = ["find_checkpoint", "recorded_store"]

#: Checkpoint file names in ``<store folder>/checkpoints/<run id>/``, preferred first.
_FILE_NAMES = ("checkpoint.npz", "checkpoint.pkl")


def find_checkpoint(target: str | os.PathLike) -> str:
    """A checkpoint path from a path, or from an MLflow run id (or a unique prefix of one).

    A path that exists is returned as it is. A run id is looked up next to the current
    store (``<store folder>/checkpoints/<id>``), in ``./mlruns/checkpoints/<id>``, then
    through the run's ``evoprune.checkpoint`` tag, so a run id works from any folder.

    Args:
        target: a checkpoint file or folder, or a run id or unique prefix.

    Returns:
        The checkpoint path (a file or folder `load_checkpoint` reads).

    Raises:
        FileNotFoundError: one line naming ``target`` and where it was looked for.
    """
    target = str(target)
    if Path(target).exists():
        return target
    uri = resolve_tracking_uri(create_folder=False)  # looking a run up must not leave a new store behind
    missing = sqlite_store_missing(uri)
    # store_folder creates ./mlruns for the default store only; that folder is the second candidate anyway
    near_store = None if missing and uri == DEFAULT_TRACKING_URI else store_folder(uri)
    folders = list(dict.fromkeys(f for f in (near_store, Path("mlruns").absolute()) if f is not None))
    for folder in folders:
        for name in _FILE_NAMES:
            candidate = folder / "checkpoints" / target / name
            if candidate.exists():
                return str(candidate)
    try:
        run = None if missing else find_run(target, uri)
    except Exception:  # noqa: BLE001 - no such run, or an unusable store: the plain message below
        run = None
    if run is not None:
        tagged = run.data.tags.get("evoprune.checkpoint")
        if tagged and Path(tagged).is_file():
            return tagged
        if not tagged and run.info.status in ("KILLED", "FAILED"):
            raise FileNotFoundError(
                f"MLflow run {run.info.run_id} in {uri} is {run.info.status}: it stopped before its first checkpoint, "
                "so there is nothing to resume; expected a run with a checkpoint: start it again with evoprune run"
            )
        raise FileNotFoundError(
            f"MLflow run {run.info.run_id} in {uri} has no checkpoint on this machine "
            f"(tag evoprune.checkpoint={tagged!r}); expected a checkpoint file, folder or run id with one"
        )
    raise FileNotFoundError(
        f"no checkpoint file, folder or run id {target!r} (looked in {', '.join(str(f / 'checkpoints') for f in folders)} "
        f"and the runs of {uri}); expected a checkpoint path or the id of a run that wrote one"
    )


def recorded_store(checkpoint: Any) -> dict:
    """Config overrides that continue a run in the store it was logged to.

    When neither the checkpoint's config nor ``$MLFLOW_TRACKING_URI`` names a store, a
    resumed run goes on in the (absolute) store the checkpoint recorded, not in
    ``./mlruns`` of the current folder.

    Args:
        checkpoint: a loaded checkpoint (its ``config`` and ``tracking_uri``).

    A URI stored with its password redacted gets it back from the environment
    (`evoprune_tf.tracking.redact.usable_uri`).

    Returns:
        ``{"tracking": {"uri": ...}}``, or ``{}`` when another store is named.

    Raises:
        ValueError: a redacted URI whose password the environment does not provide.
    """
    recorded = getattr(checkpoint, "tracking_uri", None)
    stored = checkpoint.config.get("tracking", {})
    if recorded and not stored.get("uri") and not os.environ.get("MLFLOW_TRACKING_URI"):
        return {"tracking": {"uri": usable_uri(recorded, "the run's tracking store")}}
    if isinstance(stored.get("uri"), str) and stored["uri"]:  # stored without its password: from the environment
        return {"tracking": {"uri": usable_uri(stored["uri"], "tracking.uri")}}
    return {}
