"""Pickle checkpoints (formats 1 and 2) written by older evoprune_tf versions, read only when the user allows it.

Format 2 is a pickled header dict followed by the pickled `Checkpoint`; format 1 is the
`Checkpoint` alone. Unpickling runs whatever code the file names, so
`evoprune_tf.search.checkpoint.load_checkpoint` calls this module only with
``allow_pickle=True`` (``evoprune resume --allow-pickle``): for a file you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from evoprune_tf.errors import one_line

__all__ = ["load_pickle", "read_pickle_header"]


def _unreadable(path: Path, error: BaseException) -> ValueError:
    return ValueError(f"checkpoint {path} is unreadable ({type(error).__name__}: {one_line(error, 200)})")


def read_pickle_header(path: Path) -> dict:
    """The header of a pickle checkpoint (format 1 files are read whole to build one).

    Raises:
        ValueError: unreadable, or not an evoprune_tf checkpoint.
    """
    from evoprune_tf.search.checkpoint import Checkpoint, _check_version

    try:
        with open(path, "rb") as f:
            first = pickle.load(f)  # noqa: S301 - the caller was told to allow it
    except Exception as error:  # noqa: BLE001 - a foreign or damaged file
        raise _unreadable(path, error) from None
    if isinstance(first, dict):
        _check_version(path, first.get("format_version"))
        return dict(first)
    if isinstance(first, Checkpoint):
        return first.header()
    raise ValueError(f"{path} holds a {type(first).__name__}; expected an evoprune_tf checkpoint")


def load_pickle(path: Path) -> Any:
    """The `Checkpoint` of a pickle file (formats 1 and 2).

    Raises:
        ValueError: unreadable, from a newer format, or not an evoprune_tf checkpoint.
    """
    import evoprune_tf.search.toolbox  # noqa: F401 - the creator classes the individuals need
    from evoprune_tf.search.checkpoint import Checkpoint, _check_version

    try:
        with open(path, "rb") as f:
            first = pickle.load(f)  # noqa: S301 - the caller was told to allow it
            if isinstance(first, dict) and "format_version" in first:
                _check_version(path, first["format_version"])
                checkpoint = pickle.load(f)  # noqa: S301
            else:
                checkpoint = first
    except ValueError as error:
        if str(error).startswith(f"checkpoint {path}"):
            raise
        raise _unreadable(path, error) from None
    except Exception as error:  # noqa: BLE001 - a foreign or damaged file
        raise _unreadable(path, error) from None
    if not isinstance(checkpoint, Checkpoint):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}; expected an evoprune_tf checkpoint")
    return checkpoint
