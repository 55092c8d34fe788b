"""The project's modules import one way and stay short: no import cycle (module- or function-level), none over 400 lines.

The graph is read with `ast` from every .py file outside tests/, so an import hidden inside a function counts as much
as one at the top: a cycle broken only by deferring one of its imports is still a cycle.
"""

import ast

import pytest

from utils.files import ROOT

SOURCE_FOLDERS = ("models", "utils", "benchmarks")  # with the scripts in the root: the project's code (tests apart)
MAX_LINES = 400


def project_modules(root=ROOT, packages=SOURCE_FOLDERS):
    """{dotted module name: path} of the scripts in the project root and every .py file under `packages`."""
    paths = list(root.glob("*.py")) + [p for folder in packages for p in (root / folder).rglob("*.py")]
    modules = {}
    for path in sorted(paths):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(tree, module, is_package):
    """Every module name an import statement anywhere in `tree` may load (`from a import b` yields a and a.b)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join(anchor + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(modules):
    """{module: sorted project modules it imports}."""
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set(imported_names(tree, name, path.name == "__init__.py")) & modules.keys()
        graph[name] = sorted(targets - {name})
    return graph


def find_cycles(graph):
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_path(graph, component):
    """One closed import path through a component, e.g. a -> b -> c -> a, for the failure message."""
    members, start = set(component), component[0]
    path, seen = [start], {start}
    while True:
        step = next(m for m in graph[path[-1]] if m in members)
        if step in seen:
            return " -> ".join(path[path.index(step):] + [step])
        path.append(step)
        seen.add(step)


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": ["b"], "b": ["c"], "c": []}, []),
        ({"a": ["b"], "b": ["a"], "c": ["a"]}, [["a", "b"]]),
        ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"]}, [["a", "b", "c"]]),
        ({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_find_cycles(graph, expected):
    assert sorted(find_cycles(graph)) == expected


def test_imports_resolved_at_any_depth(tmp_path):
    """Function-level, relative and `from package import module` imports all become edges."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "pkg/b.py").write_text("from .c import g\n")
    (tmp_path / "pkg/c.py").write_text("import pkg.a\n\ndef g():\n    pass\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_x.py").write_text("import pkg.a\n")
    modules = project_modules(tmp_path, packages=("pkg",))
    assert sorted(modules) == ["pkg", "pkg.a", "pkg.b", "pkg.c"]
    graph = import_graph(modules)
    assert graph["pkg.a"] == ["pkg", "pkg.b"]
    assert graph["pkg.b"] == ["pkg.c"]
    cycle = find_cycles(graph)
    assert cycle == [["pkg.a", "pkg.b", "pkg.c"]]
    assert cycle_path(graph, cycle[0]) == "pkg.a -> pkg.b -> pkg.c -> pkg.a"


def test_no_import_cycles():
    graph = import_graph(project_modules())
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(f"{cycle_path(graph, c)} (all of {', '.join(c)})" for c in cycles)


def test_modules_short():
    counts = {name: len(path.read_text().splitlines()) for name, path in project_modules().items()}
    assert not {name: n for name, n in counts.items() if n > MAX_LINES}
