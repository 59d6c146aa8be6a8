"""Shared fixtures: a real database per test (SQLite, and PostgreSQL when it is up).

In CI `.ci/run` sets KYM_REQUIRE_SERVICES=1: a missing PostgreSQL or Mosquitto then fails the
tests that need it instead of skipping them.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gateway.db import Database

REQUIRE_SERVICES = os.environ.get("KYM_REQUIRE_SERVICES") == "1"
PG_SERVER_URL = os.environ.get(
    "KYM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_schemas = itertools.count()


def unavailable(what: str) -> None:
    """Skip when a service is missing on a developer machine; fail when CI requires it."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (KYM_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    name = f"kym_test_{os.getpid()}_{secrets.token_hex(3)}"
    server = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        server.dispose()
        unavailable(f"PostgreSQL at {PG_SERVER_URL} ({type(exc).__name__})")
    base, _, _ = PG_SERVER_URL.rpartition("/")
    yield f"{base}/{name}"
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    server.dispose()


def postgres_schema_url(database_url: str) -> str:
    """A URL whose connections use a new, empty schema of the run's database."""
    schema = f"t{next(_schemas)}_{secrets.token_hex(2)}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{database_url}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite in a temp dir, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kym.db'}"
    else:
        url = postgres_schema_url(request.getfixturevalue("postgres_database"))
    db = Database(url)
    db.migrate()
    db.dispose()
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The migrated database of `database_url`."""
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def mosquitto_binary() -> str:
    """The path of the `mosquitto` binary (required in CI)."""
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not path:
        unavailable("the mosquitto binary")
    assert path is not None
    return path


# --- the gateway, in process -----------------------------------------------------------------

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def ctx(database_url: str, tmp_path: Path) -> Iterator[Context]:
    """A gateway context on a fresh data dir and database (no broker)."""
    from gateway.server import build_context
    from gateway.settings import Settings

    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, admin_token=ADMIN_TOKEN
    )
    context = build_context(settings)
    yield context
    context.db.dispose()


@pytest.fixture
def api(ctx: Context) -> Iterator[TestClient]:
    """An HTTP client for the gateway's API, in process."""
    from fastapi.testclient import TestClient

    from gateway.http.app import create_app

    with TestClient(create_app(ctx)) as client:
        yield client


def make_openssl_csr(directory: Path, name: str, algorithm: str = "ec") -> tuple[Path, str]:
    """A device key and CSR made by the `openssl` command line, as on a real device."""
    import subprocess

    key = directory / f"{name}.key"
    if algorithm == "ec":
        subprocess.run(
            ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
            check=True,
            capture_output=True,
        )
    else:
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)],
            check=True,
            capture_output=True,
        )
    csr = subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={name}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return key, csr


if True:  # type-only names for the fixtures above
    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        from fastapi.testclient import TestClient

        from gateway.service import Context
