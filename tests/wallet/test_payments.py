"""Pays and holds on real SQLite and PostgreSQL: money moves once, refusals leave nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.db import Database
from tests.support.wallets import (
    T0,
    assert_books_balance,
    balances,
    fund,
    hold,
    later,
    pay,
    refused,
    run,
)
from wallet import store
from wallet.errors import (
    CurrencyNotAllowed,
    IdempotencyConflict,
    InsufficientFunds,
    WalletNotFound,
    WalletRefusal,
)
from wallet.ledger import Payment, PaymentRequest, PaymentStatus, PaymentType


def test_pay_moves_money_from_payer_to_payee(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    payment = pay(wallets, 300)
    assert payment.status is PaymentStatus.COMPLETED and payment.captured_amount_minor == 300
    assert balances(wallets, "dev_a") == (700, 700)
    assert balances(wallets, "mer_x") == (300, 300)
    assert_books_balance(wallets)


def test_refuses_overdraft_and_changes_nothing(wallets: Database) -> None:
    fund(wallets, "dev_a", 500)
    refusal = refused(
        wallets,
        lambda c: store.pay(
            c,
            payer_id="dev_a",
            payee_id="mer_x",
            amount_minor=501,
            currency="EUR",
            payment_id="pay_1",
            order_id="o-1",
            now=T0,
        ),
    )
    assert isinstance(refusal, InsufficientFunds) and refusal.reason == "insufficient_funds"
    pay(wallets, 500)
    assert balances(wallets, "dev_a") == (0, 0)


def test_hold_reduces_available_not_balance(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    held = hold(wallets, 400)
    assert held.status is PaymentStatus.HELD and held.captured_amount_minor == 0
    assert balances(wallets, "dev_a") == (1000, 600)
    assert balances(wallets, "mer_x") == (0, 0)
    assert isinstance(
        refused(
            wallets,
            lambda c: store.pay(
                c,
                payer_id="dev_a",
                payee_id="mer_x",
                amount_minor=601,
                currency="EUR",
                payment_id="pay_9",
                order_id="o-9",
                now=T0,
            ),
        ),
        InsufficientFunds,
    )
    assert_books_balance(wallets)


def test_pay_across_currencies_or_to_no_wallet_is_refused(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    fund(wallets, "dev_u", 1000, "USD")

    def attempt(payer: str, payee: str, currency: str) -> WalletRefusal:
        return refused(
            wallets,
            lambda c: store.pay(
                c,
                payer_id=payer,
                payee_id=payee,
                amount_minor=10,
                currency=currency,
                payment_id="pay_x",
                order_id="o-x",
                now=T0,
            ),
        )

    assert isinstance(attempt("dev_a", "mer_u", "EUR"), CurrencyNotAllowed)
    assert isinstance(attempt("dev_a", "mer_x", "USD"), CurrencyNotAllowed)
    assert isinstance(attempt("dev_u", "mer_x", "USD"), CurrencyNotAllowed)
    assert isinstance(attempt("dev_a", "mer_gone", "EUR"), WalletNotFound)


def test_the_same_payment_id_moves_money_once(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    first = pay(wallets, 300)
    assert pay(wallets, 300) == first
    assert balances(wallets, "dev_a") == (700, 700)
    refusal = refused(
        wallets,
        lambda c: store.pay(
            c,
            payer_id="dev_a",
            payee_id="mer_x",
            amount_minor=301,
            currency="EUR",
            payment_id="pay_1",
            order_id="o-1",
            now=T0,
        ),
    )
    assert isinstance(refusal, IdempotencyConflict)
    pay(wallets, 700, payment_id="pay_2")
    assert pay(wallets, 300) == first  # a replay is answered even when the funds are gone
    assert isinstance(
        refused(
            wallets,
            lambda c: store.hold(
                c,
                payer_id="dev_a",
                payee_id="mer_x",
                amount_minor=300,
                currency="EUR",
                payment_id="pay_1",
                order_id="o-1",
                expires_at=later(60),
                now=T0,
            ),
        ),
        IdempotencyConflict,
    )
    assert_books_balance(wallets)


def test_a_hold_replayed_after_its_expiry_gets_its_payment_back(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    held = hold(wallets, 400, expires_at=later(60))
    run(wallets, lambda c: store.expire_due_holds(c, later(61)))
    again = hold(wallets, 400, expires_at=later(60), now=later(62))
    assert again == replace(held, status=PaymentStatus.EXPIRED)
    with pytest.raises(AssertionError):
        hold(wallets, 400, payment_id="hold_2", expires_at=later(60), now=later(62))
    assert balances(wallets, "dev_a") == (1000, 1000)


def test_list_payments_newest_first_as_payer_or_payee(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    fund(wallets, "dev_b", 1000)
    pay(wallets, 1, payment_id="p1")
    hold(wallets, 2, payment_id="p2", payer_id="dev_b", now=later(1))
    pay(wallets, 3, payment_id="p3", payee_id="dev_b", now=later(2))
    with wallets.read() as conn:
        assert [p.payment_id for p in store.list_payments(conn, "mer_x", 10)] == ["p2", "p1"]
        assert [p.payment_id for p in store.list_payments(conn, "dev_b", 10)] == ["p3", "p2"]
        assert [p.payment_id for p in store.list_payments(conn, "dev_a", 1)] == ["p3"]
        assert store.get_payment(conn, "p2") == Payment(
            "p2",
            "o-2",
            "dev_b",
            "mer_x",
            PaymentType.HOLD,
            2,
            0,
            0,
            PaymentStatus.HELD,
            "EUR",
            later(1),
            later(900),
        )
        assert store.get_payment(conn, "p4") is None


def test_a_batch_commits_together_and_refusals_take_their_place(wallets: Database) -> None:
    fund(wallets, "dev_a", 100)

    def request(n: int, amount_minor: int) -> PaymentRequest:
        return PaymentRequest(
            PaymentType.PAY, f"b{n}", f"o{n}", "dev_a", "mer_x", amount_minor, "EUR"
        )

    results = run(
        wallets,
        lambda c: store.place_payments(
            c, [request(1, 60), request(2, 60), request(3, 40), request(1, 60)], T0
        ),
    )
    assert [type(r).__name__ for r in results] == [
        "Payment",
        "InsufficientFunds",
        "Payment",
        "Payment",
    ]
    assert results[3] == results[0]
    assert balances(wallets, "dev_a") == (0, 0)
    assert_books_balance(wallets)
