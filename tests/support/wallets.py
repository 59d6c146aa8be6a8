"""The wallet tests' clock and holders, a snapshot of every ledger row, and short calls of the
store: each in its own committed transaction, with the test holders' defaults."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, func, select

from gateway.db import Database
from wallet import schema, store
from wallet.check import check
from wallet.errors import WalletRefusal
from wallet.ledger import Payment, TopUpResult, Wallet

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


T = TypeVar("T")


def run(db: Database, work: Callable[[Connection], T]) -> T:
    """`work` in a transaction of its own, committed."""
    with db.transaction() as conn:
        return work(conn)


def refused(db: Database, work: Callable[[Connection], Any]) -> WalletRefusal:
    """Run `work` in a transaction that commits even though it is refused; nothing may change."""
    with db.read() as conn:
        before = snapshot(conn)
    with db.transaction() as conn:
        try:
            work(conn)
        except WalletRefusal as refusal:
            caught = refusal
        else:
            pytest.fail("not refused")
    with db.read() as conn:
        assert snapshot(conn) == before
    assert_books_balance(db)
    return caught


def wallet(db: Database, holder_id: str) -> Wallet:
    """The holder's wallet, which must exist."""
    with db.read() as conn:
        found = store.get_wallet(conn, holder_id)
    assert found is not None
    return found


def fund(db: Database, holder_id: str, amount_minor: int, currency: str = "EUR") -> TopUpResult:
    """Top the holder's wallet up (the key is `k<amount>`)."""
    return run(
        db,
        lambda c: store.top_up(
            c,
            holder_id=holder_id,
            amount_minor=amount_minor,
            currency=currency,
            idempotency_key=f"k{amount_minor}",
            now=T0,
        ),
    )


def pay(db: Database, amount_minor: int, payment_id: str = "pay_1", **kw: Any) -> Payment:
    """dev_a pays mer_x in EUR at T0, unless `kw` says otherwise."""
    args = {
        "payer_id": "dev_a",
        "payee_id": "mer_x",
        "currency": "EUR",
        "order_id": "o-1",
        "now": T0,
        **kw,
    }
    return run(db, lambda c: store.pay(c, amount_minor=amount_minor, payment_id=payment_id, **args))


def hold(db: Database, amount_minor: int, payment_id: str = "hold_1", **kw: Any) -> Payment:
    """dev_a holds for mer_x in EUR at T0 for 15 minutes, unless `kw` says otherwise."""
    args = {
        "payer_id": "dev_a",
        "payee_id": "mer_x",
        "currency": "EUR",
        "order_id": "o-2",
        "expires_at": later(900),
        "now": T0,
        **kw,
    }
    return run(
        db, lambda c: store.hold(c, amount_minor=amount_minor, payment_id=payment_id, **args)
    )


def balances(db: Database, holder_id: str) -> tuple[int, int]:
    """The holder's (balance, available)."""
    found = wallet(db, holder_id)
    return found.balance_minor, found.available_minor
