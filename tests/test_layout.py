"""The package's shape: its folders are the pipeline's stages, each module imports only from its own stage or the
stages below it, and no module imports, even lazily inside a function, something that imports it back.

The graph is read from the source with ``ast`` (every ``import``/``from … import`` anywhere in a module, except
under ``if TYPE_CHECKING:``, which never runs), so a circle hidden in a function body counts too.
"""

import ast
from pathlib import Path

import autograder

PACKAGE = "autograder"
# README's Layout section, bottom to top: a module may import from its own stage and the ones before it. The
# foundations (the package, its errors, its atomic file writes) sit below every stage; the CLI and the demo above.
STAGES = ("foundations", "course", "run", "grading", "reports", "classroom", "lifecycle", "site", "commands")
FOUNDATIONS = {"autograder", "autograder.errors", "autograder.files"}
COMMANDS = {"autograder.cli", "autograder.demo", "autograder.__main__"}


def module_names() -> dict[str, Path]:
    """Every module of the package: dotted name → file (a package is its __init__.py)."""
    root = autograder.PACKAGE_DIR
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement that can run: at module level, in functions, classes and branches."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes(ast.Module([child], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(node)


def _imported(name: str, path: Path, node, modules: dict[str, Path]) -> set[str]:
    """The package's modules one import statement runs."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = ".".join(p for p in (package if node.level else "", node.module or "") if p)
        targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    found = set()
    for target in targets:
        while target and target.startswith(PACKAGE):      # importing a.b.c runs a.b's __init__ too
            if target in modules and not name.startswith(target + ".") and target != name:
                found.add(target)
            target = target.rpartition(".")[0]
    return found - {PACKAGE}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: set().union(*(_imported(name, path, node, modules)
                                for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")))))
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's circles, one per strongly connected component of two or more modules (Tarjan), each given as
    a path that returns to its start, e.g. [a, b, a]."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_circle_through(sorted(component), graph))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _circle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One circle inside a strongly connected component, found by a breadth-first walk back to its first module."""
    start, members = component[0], set(component)
    paths = {nxt: [start, nxt] for nxt in sorted(graph[start] & members)}
    while start not in paths:
        paths = {nxt: path + [nxt] for node, path in paths.items() for nxt in sorted(graph[node] & members)
                 if nxt not in path[1:]} or {start: [start, "…", start]}
    return paths[start]


def test_the_graph_sees_function_level_imports_and_skips_type_only_ones(tmp_path):
    tree = ast.parse("from .a import b\nif TYPE_CHECKING:\n    from .c import d\n"
                     "def f():\n    from . import e\n    import autograder.f.g\n")
    modules = {f"autograder.{m}": tmp_path for m in ("a", "a.b", "c", "e", "f", "f.g", "x")}
    found = set().union(*(_imported("autograder.x", tmp_path / "x.py", n, modules) for n in _import_nodes(tree)))
    assert found == {"autograder.a", "autograder.a.b", "autograder.e", "autograder.f", "autograder.f.g"}


def test_cycles_are_found_and_shown_as_a_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_something_that_imports_it_back():
    found = cycles(import_graph())
    assert not found, "import circles (each module imports the next):\n" + "\n".join(" → ".join(c) for c in found)


def stage(module: str) -> int:
    """Where a module stands in STAGES (its folder, or the foundations and commands at the package's top)."""
    if module in FOUNDATIONS:
        return 0
    if module in COMMANDS:
        return STAGES.index("commands")
    return STAGES.index(module.split(".")[1])


def test_every_module_sits_in_a_stage_folder():
    loose = sorted(name for name in module_names() if name.count(".") == 1 and name not in FOUNDATIONS | COMMANDS
                   and name.split(".")[1] not in STAGES)
    assert not loose, f"modules outside every stage's folder (README's Layout names the stages): {loose}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{name} ({STAGES[stage(name)]}) → {target} ({STAGES[stage(target)]})"
                  for name, targets in graph.items() for target in targets if stage(target) > stage(name))


def test_no_module_imports_from_a_stage_above_its_own():
    upward = upward_imports(import_graph())
    assert not upward, "imports that run up the pipeline:\n" + "\n".join(upward)


def test_an_import_up_the_pipeline_is_found_and_one_down_is_not():
    graph = {"autograder.grading.grade": {"autograder.reports.feedback", "autograder.run.execute", "autograder.files"},
             "autograder.cli": {"autograder.site.app"}, "autograder.errors": {"autograder.course.clock"}}
    assert upward_imports(graph) == ["autograder.errors (foundations) → autograder.course.clock (course)",
                                     "autograder.grading.grade (grading) → autograder.reports.feedback (reports)"]
