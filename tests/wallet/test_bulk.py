"""A batch's pays and holds placed at once (`wallet.bulk`), on real SQLite and PostgreSQL: the
same money as placing them one by one, or False when an account refuses the sum."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from gateway.db import Database
from tests.support.wallets import T0, assert_books_balance, balances, fund, later, run, snapshot
from wallet import store
from wallet.bulk import place_in_bulk
from wallet.ledger import PaymentRequest, PaymentStatus, PaymentType


def _pay(n: int, payer: str, amount_minor: int, currency: str = "EUR") -> PaymentRequest:
    payee = "mer_x" if currency == "EUR" else "mer_u"
    return PaymentRequest(PaymentType.PAY, f"p{n}", f"o{n}", payer, payee, amount_minor, currency)


def _hold(n: int, payer: str, amount_minor: int) -> PaymentRequest:
    return PaymentRequest(
        PaymentType.HOLD, f"h{n}", f"o{n}", payer, "mer_x", amount_minor, "EUR", later(900)
    )


class _RolledBack(Exception):
    pass


def test_places_pays_and_holds_as_one_by_one_would(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    fund(wallets, "dev_b", 500)
    requests = [_pay(1, "dev_a", 300), _hold(2, "dev_a", 200), _pay(3, "dev_b", 100)]
    assert run(wallets, lambda c: place_in_bulk(c, requests, T0)) is True
    assert balances(wallets, "dev_a") == (700, 500)  # (balance, available)
    assert balances(wallets, "dev_b") == (400, 400)
    assert balances(wallets, "mer_x") == (400, 400)
    with wallets.read() as conn:
        payments = {r.payment_id: store.get_payment(conn, r.payment_id) for r in requests}
    statuses = {k: p.status if p else None for k, p in payments.items()}
    assert statuses == {
        "p1": PaymentStatus.COMPLETED,
        "h2": PaymentStatus.HELD,
        "p3": PaymentStatus.COMPLETED,
    }
    assert snapshot_journal(wallets) == 3 + 2  # two top-ups, then one row per payment
    assert_books_balance(wallets)


def test_a_sum_an_account_cannot_cover_is_refused_whole(wallets: Database) -> None:
    fund(wallets, "dev_a", 100)
    with wallets.read() as conn:
        before = snapshot(conn)
    requests = [_pay(1, "dev_a", 60), _pay(2, "dev_a", 60)]  # each fits, the sum does not

    def attempt(conn: Connection) -> None:
        assert place_in_bulk(conn, requests, T0) is False
        raise _RolledBack

    with pytest.raises(_RolledBack):
        run(wallets, attempt)
    with wallets.read() as conn:
        assert snapshot(conn) == before


def test_an_account_moving_in_two_currencies_is_left_to_one_by_one(wallets: Database) -> None:
    fund(wallets, "dev_a", 100)
    requests = [_pay(1, "dev_a", 10), _pay(2, "dev_a", 10, currency="USD")]

    def attempt(conn: Connection) -> None:
        assert place_in_bulk(conn, requests, T0) is False
        raise _RolledBack

    with pytest.raises(_RolledBack):
        run(wallets, attempt)
    assert balances(wallets, "dev_a") == (100, 100)


def snapshot_journal(db: Database) -> int:
    with db.read() as conn:
        return int(snapshot(conn)["journal"])
