"""The package's shape, read from its source (no module is imported): imports point one way.

`docs/layout.md` describes the layers: `app/` (the shell) over `studies/` over
`experiment/` (a config and running it) over `methods/` over the session and the shared
layers. These tests read every ``import`` in ``evoprune_tf/`` (those inside functions and
under ``TYPE_CHECKING`` too) and fail on an import that runs back up a layer, on any import
circle between packages or between modules, and on a function over 80 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "evoprune_tf"

#: The upper layers, top first; every other package or module of evoprune_tf is below them.
LAYERS = ("app", "studies", "experiment", "methods")

MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    """``dotted module name -> file`` for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> list[str]:
    """Every absolute ``evoprune_tf`` name ``path`` imports, as ``module`` or ``module.name``."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in names if name.split(".")[0] == "evoprune_tf"]


def _module_graph() -> dict[str, set[str]]:
    """``module -> the modules it imports`` (a name imported from a module counts as that module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        for name in _imports(path):
            while name not in modules:
                name = name.rpartition(".")[0]
            if name != module and not module.startswith(name + "."):  # a package's own __init__ is its face
                graph.setdefault(module, set()).add(name)
    return graph


def _unit(module: str) -> str:
    """The package (or top-level module) of ``evoprune_tf`` that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def _rank(unit: str) -> int:
    return len(LAYERS) - LAYERS.index(unit) if unit in LAYERS else 0


def test_no_import_runs_back_up_a_layer() -> None:
    back_up = []
    for module, targets in _module_graph().items():
        for target in targets:
            if _unit(module) != "__init__" and _rank(_unit(target)) > _rank(_unit(module)):
                back_up.append(f"{module} -> {target}")
    assert back_up == [], f"imports that run back up ({' over '.join(LAYERS)} over the rest): {back_up}"


def test_the_shared_layers_never_import_the_shell() -> None:
    shell = [f"{module} -> {target}" for module, targets in _module_graph().items() for target in targets
             if _unit(target) == "app" and _unit(module) not in ("app", "__init__")]
    assert shell == []


def test_no_import_circle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _module_graph().items():
        if _unit(module) != "__init__":  # the lazy public API names every layer
            packages.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    assert _circles(packages) == []


def test_no_import_circle_between_modules() -> None:
    assert _circles(_module_graph()) == []


def test_the_layering_check_sees_a_circle_and_an_import_back_up() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _rank("app") > _rank("studies") > _rank("experiment") > _rank("methods") > _rank("session") == 0


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_over_80_lines(path: Path) -> None:
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            where = f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{where} ({lines} lines)")
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"
