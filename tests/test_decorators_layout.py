"""How the decorators package is put together, read from its source with `ast`: its modules
import one another without cycles, and of the runner they import only the lifecycle contract."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from import_graph import find_cycle

DECORATORS = Path(__file__).resolve().parent.parent / "decorators"
PACKAGE = "tornado_run.decorators"


def _modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module under decorators/."""
    for path in sorted(DECORATORS.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(DECORATORS).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in `path`, nested ones included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names]


def _internal_graph() -> dict[str, set[str]]:
    """Which decorators modules each decorators module imports (a package import counts as
    importing its `__init__`, `from package import module` as importing that module)."""
    names = {name for name, _ in _modules()}
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        edges = graph.setdefault(module, set())
        for target, imported in _imports(module, path):
            if target in names and target != module:
                edges.add(target)
            edges.update(f"{target}.{name}" for name in imported if f"{target}.{name}" in names)
    return graph


def test_decorators_modules_import_each_other_without_cycles() -> None:
    graph = _internal_graph()
    assert f"{PACKAGE}.pools.registry" in graph[f"{PACKAGE}.shutdown"]
    assert f"{PACKAGE}.jobs" in graph[f"{PACKAGE}.shutdown"]
    # A package's __init__ importing its own modules is how packages work; leave those edges
    # out, as the modules need their package's __init__ to have run anyway.
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(f"{t}.")}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_decorators_import_no_runner_module_but_lifecycle() -> None:
    allowed = "tornado_run.runner.lifecycle"
    strays = []
    for module, path in _modules():
        for target, imported in _imports(module, path):
            if target == "tornado_run.runner":
                names = imported or ["(the package itself)"]
                strays += [f"{module}: tornado_run.runner.{n}" for n in names if n != "lifecycle"]
            elif target.startswith("tornado_run.runner.") and target != allowed:
                strays.append(f"{module}: {target}")
    assert not strays, "the decorators may import only the runner's lifecycle: " + ", ".join(strays)
