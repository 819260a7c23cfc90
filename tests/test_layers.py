"""The package's layers (README "Package layout"): every import, at module or function level, goes to
the same layer or one before it, and the import graph has no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "jaxmix"
RANK = {"errors": 0, "status": 0, "progress": 0, "devices": 0, "dists": 0, "spec": 1, "core": 2, "fitting": 3,
        "results": 4,
        "inference": 5, "api": 6, "gee": 7, "bayes": 7, "plots": 8, "compare": 8, "datasets": 8, "runtime": 3,
        "cli": 9, "__init__": 9}


def _modules():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield ".".join(parts), is_pkg, path


def _imports(mod: str, is_pkg: bool, path: Path) -> set[str]:
    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "jaxmix":
                target = node.module.split(".")
            else:
                continue
            for alias in node.names:  # ``from . import runtime`` imports a module
                out.add(".".join(target + [alias.name]) if not node.module or node.level and not node.module else ".".join(target))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "jaxmix")
    return out


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph():
    names = {m for m, _, _ in _modules()}
    graph = {}
    for mod, is_pkg, path in _modules():
        deps = set()
        for t in _imports(mod, is_pkg, path):
            while t and t not in names:  # an imported name, not a module: its module
                t = t.rpartition(".")[0]
            if t and t != mod:
                deps.add(t)
        graph[mod] = deps
    return graph


def test_every_import_goes_to_the_same_layer_or_an_earlier_one():
    bad = [(m, d) for m, deps in _graph().items() for d in deps
           if _layer(d) in RANK and _layer(m) in RANK and RANK[_layer(d)] > RANK[_layer(m)]]
    assert not bad, bad
    assert set(_layer(m) for m in _graph()) <= set(RANK), "a new top-level module: give it a layer"


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError(" -> ".join(stack + [m, d]))
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
