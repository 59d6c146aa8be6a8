"""The shape STYLE.md asks for, enforced: pure cores stay pure, dependencies point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_MODULES = [
    "gateway/consent/rules.py",
    "gateway/consent/periods.py",
    "gateway/consent/mandates.py",
    "gateway/audit/log.py",
    "gateway/audit/entries.py",
    "gateway/audit/heads.py",
    "gateway/parties.py",
    "wallet/ledger.py",
    "wallet/ceilings.py",
    "devices/ca.py",
    "devices/crl.py",
    "devices/attestation.py",
    "devices/registry.py",
    "devices/contract.py",
    "gateway/errors.py",
    "gateway/orders/ratelimit.py",
    "gateway/paging.py",
    "gateway/currencies.py",
    "gateway/events/envelope.py",
    "gateway/funding/plan.py",
    "gateway/funding/instalments.py",
    "gateway/funding/dues.py",
    "gateway/funding/offers.py",
]
INFRASTRUCTURE = {
    "sqlalchemy",
    "paho",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "psycopg",
    "alembic",
    "os",
    "subprocess",
    "socket",
    "pathlib",
    "time",
    "threading",
}
CLOCK_CALLS = {
    "now",
    "utcnow",
    "today",
    "monotonic",
    "perf_counter",
}  # the time module is barred above


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def calls_of(path: Path) -> set[str]:
    return {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
    }


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_touch_no_infrastructure_and_read_no_clock(module: str) -> None:
    path = ROOT / module
    roots = {name.split(".")[0] for name in imports_of(path)}
    assert not roots & INFRASTRUCTURE, f"{module} imports {roots & INFRASTRUCTURE}"
    assert not calls_of(path) & CLOCK_CALLS, f"{module} reads the clock"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("devices", {"gateway", "wallet", "simulators"}),
        ("wallet", {"gateway", "devices", "simulators"}),
        ("simulators", {"gateway", "wallet"}),
    ],
)
def test_dependencies_point_one_way(package: str, forbidden: set[str]) -> None:
    for path in (ROOT / package).rglob("*.py"):
        roots = {name.split(".")[0] for name in imports_of(path)}
        assert not roots & forbidden, f"{path.relative_to(ROOT)} imports {roots & forbidden}"


def test_only_the_cli_imports_the_simulators() -> None:
    """The demo, `kym simulate` and `kym bench` are clients of the gateway; the CLI assembles
    them, and no other gateway module may reach into them."""
    importers = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "gateway").rglob("*.py")
        if "simulators" in {name.split(".")[0] for name in imports_of(path)}
    }
    assert importers <= {"gateway/cli.py"}, importers


def test_simulators_are_clients_like_firmware() -> None:
    """Simulators reach the gateway over HTTP and MQTT only: no gateway or wallet code, and
    no database driver or SQL layer of their own."""
    for path in (ROOT / "simulators").rglob("*.py"):
        roots = {name.split(".")[0] for name in imports_of(path)}
        forbidden = roots & {"gateway", "wallet", "sqlalchemy", "psycopg", "sqlite3", "alembic"}
        assert not forbidden, f"{path.relative_to(ROOT)} imports {forbidden}"


def test_no_grab_bag_modules() -> None:
    names = {
        p.stem
        for package in ("gateway", "devices", "wallet", "simulators")
        for p in (ROOT / package).rglob("*.py")
    }
    assert not names & {"utils", "helpers", "common", "misc"}
