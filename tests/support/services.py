"""The real services the tests use (PostgreSQL, Mosquitto): where they are, and what to do when
one is missing: skip on a developer machine, fail when CI requires it (KYM_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

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


def postgres_schema_url(database_url: str) -> str:
    """A URL whose connections use a new, empty schema of the run's database."""
    schema = f"t{next(_schemas)}_{secrets.token_hex(2)}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{database_url}?options=-csearch_path%3D{schema}"


def mosquitto_path() -> str | None:
    """The `mosquitto` binary, or None when it is not installed."""
    fallback = Path("/usr/sbin/mosquitto")
    return shutil.which("mosquitto") or (str(fallback) if fallback.exists() else None)
