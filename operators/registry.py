"""Operators by name: the registry behind ``operators.get`` and config-driven toolboxes.

Four kinds of operators, each with DEAP's calling convention:

=============  =============================================  ===========================
kind           called by the algorithm as                     DEAP fallback prefix
=============  =============================================  ===========================
``crossover``  ``mate(ind1, ind2) -> (ind1, ind2)``           ``cx`` (``cxTwoPoint``)
``mutation``   ``mutate(individual) -> (individual,)``        ``mut`` (``mutFlipBit``)
``selection``  ``select(individuals, k) -> list``             ``sel`` (``selNSGA2``)
``init``       ``init(container, n, ...) -> individual``      ``init`` (``initRepeat``)
=============  =============================================  ===========================

A name is looked up among the registered operators of its kind first, then among the
``deap.tools`` functions with the kind's prefix, so every DEAP operator is reachable by
name too; ``"package.module:function"`` imports a function from anywhere. The built-in
operators register themselves with the `register` decorator where they are defined
(``crossover``, ``mutation``, ``selection``, ``init``, ``integer``), as a plugin would:
this module imports none of them.

Options are checked when a spec is resolved, where a config value enters the program,
not deep inside a run: an unknown option, a missing required one, a probability outside
``[0, 1]`` or a count below 1 is a one-line ``ValueError`` naming the value.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import numbers
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar, overload

from deap import tools

__all__ = [
    "KINDS",
    "PROBABILITY_OPTIONS",
    "register",
    "get",
    "resolve",
    "register_on",
    "available",
    "load_plugins",
    "ENTRY_POINT_GROUP",
    "is_cardinality",
]

F = TypeVar("F", bound=Callable[..., Any])

KINDS: tuple[str, ...] = ("crossover", "mutation", "selection", "init")
"""The operator kinds, in the order a toolbox usually registers them."""

PROBABILITY_OPTIONS: frozenset[str] = frozenset({"indpb", "p", "cxpb", "mutpb"})
"""Option names checked to lie in ``[0, 1]`` unless an operator declares otherwise."""

_COUNT_OPTIONS = frozenset({"tournsize", "candidates"})
"""Option names checked to be integers >= 1 unless an operator declares otherwise."""

# How many leading positional arguments the algorithm passes at call time; the rest
# are options. An initialiser's container and length are bound when it is registered.
_CALL_ARGS = {"crossover": 2, "mutation": 1, "selection": 2, "init": 0}
_DEAP_PREFIX = {"crossover": "cx", "mutation": "mut", "selection": "sel", "init": "init"}


@dataclasses.dataclass(frozen=True)
class _Entry:
    function: Callable[..., Any]
    probabilities: frozenset[str]
    counts: frozenset[str]
    cardinality: bool = False


_REGISTRY: dict[str, dict[str, _Entry]] = {kind: {} for kind in KINDS}


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise ValueError(f"unknown operator kind {kind!r}; expected one of: {', '.join(KINDS)}")


def _parameter_names(function: Callable[..., Any]) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        return frozenset()


def register(
    kind: str,
    name: str | None = None,
    *,
    overwrite: bool = False,
    probabilities: Iterable[str] | None = None,
    counts: Iterable[str] | None = None,
    cardinality: bool = False,
) -> Callable[[F], F]:
    """Decorator that registers an operator under a name, returning it unchanged.

    Example::

        @operators.register("mutation")
        def flip_block(individual, indpb, width=8):
            ...
            return (individual,)

        toolbox.register("mutate", operators.get("mutation", "flip_block"), indpb=0.1)

    Args:
        kind: one of `KINDS`.
        name: the registered name; defaults to the function's ``__name__``.
        overwrite: replace an operator already registered under ``name``.
        probabilities: options that must lie in ``[0, 1]``; by default those of the
            function's parameters named in `PROBABILITY_OPTIONS`.
        counts: options that must be integers >= 1; by default its parameters named
            ``tournsize`` or ``candidates``.
        cardinality: the operator keeps the count of active genes (fixed-budget search,
            ``encoding.active``): an initialiser taking the count as ``k``, a mutation
            or crossover whose children have their parents' counts. A config accepts
            such operators only with a budget, and only such operators with one.

    Returns:
        The decorator.

    Raises:
        ValueError: on an unknown kind, or a name already taken by another function
            while ``overwrite`` is False.
    """
    _check_kind(kind)

    def decorator(function: F) -> F:
        if not callable(function):
            raise ValueError(f"cannot register {function!r} as a {kind} operator; expected a callable")
        key = function.__name__ if name is None else name
        if not isinstance(key, str) or not key:
            raise ValueError(f"operator name {key!r} is not valid; expected a non-empty string")
        known = _REGISTRY[kind].get(key)
        if known is not None and known.function is not function and not overwrite:
            raise ValueError(
                f"{kind} operator {key!r} is already registered ({_qualname(known.function)}); "
                "pass overwrite=True to replace it"
            )
        params = _parameter_names(function)
        _REGISTRY[kind][key] = _Entry(
            function,
            frozenset(params & PROBABILITY_OPTIONS if probabilities is None else probabilities),
            frozenset(params & _COUNT_OPTIONS if counts is None else counts),
            bool(cardinality),
        )
        return function

    return decorator


def _qualname(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", repr(function))
    return f"{module}.{qualname}" if module else qualname


def _import(path: str) -> Callable[..., Any]:
    """Imports ``"package.module:function"``."""
    module_name, _, attribute = path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import operator {path!r} ({error}); expected 'package.module:function'") from None
    if not callable(function):
        raise ValueError(f"operator {path!r} is {function!r}; expected a callable")
    return function


def _deap_function(kind: str, name: str) -> Callable[..., Any] | None:
    if not name.startswith(_DEAP_PREFIX[kind]):
        return None
    function = getattr(tools, name, None)
    return function if inspect.isfunction(function) else None


def _lookup(kind: str, name: str) -> _Entry:
    """The entry of ``name`` for ``kind``, with default option checks for unregistered ones."""
    entry = _REGISTRY[kind].get(name)
    if entry is not None:
        return entry
    function = _import(name) if ":" in name else _deap_function(kind, name)
    if function is None:
        known = ", ".join(sorted(_REGISTRY[kind])) or "(none registered)"
        prefix = _DEAP_PREFIX[kind]
        raise ValueError(
            f"unknown {kind} operator {name!r}; expected one of: {known}, "
            f"a deap.tools function named {prefix}* or 'package.module:function'"
        )
    return _default_entry(function)


def _default_entry(function: Callable[..., Any]) -> _Entry:
    """An unregistered function's entry: checks chosen by its parameter names."""
    params = _parameter_names(function)
    return _Entry(function, params & PROBABILITY_OPTIONS, params & _COUNT_OPTIONS)


def get(kind: str, name: str) -> Callable[..., Any]:
    """The operator function registered as ``name``.

    Falls back to ``deap.tools.<name>`` when the name has the kind's DEAP prefix
    (``cx``, ``mut``, ``sel``, ``init``), and imports ``"package.module:function"``.

    Args:
        kind: one of `KINDS`.
        name: a registered name, a ``deap.tools`` function name, or an import path.

    Returns:
        The function, ready for ``toolbox.register(alias, function, **options)``.

    Raises:
        ValueError: on an unknown kind or name (the message lists the known names).
    """
    _check_kind(kind)
    if not isinstance(name, str):
        raise ValueError(f"operator name {name!r} is not a string; expected a name such as 'uniform'")
    return _lookup(kind, name).function


def _infer_kind(name: str) -> str | None:
    """The kind of a name given without one; None for an import path."""
    kinds = [kind for kind in KINDS if name in _REGISTRY[kind]]
    if len(kinds) > 1:
        raise ValueError(f"operator {name!r} is registered as {' and '.join(kinds)}; pass kind= to choose")
    if kinds:
        return kinds[0]
    if ":" in name:
        return None
    for kind in KINDS:
        if _deap_function(kind, name) is not None:
            return kind
    known = ", ".join(sorted({n for names in _REGISTRY.values() for n in names}))
    raise ValueError(
        f"unknown operator {name!r}; expected one of: {known}, a deap.tools function "
        "(cx*, mut*, sel*, init*) or 'package.module:function'"
    )


def _split_spec(spec: Any) -> tuple[Any, dict[str, Any]]:
    """``(name or callable, options)`` of a spec, without validating them."""
    if isinstance(spec, str) or callable(spec):
        return spec, {}
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "name" not in options:
            raise ValueError(f"operator spec {spec!r} has no 'name'; expected e.g. {{'name': 'uniform', 'indpb': 0.5}}")
        name = options.pop("name")
        if not isinstance(name, str):
            raise ValueError(f"operator spec name {name!r} is not a string; expected a name such as 'uniform'")
        bad = [key for key in options if not isinstance(key, str)]
        if bad:
            raise ValueError(f"operator spec option {bad[0]!r} is not a string; expected option names")
        return name, options
    raise ValueError(f"operator spec {spec!r} is not valid; expected a name, a callable or a dict with 'name'")


def _check_options(
    label: str,
    entry: _Entry,
    kind: str | None,
    options: Mapping[str, Any],
    bound_args: int | None,
) -> None:
    """Raises a one-line ValueError for an unknown, missing or out-of-range option.

    ``bound_args`` is how many positional arguments precede the options (call-time
    arguments plus those bound at registration); None skips the missing-option check.
    """
    try:
        parameters = list(inspect.signature(entry.function).parameters.values())
    except (TypeError, ValueError):
        parameters = None
    if parameters is not None:
        kinds = inspect.Parameter
        takes_any = any(p.kind is kinds.VAR_KEYWORD for p in parameters)
        call_args = _CALL_ARGS[kind] if kind is not None else 0
        positional = [p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        at_call = {p.name for p in positional[:call_args]}
        accepted = [
            p.name for p in parameters
            if p.name not in at_call and p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        ]
        names = {p.name for p in parameters}
        for key in options:
            if key in accepted or (takes_any and key not in names):  # **kwargs takes new names
                continue
            listed = ", ".join(accepted) or "none"
            raise ValueError(f"{label} has no option {key!r}; accepted options: {listed}")
        if bound_args is not None:
            missing = [
                p.name for p in positional[bound_args:]
                if p.default is kinds.empty and p.name not in options
            ] + [
                p.name for p in parameters
                if p.kind is kinds.KEYWORD_ONLY and p.default is kinds.empty and p.name not in options
            ]
            if missing:
                raise ValueError(f"{label} needs option {missing[0]!r}; accepted options: {', '.join(accepted)}")
    for key, value in options.items():
        if key in entry.probabilities:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0
            if not ok:
                raise ValueError(f"{label}: {key}={value!r} is not a probability; expected a number in [0, 1]")
        if key in entry.counts:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
            if not ok:
                raise ValueError(f"{label}: {key}={value!r} is not a count; expected an integer >= 1")


def _resolve(spec: Any, kind: str | None, args: Sequence[Any] | None) -> tuple[Callable[..., Any], dict[str, Any]]:
    if kind is not None:
        _check_kind(kind)
    target, options = _split_spec(spec)
    if callable(target):
        entry = _default_entry(target)
        label = getattr(target, "__name__", repr(target))
    else:
        if kind is None:
            kind = _infer_kind(target)
        entry = _lookup(kind, target) if kind is not None else _default_entry(_import(target))
        label = f"{kind or 'operator'} {target!r}"
    # An initialiser's container and length are bound later, unless given now.
    bound: int | None
    if kind is None or (kind == "init" and args is None):
        bound = None
    else:
        bound = _CALL_ARGS[kind] + len(args or ())
    _check_options(label, entry, kind, options, bound)
    return entry.function, options


def resolve(spec: Any, kind: str | None = None) -> tuple[Callable[..., Any], dict[str, Any]]:
    """Turns an operator spec from code or a config into ``(function, options)``.

    Args:
        spec: a name (``"two_point"``, ``"cxTwoPoint"``, ``"pkg.mod:fn"``), a dict
            ``{"name": "uniform", "indpb": 0.5}`` (as a TOML table gives it), or a
            callable (options empty).
        kind: one of `KINDS`; inferred from the name when omitted (registered names,
            then the DEAP prefix).

    Returns:
        The function and a new dict of its options, checked against its signature.

    Raises:
        ValueError: on an unknown or ambiguous name, an option the function does not
            take, a required option missing (except an initialiser's container and
            length), a probability outside ``[0, 1]`` or a count below 1.
    """
    return _resolve(spec, kind, None)


def register_on(toolbox: Any, alias: str, kind: str, spec: Any, *args: Any) -> None:
    """Resolves ``spec`` and registers it on a DEAP toolbox under ``alias``.

    Same as ``toolbox.register(alias, function, *args, **options)``; ``args`` bind the
    leading arguments, e.g. an initialiser's container and length::

        register_on(toolbox, "mate", "crossover", {"name": "uniform", "indpb": 0.5})
        register_on(toolbox, "individual", "init", "random_density", creator.Individual, 2048)

    Args:
        toolbox: a ``deap.base.Toolbox``.
        alias: the toolbox attribute, e.g. ``"mate"``, ``"mutate"``, ``"select"``.
        kind: one of `KINDS`.
        spec: as for `resolve`.
        *args: positional arguments bound after the call-time ones.

    Raises:
        ValueError: as `resolve`.
    """
    function, options = _resolve(spec, kind, args)
    toolbox.register(alias, function, *args, **options)


def is_cardinality(spec: Any, kind: str) -> bool:
    """Whether an operator spec names a count-keeping (cardinality) operator.

    Registered operators say so with ``register(..., cardinality=True)``; a callable or
    an import path may carry the attribute ``cardinality = True``.

    Args:
        spec: as for `resolve`.
        kind: one of `KINDS`.

    Returns:
        True for a count-keeping operator.

    Raises:
        ValueError: as `resolve`, for an unknown kind or name.
    """
    _check_kind(kind)
    target, _ = _split_spec(spec)
    if callable(target):
        return bool(getattr(target, "cardinality", False))
    entry = _REGISTRY[kind].get(target)
    if entry is not None:
        return entry.cardinality
    return bool(getattr(_lookup(kind, target).function, "cardinality", False))


@overload
def available(kind: str) -> list[str]: ...


@overload
def available(kind: None = None) -> dict[str, list[str]]: ...


def available(kind: str | None = None) -> list[str] | dict[str, list[str]]:
    """Registered operator names (DEAP's own, reachable by name too, are not listed).

    Args:
        kind: one of `KINDS`, or None for every kind.

    Returns:
        The sorted names of ``kind``, or ``{kind: names}`` for every kind.

    Raises:
        ValueError: on an unknown kind.
    """
    if kind is None:
        return {k: sorted(_REGISTRY[k]) for k in KINDS}
    _check_kind(kind)
    return sorted(_REGISTRY[kind])


ENTRY_POINT_GROUP = "evoprune.operators"
"""Entry-point group whose modules are imported by `load_plugins` (their decorators register)."""

_LOADED_ENTRY_POINTS = False


def load_plugins(modules: Iterable[str] = (), *, entry_points: bool = True) -> list[str]:
    """Imports user modules whose ``@operators.register`` decorators add operators.

    A config names them with ``plugins = ["my_ops"]``, the command line with
    ``--plugin my_ops``; an installed package can declare them once for everyone::

        [project.entry-points."evoprune.operators"]
        my_ops = "my_package.my_ops"

    Importing is idempotent: a module already imported is not imported again.

    Args:
        modules: importable module names (``"my_ops"``, ``"package.ops"``).
        entry_points: also load every entry point of `ENTRY_POINT_GROUP` (once per process).

    Returns:
        The names of the modules loaded by this call (entry points included).

    Raises:
        ValueError: a module that is not a string or cannot be imported (one line).
    """
    global _LOADED_ENTRY_POINTS
    loaded: list[str] = []
    for module in modules:
        if not isinstance(module, str) or not module.strip():
            raise ValueError(f"plugin {module!r} is not a module name; expected an importable module such as 'my_ops'")
        try:
            importlib.import_module(module.strip())
        except Exception as error:  # noqa: BLE001 - a plugin's own errors too: name the plugin
            first = str(error).splitlines()[0] if str(error) else ""
            raise ValueError(
                f"plugin {module!r} cannot be imported ({type(error).__name__}: {first}); "
                "expected an importable module on sys.path / PYTHONPATH"
            ) from None
        loaded.append(module.strip())
    if entry_points and not _LOADED_ENTRY_POINTS:
        from importlib.metadata import entry_points as find_entry_points

        _LOADED_ENTRY_POINTS = True
        for point in find_entry_points(group=ENTRY_POINT_GROUP):
            try:
                point.load()
            except Exception as error:  # noqa: BLE001
                first = str(error).splitlines()[0] if str(error) else ""
                raise ValueError(
                    f"operator entry point {point.name!r} ({point.value}) cannot be loaded "
                    f"({type(error).__name__}: {first}); expected an importable module"
                ) from None
            loaded.append(point.value)
    return loaded

