"""No import cycles under tasks/ and flows/: the graph is read from the sources (every import, at any depth)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, packages=("tasks", "flows")) -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from a.b import c` counts a.b, and a.b.c when c is a module)."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in files and t != name}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_under_tasks_and_flows():
    assert cycles(import_graph(ROOT)) == []


def test_a_cycle_through_a_late_import_is_found(tmp_path):
    pkg = tmp_path / "tasks" / "toy"
    pkg.mkdir(parents=True)
    for name in ("__init__", "a", "b", "c"):
        (pkg / f"{name}.py").write_text("")
    (tmp_path / "flows").mkdir()
    (pkg / "a.py").write_text("from tasks.toy import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")  # relative, inside a function
    (pkg / "c.py").write_text("import tasks.toy.a\n")
    assert cycles(import_graph(tmp_path)) == [["tasks.toy.a", "tasks.toy.b", "tasks.toy.c"]]
    (pkg / "c.py").write_text("")
    assert cycles(import_graph(tmp_path)) == []
