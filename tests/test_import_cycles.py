"""No import cycles between the modules of ``tasks/`` and ``flows/``, function-level imports included.

``lint-imports`` (contracts in ``pyproject.toml``) checks the layers between packages; this checks
the module level, where a cycle hides most easily: an import inside a function "works" because
it runs late, yet it still ties the two modules together, so neither can be understood, tested or
moved alone (issue 12 item 7). Every ``import`` statement in every module is read with ``ast`` —
module level, inside functions and classes, and under ``if TYPE_CHECKING:`` (a type still couples
the modules; a small Protocol in the lower module is the way out) — resolved to a module of this
repository, and the strongly connected components of that graph are reported with the import
lines that form them.

Edges: ``import a.b.c`` and ``from a.b import c`` (``c`` a submodule) point at ``a.b.c``;
``from a.b import name`` points at ``a.b`` (its ``__init__``). The packages Python initialises on
the way (``a``, ``a.b``) are not counted, as ``import-linter`` does not count them: a package's
``__init__`` re-exporting its children would otherwise put every child in a cycle with it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "flows")

# Components allowed for now, each a set of module-name patterns; a component is allowed when every
# module in it matches one pattern of one entry. Delete an entry the day its cycle is gone
# (``test_allowlist_is_still_needed`` says so by skipping with the entry's name).
#: Cycles tolerated for now, by name → module patterns (empty: there are none; flows/cli's went
#: when it became a package). An entry must say why and when it goes.
ALLOWED_CYCLES: dict[str, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Edge:
    """One import statement that makes ``source`` depend on ``target``, with where it is written."""

    source: str
    target: str
    path: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.source} -> {self.target}  ({self.text})"


def discover_modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of the given top-level packages, by dotted name (a package by its ``__init__``)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a ``from .x import y`` in ``module`` names (PEP 328)."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _in_repo(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of this repository, if any."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Edge]:
    """The repository modules ``module`` imports, from every import statement anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _in_repo(alias.name, modules)
                if target is not None and target != module:
                    yield Edge(module, target, path, node.lineno, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, is_package, node.level, node.module) if node.level else node.module or ""
            text = f"from {'.' * node.level}{node.module or ''} import "
            for alias in node.names:
                target = modules.get(f"{base}.{alias.name}") and f"{base}.{alias.name}"
                target = target or _in_repo(base, modules)
                if target is not None and target != module:
                    yield Edge(module, target, path, node.lineno, text + alias.name)


def import_graph(modules: dict[str, Path]) -> dict[str, list[Edge]]:
    """Each module's outgoing edges (one per import statement and imported name)."""
    return {module: list(imports_of(module, path, modules)) for module, path in modules.items()}


def strongly_connected(graph: dict[str, list[Edge]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, []):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _allowed_by(component: set[str]) -> str | None:
    for name, patterns in ALLOWED_CYCLES.items():
        if all(any(fnmatchcase(module, pattern) for pattern in patterns) for module in component):
            return name
    return None


def describe(component: set[str], graph: dict[str, list[Edge]]) -> str:
    """The component's modules and the import lines between them: what to cut to break it."""
    edges = [edge for module in sorted(component) for edge in graph[module] if edge.target in component]
    return f"cycle through {', '.join(sorted(component))}:\n" + "\n".join(f"  {edge}" for edge in edges)


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Edge]]:
    return import_graph(discover_modules())


def test_no_import_cycles(graph: dict[str, list[Edge]]) -> None:
    cycles = [c for c in strongly_connected(graph) if _allowed_by(c) is None]
    assert not cycles, "import cycles (function-level imports count too):\n" + "\n".join(
        describe(c, graph) for c in cycles
    )


def test_allowlist_is_still_needed(graph: dict[str, list[Edge]]) -> None:
    used = {_allowed_by(c) for c in strongly_connected(graph)}
    stale = sorted(set(ALLOWED_CYCLES) - used)
    assert not stale, f"ALLOWED_CYCLES entries no longer needed, delete them: {stale}"


def test_checker_finds_function_level_and_relative_cycles(tmp_path: Path) -> None:
    """The checker itself: a cycle closed by an import inside a function, via a relative import."""
    pkg = tmp_path / "tasks" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from tasks.pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import X\n")
    (pkg / "d.py").write_text("import tasks.pkg.a\n")
    found = strongly_connected(import_graph(discover_modules(tmp_path, ("tasks",))))
    assert found == [{"tasks.pkg.a", "tasks.pkg.b", "tasks.pkg.c"}]
