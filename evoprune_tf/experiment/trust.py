"""Which modules a stored config may import: `check_stored_modules`.

Validating a config imports the modules it names: its ``plugins``, the module of every
``"package.module:function"`` operator spec, and the module of ``train.head =
"module:function"``. Importing a module runs its code. A config the user wrote (a TOML
file, the Python API) is trusted as the user's own code is. A config read back from a
store (a run's ``config.json`` for ``evoprune explain``, a checkpoint's config for
``evoprune resume``) may have been written by anyone who can write to that store, so
before it is validated every module it names must be allowed by the user: by name
(``--plugin NAME``, repeatable) or all at once (``--trust-plugins``). Otherwise the
command stops with one line naming the modules the stored config wants and how to allow
them. Installed ``evoprune.operators`` entry points are installed code, and stay loaded.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["stored_config_modules", "check_stored_modules", "add_trust_arguments"]

_ALIASES = ("init", "select", "mate", "mutate", "survive")


def _spec_module(spec: Any) -> str | None:
    """The module an operator spec imports (``"pkg.mod:fn"`` or ``{"name": "pkg.mod:fn"}``), else None."""
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    if isinstance(name, str) and ":" in name:
        return name.partition(":")[0].strip()
    return None


def stored_config_modules(raw: Mapping[str, Any]) -> dict[str, str]:
    """Every module a raw config would import when validated or run, with where it is named.

    Args:
        raw: a nested config dict (``${VAR}`` is expanded first, as validation does).

    Returns:
        ``module -> the key naming it`` (``plugins``, ``operators.mate``, ``train.head``),
        in the order found.
    """
    from evoprune_tf.experiment.config import _expand  # the config module is heavy; the command line imports this one early

    raw = _expand(dict(raw))
    found: dict[str, str] = {}
    plugins = raw.get("plugins", [])
    for plugin in plugins if isinstance(plugins, list) else [plugins]:
        if isinstance(plugin, str) and plugin.strip():
            found.setdefault(plugin.strip(), "plugins")
        else:  # not a module name: let validation name it, but never import it unasked
            found.setdefault(repr(plugin), "plugins")
    ops = raw.get("operators", {})
    if isinstance(ops, Mapping):
        for alias in _ALIASES:
            module = _spec_module(ops.get(alias))
            if module is not None:
                found.setdefault(module, f"operators.{alias}")
    train = raw.get("train", {})
    head = train.get("head") if isinstance(train, Mapping) else None
    if isinstance(head, str) and ":" in head:
        found.setdefault(head.partition(":")[0].strip(), "train.head")
    return found


def check_stored_modules(raw: Mapping[str, Any], source: str, *, allowed: Iterable[str] = (),
                         trust: bool = False) -> None:
    """Refuse a stored config that names modules the user did not allow, before anything imports them.

    Args:
        raw: the stored config dict.
        source: where it came from, for the message (e.g. ``"config.json of run 3f2a..."``).
        allowed: module names the user allowed (``--plugin NAME``).
        trust: allow every module (``--trust-plugins``).

    Raises:
        ValueError: one line naming each module not allowed, where the config names it,
            and the options that allow it.
    """
    if trust:
        return
    allowed = {a.strip() for a in allowed}
    wanted = {m: key for m, key in stored_config_modules(raw).items() if m not in allowed}
    if not wanted:
        return
    names = ", ".join(f"{m!r} ({key})" for m, key in wanted.items())
    options = " ".join(f"--plugin {m}" for m in wanted)
    raise ValueError(
        f"the {source} wants to import module(s) {names}, and importing a module runs its code; "
        f"expected your permission: pass {options} if you trust it, or --trust-plugins to allow every module it names"
    )


def add_trust_arguments(parser: Any) -> None:
    """``--plugin NAME`` (repeatable) and ``--trust-plugins`` for commands that read a stored config.

    Args:
        parser: an `argparse.ArgumentParser` (or sub-parser).
    """
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="allow the stored config to import MODULE (a plugin, operator or head module); repeatable")
    parser.add_argument("--trust-plugins", action="store_true",
                        help="allow the stored config to import every module it names (only for a store you trust)")
