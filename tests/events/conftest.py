"""Events on the service layer with a real database (SQLite, and PostgreSQL when it is up):
webhooks may reach loopback here, as `kym serve --webhook-allow-private` lets them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.orders.intake import KeyRing
from tests.support.world import Clock, World


@pytest.fixture
def ctx(ctx: Context) -> Context:
    """The shared context: a clock tests can move, and webhooks allowed to reach loopback."""
    settings = ctx.settings.model_copy(update={"webhook_allow_private": True})
    return replace(ctx, settings=settings, clock=Clock())


@pytest.fixture
def clock(ctx: Context) -> Clock:
    assert isinstance(ctx.clock, Clock)
    return ctx.clock


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, KeyRing())
