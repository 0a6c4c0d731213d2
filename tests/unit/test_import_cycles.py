"""No import cycles in src/, `TYPE_CHECKING` and function-level imports included: a cycle in the
types is still a cycle in the design (a module that needs another's shape declares a Protocol)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import submodule` depends on the submodule, not on the package
                subs = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
                targets = subs or {node.module}
            elif isinstance(node, ast.Import):
                targets = {alias.name for alias in node.names}
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_src() -> None:
    assert cycles(module_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_450_lines() -> None:
    """Small modules with one owner each: none in src/ over 450 lines."""
    sizes = {str(p.relative_to(SRC.parent)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert {path: n for path, n in sizes.items() if n > 450} == {}


def test_only_the_queue_package_holds_lua_scripts_or_job_keys() -> None:
    """One owner of the queue protocol: no module outside src/infrastructure/queue holds a Lua
    script or builds a job's Redis key."""
    queue = SRC / "infrastructure" / "queue"
    for path in SRC.rglob("*.py"):
        if queue in path.parents:
            continue
        text = path.read_text()
        for marker in ("redis.call(", "register_script(", '"arq:', "arq.constants"):
            assert marker not in text, f"{path} holds {marker!r}: it belongs in src/infrastructure/queue"
