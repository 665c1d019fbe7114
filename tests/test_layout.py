"""The package's shape, checked from its source: no import cycles, no private names imported
across modules, no task function longer than a screenful, one routing table."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "deepfit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.Module, *, top_level_only: bool) -> list[tuple[str, list[str], int]]:
    """(module imported, names imported, line) for every deepfit import; with ``top_level_only``
    only those run at import time (not in functions, not under TYPE_CHECKING)."""
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not top_level_only:
                    visit(child, False)
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("deepfit"):
                found.append((child.module, [a.name for a in child.names], child.lineno))
            elif isinstance(child, ast.Import):
                found.extend((a.name, [], child.lineno) for a in child.names if a.name.startswith("deepfit"))
            visit(child, top)

    visit(tree, True)
    return found


def _resolve(target: str, names: list[str], modules: dict[str, ast.Module]) -> set[str]:
    """The modules an import statement makes Python load (a package's __init__ counts)."""
    out = {target} if target in modules else set()
    out |= {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
    parts = target.split(".")
    out |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules}
    return out


def test_no_import_cycles_at_import_time():
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, tree in modules.items():
        for target, names, _ in _imports(tree, top_level_only=True):
            graph[name] |= _resolve(target, names, modules) - {name}
    # A package importing its own submodules (explicit re-exports) is not a cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and t in modules)}
    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_names_imported_from_another_module():
    bad = []
    for name, tree in _modules().items():
        for target, names, line in _imports(tree, top_level_only=False):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != name:
                bad.append(f"{name}:{line} imports {', '.join(private)} from {target}")
    assert not bad, "\n".join(bad)


def test_task_functions_stay_short():
    """No function in tasks/ over 80 lines: a task is small methods the runner calls."""
    long = []
    for path in (PACKAGE / "tasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)


def test_one_routing_table_names_every_task_and_artifact_kind():
    from deepfit.artifact import KINDS
    from deepfit.tasks import TASK_MODULES, task_classes

    assert set(TASK_MODULES) == set(KINDS)
    assert {kind: cls.kind for kind, cls in task_classes().items()} == {k: k for k in TASK_MODULES}
    assert all(cls.Predictor.kind == kind for kind, cls in task_classes().items())
