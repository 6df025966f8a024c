"""Which process owns a RUNNING MLflow run, and marking runs whose owner died KILLED.

A run records its owner when it starts or resumes (tag ``evoprune.owner``: host, PID and
the process' start time, so a PID the system reused is not mistaken for the owner). A
run SIGKILLed before its first checkpoint used to stay RUNNING forever; a later command
that meets it (`find_run`: ``evoprune resume``, ``evoprune explain``; ``evoprune
compare``'s listing) marks it KILLED when its owner is gone from this host. Runs owned by
another host are left alone: their PIDs cannot be checked from here.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = ["OWNER_TAG", "REAPED_TAG", "owner_tags", "owner_gone", "reap_if_dead"]

#: ``"<host> <pid> <start time>"`` of the process running the run.
OWNER_TAG = "evoprune.owner"
#: Set on a run marked KILLED because its owner was gone.
REAPED_TAG = "evoprune.killed_because"


def _start_time(pid: int) -> str:
    """The process' start time in clock ticks since boot (Linux ``/proc``); ``""`` when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            stat = handle.read()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name in parentheses may hold spaces


def owner_tags() -> dict[str, str]:
    """The owner tag of this process, for the run it starts or resumes.

    Returns:
        ``{OWNER_TAG: "<host> <pid> <start time>"}``.
    """
    pid = os.getpid()
    return {OWNER_TAG: f"{socket.gethostname()} {pid} {_start_time(pid)}".strip()}


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that PID
        pass
    return not started or _start_time(pid) in ("", started)


def owner_gone(run: Run) -> bool:
    """Whether a RUNNING run's recorded owner is a process of this host that no longer exists.

    Args:
        run: the MLflow run.

    Returns:
        False for runs that are not RUNNING, carry no owner tag, or belong to another host.
    """
    if run.info.status != "RUNNING":
        return False
    parts = run.data.tags.get(OWNER_TAG, "").split()
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    return pid != os.getpid() and not _alive(pid, parts[2] if len(parts) > 2 else "")


def reap_if_dead(client: MlflowClient, run: Any) -> Any:
    """Mark a RUNNING run KILLED when its owner is gone (`owner_gone`); return the run as stored.

    Args:
        client: a client of the run's store.
        run: the MLflow run.

    Returns:
        The run, re-read after it was marked; unchanged otherwise.
    """
    if not owner_gone(run):
        return run
    owner = run.data.tags[OWNER_TAG].split()
    client.set_tag(run.info.run_id, REAPED_TAG, f"its process (PID {owner[1]} on {owner[0]}) was gone")
    client.set_terminated(run.info.run_id, "KILLED")
    return client.get_run(run.info.run_id)
