"""The house rules, checked on every run: retrieval <- indexer <- api (no import runs up a layer),
no import cycles between files, modules of at most 300 lines and functions of at most 60."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"retrieval": 0, "indexer": 1, "api": 2}
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The project module an imported name lives in (`a.b.c` -> `a.b` when `c` is an attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            owner = _owner(name) if name.split(".")[0] in LAYERS else None
            if owner and owner != mod:
                found.add(owner)
    return found


GRAPH = {mod: _imports(mod, path) for mod, path in MODULES.items()}


def test_the_checker_sees_the_packages() -> None:
    assert {"retrieval.search", "indexer.pipeline", "api.cli"} <= set(MODULES)
    assert "retrieval.results" in GRAPH["retrieval.rerank.reranker"]  # from-import of a name
    assert "retrieval.encoders.openclip" in GRAPH["retrieval.encoders.factory"]  # of a module


def test_no_import_runs_up_a_layer() -> None:
    up = sorted(
        f"{a} -> {b}"
        for a, deps in GRAPH.items()
        for b in deps
        if LAYERS[b.split(".")[0]] > LAYERS[a.split(".")[0]]
    )
    assert up == [], "imports that run up the layers (retrieval <- indexer <- api): " + ", ".join(
        up
    )


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_a_cycle_is_found() -> None:
    """The cycle finder itself must work, or the test above proves nothing."""
    saved = dict(GRAPH)
    try:
        GRAPH["retrieval.modality"] = GRAPH["retrieval.modality"] | {"retrieval.search"}
        assert any("retrieval.modality" in c and "retrieval.search" in c for c in _cycles())
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


@pytest.mark.parametrize("pkg", sorted(LAYERS))
def test_modules_and_functions_stay_small(pkg: str) -> None:
    long = []
    for mod, path in MODULES.items():
        if not mod.startswith(pkg):
            continue
        src = path.read_text()
        if len(src.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert long == [], "split these by responsibility: " + "; ".join(long)
