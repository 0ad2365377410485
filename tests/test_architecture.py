"""The house's rules, read from the code's own imports: no import cycles (type-only imports under
``if TYPE_CHECKING:`` aside) and no import running up the data flow (docs/architecture.md).

``python tests/test_architecture.py`` prints the package-level import graph.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Floors, from the bottom of the flow up: a unit imports only units on lower floors.
FLOORS: list[set[str]] = [
    {"ares_stream", "errors", "events", "redact"},
    {"codec", "config", "logs"},
    {"clock", "feed", "store", "rule", "shards"},
    {"features"},
    {"learners"},
    {"validation"},
    {"batch", "trading"},
    {"engine"},
    {"runtime", "report", "status"},
    {"monitor"},  # ares-stream monitor: the live dashboard, reading store/ only
    {"replay", "daemon"},
    {"sim"},
    {"stress"},  # ares-stream stress: the engine over simulated and historical scenarios
    {"cluster"},  # ares-stream cluster: the shards as Ray actors
    {"cli"},
]


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "ares_stream").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for n in ast.walk(node))
    return out


def _targets(node: ast.AST, name: str, is_package: bool, mods: dict[str, Path]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            parts = name.split(".")
            base = parts[: len(parts) - node.level + (1 if is_package else 0)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
        yield from subs
        if len(subs) < len(node.names):
            yield target


def imports() -> set[tuple[str, str]]:
    """(importer, imported) module pairs, function-level imports included, type-only left out."""
    mods, edges = modules(), set()
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            for target in _targets(node, name, path.name == "__init__.py", mods):
                if target in mods and target != name:
                    edges.add((name, target))
    return edges


def unit(module: str) -> str:
    """``ares_stream.feed.ws`` -> ``feed``; ``ares_stream`` -> ``ares_stream``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def floor(u: str) -> int:
    return next(i for i, units in enumerate(FLOORS) if u in units)


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    adj: dict[str, set[str]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(adj):
        if v not in index:
            visit(v)
    return out


def test_every_unit_has_a_floor() -> None:
    units = {unit(m) for m in modules()}
    assert units <= set().union(*FLOORS), units - set().union(*FLOORS)


def test_no_import_cycles() -> None:
    assert cycles(imports()) == []


def test_no_import_runs_up_the_flow() -> None:
    up = sorted((a, b) for a, b in imports()
                if unit(a) != unit(b) and floor(unit(b)) >= floor(unit(a)))
    assert up == [], up


def test_the_daemon_knows_nothing_of_the_simulator() -> None:
    assert not [(a, b) for a, b in imports() if unit(a) == "daemon" and unit(b) == "sim"]


def test_only_the_store_runs_sql() -> None:
    """sqlite3 and sqlite_utils are imported by store/ alone (type annotations aside)."""
    users = set()
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        skip = _type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("sqlite3", "sqlite_utils") for n in names):
                users.add(unit(name))
    assert users == {"store"}, users


def test_no_sql_text_outside_the_store() -> None:
    """No string outside store/ reads like a statement (SELECT, INSERT … in capitals)."""
    statement = re.compile(r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|"
                           r"DELETE\s+FROM\s|CREATE\s+(TABLE|INDEX)\s|PRAGMA\s)", re.S)
    found = []
    for name, path in modules().items():
        if unit(name) == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and statement.match(node.value):
                found.append(f"{name}: {node.value[:40]!r}")
    assert found == [], found


def test_tests_mirror_the_package() -> None:
    """Each test module under a package folder names a module of that package."""
    mods = modules()
    strays = []
    for path in (ROOT / "tests").rglob("test_*.py"):
        rel = path.relative_to(ROOT / "tests")
        if len(rel.parts) < 2:
            continue  # top-level tests: whole-program behaviour (demo, config, engine …)
        package = "ares_stream." + ".".join(rel.parts[:-1])
        if package not in mods:
            strays.append(str(rel))
    assert strays == [], strays


if __name__ == "__main__":
    graph: dict[str, set[str]] = {}
    for a, b in imports():
        if unit(a) != unit(b):
            graph.setdefault(unit(a), set()).add(unit(b))
    for u in sorted(graph, key=lambda u: (-floor(u), u)):
        print(f"{u:<12} (floor {floor(u):>2}) -> {', '.join(sorted(graph[u], key=floor))}")
    sys.exit(0)
