"""The SDK is what firmware links against, and simulators are firmware: neither may reach into
the gateway or the wallet (dependencies point one way: simulators -> devices)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = {"devices", "devices.wire", "devices.contract"}  # the wire format, shared with firmware


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_sdk_imports_neither_gateway_nor_wallet() -> None:
    for path in sorted((ROOT / "devices" / "sdk").rglob("*.py")):
        tops = {name.split(".")[0] for name in imported_modules(path)}
        assert not tops & {"gateway", "wallet"}, path
        inside = {name for name in imported_modules(path) if name.startswith("devices")}
        assert inside <= CONTRACT | {n for n in inside if n.startswith("devices.sdk")}, path


def test_simulators_use_only_the_sdk() -> None:
    for path in sorted((ROOT / "simulators").rglob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert top not in {"gateway", "wallet"}, (path, name)
            if top == "devices":
                sdk = name == "devices.sdk" or name.startswith("devices.sdk.")
                assert sdk or name in CONTRACT, (path, name)
