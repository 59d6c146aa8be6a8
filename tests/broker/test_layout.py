"""The embedded broker's modules depend on each other one way, and stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.broker

PACKAGE = Path(gateway.broker.__file__).parent


def broker_imports(path: Path) -> set[str]:
    """The sibling modules `path` imports, type-checking-only imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "gateway.broker":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("gateway.broker."):
                found.add(node.module.rsplit(".", 1)[1])
    return found & {p.stem for p in PACKAGE.glob("*.py")}


def test_the_broker_modules_import_each_other_without_a_cycle() -> None:
    graph = {p.stem: broker_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, set()) - seen:
            if nxt == target or reaches(nxt, target, seen | {nxt}):
                return True
        return False

    cycles = [module for module in graph if reaches(module, module, set())]
    assert cycles == [], f"modules in an import cycle: {cycles}"
    assert "server" not in set().union(*graph.values()), "only the package imports the server"


def test_no_broker_module_exceeds_400_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
