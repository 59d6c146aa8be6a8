"""Shared fixtures: a real database per test (SQLite, and PostgreSQL when it is up).

In CI `.ci/run` sets KYM_REQUIRE_SERVICES=1: a missing PostgreSQL or Mosquitto then fails the
tests that need it instead of skipping them. Helpers (not fixtures) live in `tests/support/`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from gateway.db import Database
from tests.support.gateway import ADMIN_TOKEN
from tests.support.services import PG_SERVER_URL, mosquitto_path, postgres_schema_url, unavailable

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from gateway.context import Context

# Fixtures that several directories share (the end-to-end stack and its API over HTTP).
pytest_plugins = ["tests.support.fixtures"]


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
    path = mosquitto_path()
    if path is None:
        unavailable("the mosquitto binary")
    assert path is not None
    return path


# --- the gateway, in process -----------------------------------------------------------------


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
