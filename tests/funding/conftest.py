"""Funding on the service layer with a real database (SQLite and PostgreSQL): as tests/service,
with helpers for several devices of one owner and for funding sources."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.orders.intake import KeyRing
from tests.support.funding import fund, sibling, source
from tests.support.world import Clock, World, bearer


@pytest.fixture
def ctx(ctx: Context) -> Context:
    """The shared context, with a clock that tests can move forward."""
    return replace(ctx, clock=Clock())


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, KeyRing())


__all__ = ["bearer", "fund", "sibling", "source"]
