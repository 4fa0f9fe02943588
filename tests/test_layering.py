"""The package's layering, read from its source with ``ast``: which module imports which.

* No import cycle between tracekit's modules, and none dodged by importing inside a function
  (module A imports B at call time because B, directly or not, imports A).
* The analysis (everything outside ``tracekit/capture/``, the command line and the sweep runner,
  which runs captures) imports nothing from ``tracekit.capture``: reading a trace never needs
  the code that records one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tracekit"
#: the modules that run captures, besides tracekit/capture/ itself
RUNS_CAPTURES = {"tracekit.cli", "tracekit.sweep"}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(imported tracekit module, at the top level?)]; ``from M import x`` counts as
    M.x when that is a module, else M."""
    files = {_name(p): p for p in PKG.rglob("*.py")}
    out: dict[str, list[tuple[str, bool]]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = set(map(id, tree.body))
        for node in tree.body:  # `if TYPE_CHECKING:` blocks are not imports at run time
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                top |= {id(n) for n in ast.walk(node)}
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files
                         else node.module for a in node.names]
            else:
                continue
            if any(n.startswith("tracekit") for n in names):
                if isinstance(node, ast.If) or id(node) in top and _type_checking(tree, node):
                    continue
                found += [(n, id(node) in top) for n in names if n in files]
        out[mod] = found
    return out


def _type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for block in tree.body:
        if (isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                and any(n is node for n in ast.walk(block))):
            return True
    return False


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    return False


def _top_graph(imports) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for mod, found in imports.items():
        for target, at_top in found:
            if at_top:
                graph.setdefault(mod, set()).add(target)
    return graph


def test_no_import_cycle_at_the_top_level() -> None:
    graph = _top_graph(_imports())
    cycles = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                    if t != m and not m.startswith(t + ".") and _reaches(graph, t, m))
    assert cycles == []


def test_no_cycle_through_a_function_level_import() -> None:
    """An import inside a function (to keep start-up fast, or to defer torch) is fine; one that
    closes a cycle only dodges it at import time."""
    imports = _imports()
    graph: dict[str, set[str]] = {}
    for mod, found in imports.items():
        graph[mod] = {t for t, _ in found if t != mod and not mod.startswith(t + ".")}
    cycles = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if _reaches(graph, t, m))
    assert cycles == []


def test_the_analysis_imports_nothing_from_capture() -> None:
    bad = sorted(f"{m} imports {t}" for m, found in _imports().items() for t, _ in found
                 if t.startswith("tracekit.capture") and not m.startswith("tracekit.capture")
                 and m not in RUNS_CAPTURES)
    assert bad == []


def test_the_checks_see_a_cycle() -> None:
    """The graph walk itself: a made-up pair that imports each other is a cycle."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _reaches(graph, "b", "a") and not _reaches(graph, "a", "d")
