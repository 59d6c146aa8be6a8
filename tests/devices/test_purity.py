"""The device PKI stays pure: no file I/O, no clock, no infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import pytest

import devices.attestation
import devices.ca
import devices.crl

FORBIDDEN_MODULES = {"os", "io", "pathlib", "shutil", "tempfile", "time", "subprocess", "socket"}
FORBIDDEN_CALLS = {"open", "now", "utcnow", "today", "read_bytes", "write_bytes"}
ALLOWED_MODULES = {"__future__", "collections", "dataclasses", "datetime", "ipaddress", "re",
                   "typing", "cryptography", "devices"}  # fmt: skip


@pytest.mark.parametrize("module", [devices.ca, devices.crl, devices.attestation])
def test_pki_module_imports_no_io_and_reads_no_clock(module: ModuleType) -> None:
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
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
    assert imported <= ALLOWED_MODULES
