"""The wallet tests' clock, holders and a snapshot of every ledger row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from gateway.db import Database
from wallet import schema
from wallet.check import check

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOLDERS = {"dev_a": "EUR", "dev_b": "EUR", "mer_x": "EUR", "dev_u": "USD", "mer_u": "USD"}


def later(seconds: float) -> datetime:
    """T0 plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def snapshot(conn: Connection) -> dict[str, Any]:
    """Every row the ledger keeps (the journal by count: it only grows)."""
    return {
        "accounts": sorted(tuple(r) for r in conn.execute(select(schema.accounts))),
        "payments": sorted(tuple(r) for r in conn.execute(select(schema.payments))),
        "top_ups": sorted(tuple(r) for r in conn.execute(select(schema.top_ups))),
        "journal": conn.execute(select(func.count()).select_from(schema.transfers)).scalar_one(),
    }


def assert_books_balance(db: Database) -> None:
    """check() finds nothing wrong."""
    with db.read() as conn:
        assert [str(b) for b in check(conn)] == []
