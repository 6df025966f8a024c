"""Plain records: numeric flattening for metrics, CSV and JSON writing for artifacts."""

from __future__ import annotations

import csv
import io
import json
import numbers
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["numeric_items", "flat_record", "csv_cell", "json_default", "csv_text", "write_csv", "write_json"]



def numeric_items(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric entries of a mapping (nested mappings flattened with dots), as floats."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numeric_items(value, f"{name}."))
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                out[name] = float(value)
        elif isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
    return out


def flat_record(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping flattened with dotted keys."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out.update(flat_record(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def csv_cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(str(csv_cell(v)) for v in np.asarray(value).ravel().tolist())
    return value


def json_default(value: Any) -> Any:
    """`json.dumps` default for NumPy values, paths and sets."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, set, frozenset)):
        return str(value) if isinstance(value, Path) else sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV document (header + rows) as text; ``None`` cells are empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV file (creating its folder); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(csv_text(header, rows))
    return path


def write_json(path: Path, value: Any) -> Path:
    """Write a JSON document (indented; NumPy values, paths and sets via `json_default`).

    Args:
        path: the file (its folder is created).
        value: a JSON-able value.

    Returns:
        The path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=json_default))
    return path
