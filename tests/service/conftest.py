"""The service layer on a real database (SQLite and PostgreSQL), without a broker: orders go
straight to `gateway.orders.decide.decide_messages`, results come back from the outbox
(`tests.support.world`). The context's clock is a `Clock` that tests may move forward."""

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
    """The shared context, with a clock that tests can move forward."""
    return replace(ctx, clock=Clock())


@pytest.fixture
def clock(ctx: Context) -> Clock:
    assert isinstance(ctx.clock, Clock)
    return ctx.clock


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, KeyRing())
