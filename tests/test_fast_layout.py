"""How the fast server's package is put together, read from its source with `ast`: its
modules import one another without cycles, imports made only for type checking included."""

from __future__ import annotations

import ast
from pathlib import Path

from import_graph import find_cycle

FAST = Path(__file__).resolve().parent.parent / "runner" / "worker" / "fast"


def _graph() -> dict[str, set[str]]:
    """Which modules of the package each module imports (relative imports of siblings)."""
    names = {path.stem for path in FAST.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in FAST.glob("*.py"):
        edges = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module in names:
                    edges.add(node.module)
                elif node.module is None:
                    edges.update(alias.name for alias in node.names if alias.name in names)
    return graph


def test_the_graph_sees_the_imports_between_the_modules() -> None:
    graph = _graph()
    assert {"cycle", "state", "parsing", "connection"} <= graph["protocol"]
    assert "state" in graph["drain"]  # a TYPE_CHECKING import counts


def test_the_fast_server_modules_import_one_another_without_cycles() -> None:
    assert find_cycle(_graph()) is None
