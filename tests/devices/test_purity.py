"""`devices.ca` stays pure: no file I/O, no clock, no infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

import devices.ca

FORBIDDEN_MODULES = {"os", "io", "pathlib", "shutil", "tempfile", "time", "subprocess", "socket"}
FORBIDDEN_CALLS = {"open", "now", "utcnow", "today", "read_bytes", "write_bytes"}


def test_ca_module_imports_no_io_and_reads_no_clock() -> None:
    tree = ast.parse(Path(devices.ca.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    called = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    assert not imported & FORBIDDEN_MODULES
    assert not called & FORBIDDEN_CALLS
    assert imported <= {"__future__", "collections", "dataclasses", "datetime", "ipaddress",
                        "re", "typing", "cryptography", "devices"}  # fmt: skip
