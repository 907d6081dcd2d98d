"""The house: no import circles, rooms import in one direction, one home for each fact."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "s3gate"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (``from . import x`` counts x, not the package)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                deps.update(subs)
                if len(subs) < len(node.names) and base in modules:
                    deps.add(base)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_rooms_import_in_one_direction():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith(("s3gate.storage", "s3gate.auth")):
            assert not any(d.startswith("s3gate.http") for d in deps), (name, deps)
        if name.startswith("s3gate.auth"):
            assert not any(d.startswith("s3gate.storage") for d in deps), (name, deps)
        if not name.startswith("s3gate.http"):
            # S3's naming rules live in the storage room, not behind the URLs.
            assert "s3gate.http.paths" not in deps, name


def test_one_home_for_each_fact():
    sources = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    homes = {
        re.compile(r"[\"']X-Forwarded-[A-Za-z]+[\"']", re.I): {"http/forwarded.py"},  # a header read, not help text
        re.compile(r"\.is_loopback\b"): {"netaddr.py"},
        re.compile(r"0o600"): {"private.py"},
        re.compile(r"\.verify\(bucket, key"): {"http/links.py"},  # a gateway-signed link's check
    }
    for pattern, allowed in homes.items():
        where = {str(p.relative_to(PACKAGE)) for p, text in sources.items() if pattern.search(text)}
        assert where <= allowed, (pattern.pattern, where - allowed)
