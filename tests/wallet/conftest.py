"""Fixtures for the wallet tests: a database with a wallet open for each test holder."""

from __future__ import annotations

import pytest

from gateway.db import Database
from tests.support.wallets import HOLDERS, T0
from wallet import store


@pytest.fixture
def wallets(db: Database) -> Database:
    """The database with a wallet open for each of HOLDERS."""
    with db.transaction() as conn:
        for holder, currency in HOLDERS.items():
            store.open_wallet(conn, holder_id=holder, currency=currency, now=T0)
    return db
