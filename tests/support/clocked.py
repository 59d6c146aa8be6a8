"""The service tests' gateway on a clock that tests move forward: `ctx` (over the shared one),
`clock` and `world`. Fixtures imported by the conftest of each directory that drives the gateway
this way (a plugin could not override the top-level `ctx`)."""

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
