"""Methods by name: a decorator for this package's and your modules, an entry-point group for packages.

    @register
    class MyMethod(Method):
        name = "my_method"
        ...

Third-party packages declare ``[options.entry_points] evoprune.methods = my_method =
my_pkg.module:MyMethod``; the group is read once, lazily, on the first lookup (listing
or ``algorithm.name``), so importing evoprune_tf stays cheap. A broken entry point is
reported in one line naming it.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from evoprune_tf.methods.base import Method

__all__ = ["ENTRY_POINT_GROUP", "available_methods", "get_method", "method_sections", "register", "unregister"]

#: The entry-point group third-party packages declare their methods in.
ENTRY_POINT_GROUP = "evoprune.methods"
#: The modules that register the built-in methods (imported on the first lookup).
_BUILTIN = (
    "evoprune_tf.methods.head.method",
    "evoprune_tf.methods.deep_pruning_es.method",
    "evoprune_tf.methods.tascnet.method",
    "evoprune_tf.methods.filter_baselines",
)
_REGISTRY: dict[str, Method] = {}
_loaded = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: register a `Method` subclass under its ``name``.

    Raises:
        ValueError: no name, or the name (or the config section) already taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ValueError(f"register expects a Method subclass; got {cls!r}")
    if not cls.name or not cls.name.isidentifier():
        raise ValueError(f"method {cls.__qualname__} has name {cls.name!r}; expected an identifier")
    taken = _REGISTRY.get(cls.name)
    if taken is not None and type(taken) is not cls:
        if type(taken).__qualname__ != cls.__qualname__ or type(taken).__module__ != cls.__module__:
            raise ValueError(f"method name {cls.name!r} is already registered by {type(taken).__module__}."
                             f"{type(taken).__qualname__}")
    if cls.section and (cls.section_type is None):
        raise ValueError(f"method {cls.name!r} owns section [{cls.section}] but has no section_type dataclass")
    for other in _REGISTRY.values():
        if cls.section and other.section == cls.section and type(other) is not cls and other.section_type is not cls.section_type:
            raise ValueError(f"method {cls.name!r}: config section [{cls.section}] is already owned by {other.name!r}")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove a method (tests and notebooks that registered a temporary one)."""
    _REGISTRY.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN:
        importlib.import_module(module)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as error:  # noqa: BLE001 - one line naming the entry point
            _loaded = False
            raise ValueError(f"entry point {entry.name!r} = {entry.value!r} in group {ENTRY_POINT_GROUP!r} "
                             f"failed to load ({type(error).__name__}: {error}); expected a Method subclass") from None
        if isinstance(loaded, type) and issubclass(loaded, Method) and loaded.name not in _REGISTRY:
            register(loaded)


def available_methods() -> dict[str, Method]:
    """Every registered method by name (built-ins, entry points, and any registered since), sorted."""
    _load()
    return dict(sorted(_REGISTRY.items()))


def get_method(name: Any) -> Method:
    """The method registered as ``name`` (``algorithm.name``).

    Raises:
        ValueError: an unknown name, in one line listing the known ones.
    """
    _load()
    method = _REGISTRY.get(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {sorted(_REGISTRY)}")
    return method


def method_sections() -> dict[str, type]:
    """Config section name -> dataclass, for every registered method that owns one."""
    return {m.section: m.section_type for m in available_methods().values() if m.section}
