"""The console on the real app and a real database (SQLite and PostgreSQL), in process."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.http.app import create_app
from gateway.orders.intake import KeyRing
from tests.support.world import World


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, KeyRing())


@pytest.fixture
def browser_like(ctx: Context) -> TestClient:
    """A second client on the same app, with its own cookie jar (a browser)."""
    return TestClient(create_app(ctx), follow_redirects=False)
