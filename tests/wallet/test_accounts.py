"""Wallets and top-ups on real SQLite and PostgreSQL, and the arguments every operation checks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection

from gateway.db import Database
from tests.support.wallets import (
    T0,
    assert_books_balance,
    balances,
    fund,
    hold,
    refused,
    run,
    snapshot,
)
from wallet import store
from wallet.errors import (
    CurrencyNotAllowed,
    IdempotencyConflict,
    WalletNotFound,
)
from wallet.ledger import TopUpResult, Wallet


def test_top_up_replay_returns_the_first_answer_and_moves_nothing(wallets: Database) -> None:
    def top_up(amount_minor: int, key: str = "k-1") -> Callable[[Connection], TopUpResult]:
        return lambda c: store.top_up(
            c,
            holder_id="dev_a",
            amount_minor=amount_minor,
            currency="EUR",
            idempotency_key=key,
            now=T0,
        )

    first = run(wallets, top_up(1000))
    assert first == TopUpResult("dev_a", "EUR", 1000, 1000, 1000)
    hold(wallets, 100)
    with wallets.read() as conn:
        before = snapshot(conn)
    assert run(wallets, top_up(1000)) == first
    with wallets.read() as conn:
        assert snapshot(conn) == before
    refusal = refused(wallets, top_up(999))
    assert isinstance(refusal, IdempotencyConflict) and refusal.reason == "idempotency_conflict"
    assert run(wallets, top_up(999, "k-2")).balance_minor == 1999
    assert_books_balance(wallets)


def test_top_up_keys_are_scoped_to_the_wallet(wallets: Database) -> None:
    for holder in ("dev_a", "dev_b"):
        run(
            wallets,
            functools.partial(
                store.top_up,
                holder_id=holder,
                amount_minor=5,
                currency="EUR",
                idempotency_key="same",
                now=T0,
            ),
        )
    assert balances(wallets, "dev_a") == balances(wallets, "dev_b") == (5, 5)


def test_top_up_in_another_currency_is_refused(wallets: Database) -> None:
    refusal = refused(
        wallets,
        lambda c: store.top_up(
            c, holder_id="dev_a", amount_minor=5, currency="USD", idempotency_key="k", now=T0
        ),
    )
    assert isinstance(refusal, CurrencyNotAllowed) and refusal.reason == "currency_not_allowed"
    refusal = refused(
        wallets,
        lambda c: store.top_up(
            c, holder_id="dev_a", amount_minor=5, currency="GBP", idempotency_key="k", now=T0
        ),
    )
    assert isinstance(refusal, CurrencyNotAllowed)
    assert isinstance(
        refused(
            wallets,
            lambda c: store.top_up(
                c,
                holder_id="dev_nobody",
                amount_minor=5,
                currency="EUR",
                idempotency_key="k",
                now=T0,
            ),
        ),
        WalletNotFound,
    )


def test_open_wallet_is_idempotent_and_keeps_its_currency(wallets: Database) -> None:
    fund(wallets, "dev_a", 10)
    again = run(wallets, lambda c: store.open_wallet(c, holder_id="dev_a", currency="EUR", now=T0))
    assert again == Wallet("dev_a", "EUR", 10, 10)
    assert isinstance(
        refused(wallets, lambda c: store.open_wallet(c, holder_id="dev_a", currency="USD", now=T0)),
        CurrencyNotAllowed,
    )
    with wallets.read() as conn:
        assert store.get_wallet(conn, "dev_nobody") is None
        assert store.get_wallet(conn, "@funding/EUR") is None


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "10", 10**16])
def test_amounts_must_be_positive_ints(wallets: Database, amount: Any) -> None:
    fund(wallets, "dev_a", 1000)
    with wallets.read() as conn:
        before = snapshot(conn)
    for work in (
        lambda c: store.pay(
            c,
            payer_id="dev_a",
            payee_id="mer_x",
            amount_minor=amount,
            currency="EUR",
            payment_id="p",
            order_id="o",
            now=T0,
        ),
        lambda c: store.top_up(
            c, holder_id="dev_a", amount_minor=amount, currency="EUR", idempotency_key="k", now=T0
        ),
        lambda c: store.refund(c, payment_id="p", amount_minor=amount, now=T0),
    ):
        with pytest.raises(AssertionError):
            run(wallets, work)
    with wallets.read() as conn:
        assert snapshot(conn) == before
