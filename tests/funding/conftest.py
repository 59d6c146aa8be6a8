"""Funding on the service layer with a real database (SQLite and PostgreSQL): as tests/service,
with helpers for several devices of one owner and for funding sources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.funding.check import check_sources
from gateway.orders.intake import KeyRing
from tests.support.funding import fund, sibling, source
from tests.support.world import Clock, World, bearer
from wallet.check import check


@pytest.fixture
def ctx(ctx: Context) -> Context:
    """The shared context, with a clock that tests can move forward."""
    return replace(ctx, clock=Clock())


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, KeyRing())


@pytest.fixture
def books_balance(ctx: Context) -> Iterator[None]:
    """After the test, `kym ledger check` finds no breach in the books or the funding sources
    (a module asks for it with `pytestmark = pytest.mark.usefixtures("books_balance")`)."""
    yield
    with ctx.db.read() as conn:
        assert check(conn) == [] and check_sources(conn) == []


__all__ = ["bearer", "fund", "sibling", "source"]
