"""The console on the real app and a real database (SQLite and PostgreSQL), in process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.http.app import create_app
from gateway.orders.intake import KeyRing
from tests.support.world import World

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, KeyRing())


@pytest.fixture
def browser_like(ctx: Context) -> TestClient:
    """A second client on the same app, with its own cookie jar (a browser)."""
    return TestClient(create_app(ctx), follow_redirects=False)


def sign_in(client: TestClient, api_key: str, **headers: str) -> str:
    """Sign in and return the console page's CSRF token."""
    answer = client.post("/console/session", data={"api_key": api_key}, headers=headers)
    assert answer.status_code == 303, answer.text
    page = client.get("/console")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)
