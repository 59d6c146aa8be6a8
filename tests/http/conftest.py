"""The HTTP layer on the real app, with real SQLite (and PostgreSQL where it matters)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.db import Database
from gateway.http.app import create_app
from gateway.server import build_context
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[TestClient]:
    """The app on a fresh SQLite database, for checks that do not depend on the database."""
    url = f"sqlite:///{tmp_path / 'kym.db'}"
    db = Database(url)
    db.migrate()
    db.dispose()
    settings = Settings(data_dir=tmp_path / "data", database_url=url, admin_token=ADMIN_TOKEN)
    ctx: Context = build_context(settings)
    with TestClient(create_app(ctx)) as client:
        yield client
    ctx.db.dispose()
