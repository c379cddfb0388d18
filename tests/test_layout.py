"""The shape of the package (issue 24): the library never imports its command line, no import cycles, no
source file over 500 lines. Read from the source with ``ast``, so a lazy import inside a function counts too
(only imports under ``if TYPE_CHECKING:`` are left out: they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"core": "jinav3", "integrations": "jinav3.integrations"}  # folder -> the package it installs as
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (``jinav3.integrations.stores.base``)."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports (at run time, anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name of pkg
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            while target and target not in MODULES:  # `import jinav3.integrations.qdrant.x` -> the module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
CLI = "jinav3.integrations.cli"


def _is_cli(module: str) -> bool:
    return module == CLI or module.startswith(CLI + ".")


def test_the_library_never_imports_the_command_line():
    # Entry points (`python -m ...`) sit on top like the command line itself.
    importers = sorted(name for name, imported in GRAPH.items()
                       if not _is_cli(name) and not MODULES[name].name == "__main__.py"
                       and any(_is_cli(m) for m in imported))
    assert importers == []


def _cycle() -> list[str] | None:
    """One import cycle among the modules, or None. A package's ``__init__`` importing its own modules is the
    package's public face, not a dependency of theirs: an edge from a module up to a package that contains it is
    left out (``from jinav3 import env`` resolves to jinav3.env already)."""
    def edges(name: str) -> list[str]:
        return sorted(m for m in GRAPH[name] if not name.startswith(m + "."))

    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for nxt in edges(name):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_no_import_cycles():
    assert _cycle() is None


def test_the_graph_sees_real_imports():
    """The checks above can fail: the graph has the edges a reader sees (lazy imports included)."""
    assert "jinav3.integrations.stores.base" in GRAPH["jinav3.integrations.stores.vector_store"]
    assert "jinav3.integrations.stores.uri" in GRAPH["jinav3.integrations.cli.index"]
    assert "jinav3.integrations.cli.index_ray" in GRAPH["jinav3.integrations.cli.index"]
    assert "jinav3.integrations.ray" in GRAPH["jinav3.integrations.cli.index_ray"]  # inside a function
    assert any(_is_cli(m) for m in GRAPH["jinav3.integrations.server.__main__"])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_source_file_over_500_lines(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines; split it along its seams"


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    graph = {name: set(imported) for name, imported in GRAPH.items()}
    # records -> vector_store -> ... -> records
    graph["jinav3.integrations.stores.records"].add("jinav3.integrations.stores.vector_store")
    monkeypatch.setattr(__import__(__name__), "GRAPH", graph)
    cycle = _cycle()
    assert cycle is not None and cycle[0] == cycle[-1] and "jinav3.integrations.stores.records" in cycle
