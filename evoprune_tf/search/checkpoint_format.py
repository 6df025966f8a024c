"""The data-only checkpoint file: tagged JSON and NumPy arrays in one ``.npz``, with a digest.

A format-3 checkpoint is a zip written by `numpy.savez` (one file, so it is replaced
atomically as a whole) with these entries:

- ``header.json``: ``uint8`` bytes of a JSON object (format, config digest, run id,
  generation, evaluations, ...), read alone by `read_checkpoint_header`;
- ``body.json``: ``uint8`` bytes of the rest of the checkpoint as *tagged JSON* (below);
- ``a/<n>``: the numeric arrays the body refers to (genomes, RNG key arrays, cache keys);
- ``sha256``: ``uint8`` bytes of the hex SHA-256 of the payload (`payload_digest`).

Tagged JSON is JSON in which a few one-key objects stand for what JSON lacks: ``$tuple``,
``$dict`` (non-string keys), ``$bytes`` (hex), ``$np`` (a NumPy scalar: dtype and value),
``$array`` (an array entry), ``$ind`` (a DEAP individual: its `deap.creator` class name,
genes and fitness), ``$record`` (an evaluation record of a registered dataclass),
``$halloffame``, ``$logbook`` and ``$state`` (`EvolutionState`). Reading builds only these
values: plain containers, NumPy numbers and arrays of boolean / integer / float dtype, the
creator classes the run's toolbox already created, and the allow-listed record classes.
Nothing in a file names a module to import or a function to call, arrays are read with
``allow_pickle=False``, and the JSON with `json.loads`: loading never runs code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import operator
import re
from typing import Any, Callable

import numpy as np
from deap import base, creator, tools

from evoprune_tf.search.callbacks import EvolutionState

__all__ = [
    "ZIP_MAGIC",
    "MalformedCheckpoint",
    "register_record_type",
    "write_payload",
    "read_payload",
    "read_header_only",
    "payload_digest",
    "pack_cache",
    "unpack_cache",
    "Packer",
    "Unpacker",
]

ZIP_MAGIC = b"PK\x03\x04"
_HEADER, _BODY, _DIGEST, _ARRAY = "header.json", "body.json", "sha256", "a/"
_NUMERIC_KINDS = "biuf"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_SIMILAR: dict[str, Callable] = {"array_equal": np.array_equal, "eq": operator.eq}

#: Record classes a fitness cache may hold: name -> (module, attribute), imported from this
#: fixed table (never from a name in a file) on first use. `register_record_type` adds more.
_RECORD_TYPES: dict[str, tuple[str, str] | type] = {
    "Evaluation": ("evoprune_tf.objectives", "Evaluation"),
    "FilterEvaluation": ("evoprune_tf.filter_evaluation", "FilterEvaluation"),
}


class MalformedCheckpoint(ValueError):
    """A checkpoint whose content is not what this format allows (one line)."""


def register_record_type(cls: type) -> type:
    """Allow a dataclass of plain numbers and strings as a fitness-cache record (usable as a decorator).

    A plugin evaluator whose records are of its own class registers that class, so its
    runs can be checkpointed; the class is looked up by its name when a file is read.

    Args:
        cls: a dataclass.

    Returns:
        ``cls``.

    Raises:
        TypeError: not a dataclass, or another class already has its name.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"{cls!r} is not a dataclass; expected a dataclass of numbers and strings")
    known = _RECORD_TYPES.get(cls.__name__)
    if known is not None and known is not cls and known != (cls.__module__, cls.__qualname__):
        raise TypeError(f"a record type named {cls.__name__!r} is already registered; expected a unique class name")
    _RECORD_TYPES[cls.__name__] = cls
    return cls


def _record_class(name: str) -> type:
    entry = _RECORD_TYPES.get(name)
    if entry is None:
        raise MalformedCheckpoint(f"record type {name!r} is not one of {sorted(_RECORD_TYPES)}")
    if isinstance(entry, tuple):
        import importlib

        entry = getattr(importlib.import_module(entry[0]), entry[1])
        _RECORD_TYPES[name] = entry
    return entry


def _is_record(value: Any) -> bool:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return False
    entry = _RECORD_TYPES.get(type(value).__name__)
    if isinstance(entry, tuple):
        return (type(value).__module__, type(value).__qualname__) == entry
    return entry is type(value)


def _individual_class(name: Any) -> type:
    if not isinstance(name, str) or not _NAME.match(name):
        raise MalformedCheckpoint(f"individual class {name!r} is not a class name")
    cls = getattr(creator, name, None)
    if not (isinstance(cls, type) and issubclass(cls, np.ndarray)
            and isinstance(getattr(cls, "fitness", None), type) and issubclass(cls.fitness, base.Fitness)):
        raise MalformedCheckpoint(f"individual class {name!r} is not a NumPy individual class of deap.creator "
                                  "(created by the run's toolbox)")
    return cls


class Packer:
    """Turns checkpoint values into tagged JSON plus arrays (`write_payload` uses it)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.individuals: list[dict] = []
        self._seen: dict[int, int] = {}
        self._keep: list = []  # keeps packed individuals alive so their ids stay unique

    def array(self, value: np.ndarray) -> dict:
        if value.dtype.kind not in _NUMERIC_KINDS or (value.dtype.kind == "f" and value.dtype.itemsize > 8):
            raise TypeError(f"an array of dtype {value.dtype} cannot be stored; expected booleans, integers or floats")
        key = f"{_ARRAY}{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(value)
        return {"$array": key}

    def pack(self, value: Any) -> Any:  # noqa: C901 - one branch per supported type
        """The tagged JSON of a value (arrays are collected in ``self.arrays``).

        Raises:
            TypeError: a value this format cannot hold.
        """
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)) and type(value) in (int, float):
            return value
        if isinstance(value, np.generic):
            if value.dtype.kind not in _NUMERIC_KINDS or value.dtype.itemsize > 8:
                raise TypeError(f"a NumPy {value.dtype} scalar cannot be stored; expected a boolean, integer or float")
            return {"$np": [value.dtype.str, value.item()]}
        if type(value) is np.ndarray:
            return self.array(value)
        if isinstance(value, np.ndarray) and hasattr(value, "fitness"):
            return {"$ind": self.individual(value)}
        if isinstance(value, bytes):
            return {"$bytes": value.hex()}
        if isinstance(value, tuple):
            return {"$tuple": [self.pack(v) for v in value]}
        if isinstance(value, tools.Logbook):
            return {"$logbook": self.logbook(value)}
        if isinstance(value, list):
            return [self.pack(v) for v in value]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.pack(v) for k, v in value.items()}
            return {"$dict": [[self.pack(k), self.pack(v)] for k, v in value.items()]}
        if isinstance(value, tools.HallOfFame):
            return {"$halloffame": self.halloffame(value)}
        if isinstance(value, EvolutionState):
            return {"$state": {f.name: self.pack(getattr(value, f.name)) for f in dataclasses.fields(value)}}
        if _is_record(value):
            fields = {f.name: self.pack(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return {"$record": [type(value).__name__, fields]}
        raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__} cannot be stored in a data-only "
                        "checkpoint; expected numbers, strings, arrays, containers, DEAP individuals or a record "
                        "type registered with evoprune_tf.search.checkpoint_format.register_record_type")

    def individual(self, ind: np.ndarray) -> int:
        if id(ind) in self._seen:  # the same object twice stays one object (as pickle kept it)
            return self._seen[id(ind)]
        cls = type(ind)
        if getattr(creator, cls.__name__, None) is not cls:
            raise TypeError(f"individual class {cls.__qualname__} is not a deap.creator class; expected the "
                            "run's toolbox individuals")
        fitness = {k: self.pack(v) for k, v in vars(ind.fitness).items()}
        attrs = {k: self.pack(v) for k, v in vars(ind).items() if k != "fitness"}
        self.individuals.append({"class": cls.__name__, "genes": self.array(np.asarray(ind).view(np.ndarray))["$array"],
                                 "fitness": fitness, "attrs": attrs})
        self._seen[id(ind)] = len(self.individuals) - 1
        self._keep.append(ind)
        return self._seen[id(ind)]

    def halloffame(self, hof: Any) -> dict:
        similar = getattr(hof.similar, "__name__", None)
        if _SIMILAR.get(similar) is not hof.similar:
            raise TypeError(f"a hall of fame with similar={hof.similar!r} cannot be stored; expected "
                            "numpy.array_equal or operator.eq")
        if len(hof.keys) != len(hof.items) or any(k is not i.fitness for k, i in zip(hof.keys, reversed(hof.items))):
            raise TypeError("a hall of fame whose keys are not its items' fitnesses cannot be stored; expected one "
                            "filled by HallOfFame.update / insert")
        return {"kind": "ParetoFront" if isinstance(hof, tools.ParetoFront) else "HallOfFame",
                "maxsize": hof.maxsize, "similar": similar, "items": [self.pack(i) for i in hof.items]}

    def logbook(self, book: Any) -> dict:
        return {"records": [self.pack(dict(r)) for r in book], "header": self.pack(book.header),
                "log_header": bool(book.log_header), "buffindex": int(book.buffindex),
                "columns_len": self.pack(book.columns_len),
                "chapters": {str(k): self.logbook(v) for k, v in book.chapters.items()}}


class Unpacker:
    """Rebuilds values from tagged JSON and the file's arrays (never runs code from the file)."""

    def __init__(self, arrays: Any, individuals: list) -> None:
        self.arrays = arrays
        self.raw_individuals = individuals
        self.individuals: dict[int, Any] = {}

    def array(self, key: Any) -> np.ndarray:
        if not isinstance(key, str) or not key.startswith(_ARRAY) or key not in self.arrays:
            raise MalformedCheckpoint(f"array {key!r} is not in the file")
        value = self.arrays[key]  # np.load(allow_pickle=False): an object array raises here
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise MalformedCheckpoint(f"array {key!r} has dtype {value.dtype}; expected booleans, integers or floats")
        return value

    def unpack(self, value: Any) -> Any:  # noqa: C901 - one branch per tag
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.unpack(v) for v in value]
        if not isinstance(value, dict):
            raise MalformedCheckpoint(f"unexpected JSON value {value!r:.60}")
        if len(value) != 1 or not next(iter(value)).startswith("$"):
            if any(k.startswith("$") for k in value):
                raise MalformedCheckpoint(f"unknown tags {sorted(value)[:5]}")
            return {k: self.unpack(v) for k, v in value.items()}
        tag, content = next(iter(value.items()))
        if tag == "$tuple":
            return tuple(self.unpack(v) for v in _list(content, tag))
        if tag == "$dict":
            return {_hashable(self.unpack(k)): self.unpack(v) for k, v in (_pair(p) for p in _list(content, tag))}
        if tag == "$bytes":
            return bytes.fromhex(_str(content, tag))
        if tag == "$np":
            dtype, item = _pair(content)
            dtype = np.dtype(_str(dtype, tag))
            if dtype.kind not in _NUMERIC_KINDS or isinstance(item, (list, dict, str)) or item is None:
                raise MalformedCheckpoint(f"$np of dtype {dtype} holding {item!r:.40}")
            return dtype.type(item)
        if tag == "$array":
            return self.array(content)
        if tag == "$ind":
            return self.individual(content)
        if tag == "$record":
            name, fields = _pair(content)
            cls = _record_class(name)
            names = {f.name for f in dataclasses.fields(cls)}
            if not isinstance(fields, dict) or not set(fields) <= names:
                raise MalformedCheckpoint(f"record {name} has fields {sorted(fields)[:8]}; expected some of {sorted(names)}")
            return cls(**{k: self.unpack(v) for k, v in fields.items()})
        if tag == "$halloffame":
            return self.halloffame(content)
        if tag == "$logbook":
            return self.logbook(content)
        if tag == "$state":
            names = {f.name for f in dataclasses.fields(EvolutionState)}
            if not isinstance(content, dict) or not set(content) <= names:
                raise MalformedCheckpoint("$state holds unknown fields")
            return EvolutionState(**{k: self.unpack(v) for k, v in content.items()})
        raise MalformedCheckpoint(f"unknown tag {tag!r}")

    def individual(self, index: Any) -> Any:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.raw_individuals):
            raise MalformedCheckpoint(f"individual {index!r} is not in the file")
        if index not in self.individuals:
            raw = self.raw_individuals[index]
            if not isinstance(raw, dict) or set(raw) != {"class", "genes", "fitness", "attrs"}:
                raise MalformedCheckpoint(f"individual {index} is not a class/genes/fitness/attrs object")
            cls = _individual_class(raw["class"])
            ind = cls(self.array(raw["genes"]).copy())
            for target, attrs in ((ind.fitness, raw["fitness"]), (ind, raw["attrs"])):
                if not isinstance(attrs, dict) or not all(_NAME.match(k) for k in attrs):
                    raise MalformedCheckpoint(f"individual {index} has attribute names that are not plain names")
                for key, packed in attrs.items():
                    setattr(target, key, self.unpack(packed))
            if not isinstance(ind.fitness.wvalues, tuple) or len(ind.fitness.wvalues) not in (0, len(ind.fitness.weights)):
                raise MalformedCheckpoint(f"individual {index} has fitness {ind.fitness.wvalues!r:.60}")
            self.individuals[index] = ind
        return self.individuals[index]

    def halloffame(self, content: Any) -> Any:
        if not isinstance(content, dict) or content.get("kind") not in ("HallOfFame", "ParetoFront"):
            raise MalformedCheckpoint("$halloffame is not a HallOfFame or ParetoFront")
        similar = _SIMILAR.get(content.get("similar"))
        maxsize = content.get("maxsize")
        if similar is None or not (maxsize is None or (isinstance(maxsize, int) and maxsize >= 0)):
            raise MalformedCheckpoint("$halloffame has an unknown similar function or a bad maxsize")
        hof = tools.ParetoFront(similar) if content["kind"] == "ParetoFront" else tools.HallOfFame(maxsize, similar)
        hof.items = [self.unpack(i) for i in _list(content.get("items"), "items")]
        if not all(isinstance(i, np.ndarray) and hasattr(i, "fitness") for i in hof.items):
            raise MalformedCheckpoint("$halloffame holds something other than individuals")
        # HallOfFame.insert keeps ``keys`` ascending and ``items`` descending, each key the
        # item's own fitness object: the keys are the items' fitnesses in reverse.
        hof.keys = [i.fitness for i in reversed(hof.items)]
        return hof

    def logbook(self, content: Any) -> Any:
        if not isinstance(content, dict) or not set(content) <= {"records", "header", "log_header", "buffindex",
                                                               "columns_len", "chapters"}:
            raise MalformedCheckpoint("$logbook holds unknown fields")
        book = tools.Logbook()
        records = [self.unpack(r) for r in _list(content.get("records", []), "records")]
        if not all(isinstance(r, dict) for r in records):
            raise MalformedCheckpoint("$logbook records are not objects")
        book.extend(records)
        book.header = self.unpack(content.get("header"))
        book.log_header = bool(content.get("log_header", True))
        book.buffindex = int(content.get("buffindex", 0))
        book.columns_len = self.unpack(content.get("columns_len"))
        chapters = content.get("chapters", {})
        if not isinstance(chapters, dict):
            raise MalformedCheckpoint("$logbook chapters are not an object")
        for name, chapter in chapters.items():
            book.chapters[name] = self.logbook(chapter)
        return book


def _list(value: Any, tag: str) -> list:
    if not isinstance(value, list):
        raise MalformedCheckpoint(f"{tag} holds {type(value).__name__}; expected a list")
    return value


def _str(value: Any, tag: str) -> str:
    if not isinstance(value, str):
        raise MalformedCheckpoint(f"{tag} holds {type(value).__name__}; expected a string")
    return value


def _pair(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise MalformedCheckpoint(f"expected a pair, found {value!r:.60}")
    return value[0], value[1]


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        raise MalformedCheckpoint(f"dict key {key!r:.40} is not hashable") from None
    return key


def pack_cache(cache: dict) -> dict:
    """The fitness cache as two arrays (the byte keys, concatenated, and their lengths) and a list of records."""
    keys = list(cache)
    if not all(isinstance(k, bytes) for k in keys):
        raise TypeError("fitness cache keys must be bytes (genome_key); expected an evaluator's cache")
    return {"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).copy(),
            "lengths": np.asarray([len(k) for k in keys], dtype=np.int64), "values": list(cache.values())}


def unpack_cache(packed: Any) -> dict:
    if not isinstance(packed, dict) or set(packed) != {"keys", "lengths", "values"}:
        raise MalformedCheckpoint("fitness_cache is not keys/lengths/values")
    data, lengths, values = packed["keys"], packed["lengths"], packed["values"]
    if (not isinstance(data, np.ndarray) or not isinstance(lengths, np.ndarray) or not isinstance(values, list)
            or lengths.ndim != 1 or len(lengths) != len(values) or int(lengths.sum()) != data.size
            or (lengths < 0).any()):
        raise MalformedCheckpoint("fitness_cache keys, lengths and values do not fit together")
    raw = data.astype(np.uint8).tobytes()
    ends = np.cumsum(lengths)
    return {raw[int(end - n):int(end)]: value for n, end, value in zip(lengths, ends, values)}


def payload_digest(header: bytes, body: bytes, arrays: dict[str, np.ndarray]) -> str:
    """The hex SHA-256 of a checkpoint's header, body and arrays (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for part in (b"header\0", header, b"\0body\0", body):
        digest.update(part)
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"\0{key}\0{value.dtype.str}\0{list(value.shape)}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _bytes_entry(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def write_payload(f: Any, header: dict, body: dict) -> str:
    """Write a checkpoint's header and body (packed with a `Packer`) to an open binary file.

    Args:
        f: a writable binary file.
        header: plain JSON values.
        body: values `Packer.pack` accepts, by name.

    Returns:
        The payload's hex SHA-256 (also stored in the file).

    Raises:
        TypeError: a value the format cannot hold.
    """
    packer = Packer()
    packed = {name: packer.pack(value) for name, value in body.items()}
    packed["individuals"] = packer.individuals
    header_bytes = json.dumps(header).encode()
    body_bytes = json.dumps(packed).encode()
    digest = payload_digest(header_bytes, body_bytes, packer.arrays)
    np.savez(f, **{_HEADER: _bytes_entry(header_bytes), _BODY: _bytes_entry(body_bytes),
                   _DIGEST: _bytes_entry(digest.encode()), **packer.arrays})
    return digest


def _text(archive: Any, key: str) -> bytes:
    if key not in archive.files:
        raise MalformedCheckpoint(f"it has no {key} entry")
    value = archive[key]
    if value.dtype != np.uint8 or value.ndim != 1:
        raise MalformedCheckpoint(f"its {key} entry is {value.dtype}{list(value.shape)}; expected uint8 bytes")
    return value.tobytes()


def _json(data: bytes, key: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedCheckpoint(f"its {key} entry is not JSON ({error})") from None


def read_header_only(data: bytes) -> dict:
    """The header of a format-3 file's bytes (no digest check: a cheap peek)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        header = _json(_text(archive, _HEADER), _HEADER)
    if not isinstance(header, dict):
        raise MalformedCheckpoint("its header is not a JSON object")
    return header


def read_payload(data: bytes) -> tuple[dict, dict, str, str]:
    """Read a format-3 file's bytes: ``(header, body, stored digest, computed digest)``.

    The caller compares the two digests before trusting anything but the header.

    Raises:
        MalformedCheckpoint: an entry is missing, not JSON, or holds what the format does not allow.
    """
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        header_bytes, body_bytes = _text(archive, _HEADER), _text(archive, _BODY)
        stored = _text(archive, _DIGEST).decode("ascii", errors="replace")
        arrays = {k: archive[k] for k in archive.files if k.startswith(_ARRAY)}
    computed = payload_digest(header_bytes, body_bytes, arrays)
    header, packed = _json(header_bytes, _HEADER), _json(body_bytes, _BODY)
    if not isinstance(header, dict) or not isinstance(packed, dict):
        raise MalformedCheckpoint("its header or body is not a JSON object")
    if stored != computed:
        return header, {}, stored, computed
    unpacker = Unpacker(arrays, _list(packed.pop("individuals", []), "individuals"))
    body = {name: unpacker.unpack(value) for name, value in packed.items()}
    return header, body, stored, computed
