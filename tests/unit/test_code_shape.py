"""The shape the code must keep (docs/architecture.md): small modules, simple functions, and
no import cycle inside ``core/`` (TYPE_CHECKING imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

from radon.complexity import cc_visit

SRC = Path(__file__).resolve().parents[2] / "src" / "tidings"
MAX_LINES = 450
MAX_COMPLEXITY = 15


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_modules_are_small() -> None:
    long = {module_name(p): n for p in modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_complex_functions_say_why() -> None:
    """A function over complexity 15 (radon) must say why in its docstring ("Complexity")."""
    unexplained = []
    for path in modules():
        source = path.read_text()
        docs = {
            node.lineno: ast.get_docstring(node) or ""
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        for block in cc_visit(source):
            if block.complexity > MAX_COMPLEXITY and "Complexity" not in docs.get(block.lineno,
                                                                                  ""):
                unexplained.append(f"{module_name(path)}:{block.lineno} {block.name} "
                                   f"({block.complexity})")
    assert not unexplained, unexplained


def imports(path: Path) -> set[str]:
    """Modules of tidings that ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else (
        module_name(path))
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tidings"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base.startswith("tidings"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_core() -> None:
    core = {module_name(p): p for p in modules() if module_name(p).startswith("tidings.core.")}
    graph = {name: {m for m in imports(path) if m in core and m != name}
             for name, path in core.items()}
    assert cycles(graph) == []
