"""The ledger's operations on real SQLite and PostgreSQL, one behaviour per test."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from gateway.db import Database
from tests.support.wallets import T0, assert_books_balance, later, snapshot
from wallet import journal, schema, store
from wallet.check import check
from wallet.errors import (
    CaptureExceedsHold,
    CurrencyNotAllowed,
    HoldExpired,
    HoldNotOpen,
    IdempotencyConflict,
    InsufficientFunds,
    PaymentNotFound,
    RefundExceedsPayment,
    WalletNotFound,
    WalletRefusal,
)
from wallet.ledger import Payment, PaymentRequest, PaymentStatus, PaymentType, TopUpResult, Wallet

T = TypeVar("T")


def run(db: Database, work: Callable[[Connection], T]) -> T:
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
    with db.read() as conn:
        found = store.get_wallet(conn, holder_id)
    assert found is not None
    return found


def fund(db: Database, holder_id: str, amount_minor: int, currency: str = "EUR") -> TopUpResult:
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
    found = wallet(db, holder_id)
    return found.balance_minor, found.available_minor


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


def test_partial_capture_posts_it_and_releases_the_rest(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    captured = run(
        wallets, lambda c: store.capture(c, payment_id="hold_1", amount_minor=250, now=later(10))
    )
    assert captured.status is PaymentStatus.CAPTURED and captured.captured_amount_minor == 250
    assert balances(wallets, "dev_a") == (750, 750)
    assert balances(wallets, "mer_x") == (250, 250)
    assert_books_balance(wallets)


def test_void_releases_the_whole_hold(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    voided = run(wallets, lambda c: store.void(c, payment_id="hold_1", now=later(10)))
    assert voided.status is PaymentStatus.VOIDED
    assert balances(wallets, "dev_a") == (1000, 1000)
    assert_books_balance(wallets)


@pytest.mark.parametrize("first", ["capture", "void"])
@pytest.mark.parametrize("second", ["capture", "void"])
def test_a_hold_resolves_once(wallets: Database, first: str, second: str) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    resolve = {
        "capture": lambda c: store.capture(c, payment_id="hold_1", amount_minor=100, now=T0),
        "void": lambda c: store.void(c, payment_id="hold_1", now=T0),
    }
    run(wallets, resolve[first])
    assert isinstance(refused(wallets, resolve[second]), HoldNotOpen)


def test_capture_or_void_of_a_pay_is_hold_not_open(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    pay(wallets, 100)
    assert isinstance(
        refused(wallets, lambda c: store.capture(c, payment_id="pay_1", amount_minor=100, now=T0)),
        HoldNotOpen,
    )
    assert isinstance(
        refused(wallets, lambda c: store.void(c, payment_id="pay_1", now=T0)), HoldNotOpen
    )


def test_capture_after_expiry_is_hold_expired(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400, expires_at=later(60))
    assert isinstance(
        refused(
            wallets,
            lambda c: store.capture(c, payment_id="hold_1", amount_minor=100, now=later(60)),
        ),
        HoldExpired,
    )
    assert isinstance(
        refused(wallets, lambda c: store.void(c, payment_id="hold_1", now=later(61))), HoldExpired
    )
    expired = run(wallets, lambda c: store.expire_due_holds(c, later(61)))
    assert [p.status for p in expired] == [PaymentStatus.EXPIRED]
    assert balances(wallets, "dev_a") == (1000, 1000)
    assert isinstance(
        refused(
            wallets,
            lambda c: store.capture(c, payment_id="hold_1", amount_minor=100, now=later(62)),
        ),
        HoldExpired,
    )


def test_capture_over_the_held_amount_is_refused(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    refusal = refused(
        wallets, lambda c: store.capture(c, payment_id="hold_1", amount_minor=401, now=T0)
    )
    assert isinstance(refusal, CaptureExceedsHold) and refusal.reason == "capture_exceeds_hold"


def test_refunds_up_to_what_was_paid(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    pay(wallets, 300)
    run(wallets, lambda c: store.refund(c, payment_id="pay_1", amount_minor=200, now=T0))
    refusal = refused(
        wallets, lambda c: store.refund(c, payment_id="pay_1", amount_minor=101, now=T0)
    )
    assert isinstance(refusal, RefundExceedsPayment) and refusal.reason == "refund_exceeds_payment"
    refunded = run(wallets, lambda c: store.refund(c, payment_id="pay_1", amount_minor=100, now=T0))
    assert refunded.refunded_amount_minor == 300
    assert balances(wallets, "dev_a") == (1000, 1000)
    assert balances(wallets, "mer_x") == (0, 0)
    assert_books_balance(wallets)


def test_refunds_up_to_what_was_captured(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    assert isinstance(
        refused(wallets, lambda c: store.refund(c, payment_id="hold_1", amount_minor=1, now=T0)),
        RefundExceedsPayment,
    )
    run(wallets, lambda c: store.capture(c, payment_id="hold_1", amount_minor=150, now=T0))
    assert isinstance(
        refused(wallets, lambda c: store.refund(c, payment_id="hold_1", amount_minor=151, now=T0)),
        RefundExceedsPayment,
    )
    run(wallets, lambda c: store.refund(c, payment_id="hold_1", amount_minor=150, now=T0))
    assert balances(wallets, "dev_a") == (1000, 1000)


def test_refund_needs_the_payees_available_funds(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    pay(wallets, 300)
    run(
        wallets,
        lambda c: store.pay(
            c,
            payer_id="mer_x",
            payee_id="dev_b",
            amount_minor=250,
            currency="EUR",
            payment_id="pay_2",
            order_id="o-3",
            now=T0,
        ),
    )
    refusal = refused(
        wallets, lambda c: store.refund(c, payment_id="pay_1", amount_minor=51, now=T0)
    )
    assert isinstance(refusal, InsufficientFunds)
    run(wallets, lambda c: store.refund(c, payment_id="pay_1", amount_minor=50, now=T0))
    assert balances(wallets, "mer_x") == (0, 0)


def test_payee_and_currency_must_match_or_the_payment_is_not_found(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    for work in (
        lambda c: store.capture(c, payment_id="hold_1", amount_minor=1, now=T0, payee_id="dev_b"),
        lambda c: store.void(c, payment_id="hold_1", now=T0, payee_id="dev_a"),
        lambda c: store.void(c, payment_id="hold_1", now=T0, currency="USD"),
        lambda c: store.refund(c, payment_id="hold_1", amount_minor=1, now=T0, payee_id="dev_b"),
        lambda c: store.capture(c, payment_id="nope", amount_minor=1, now=T0),
        lambda c: store.refund(c, payment_id="nope", amount_minor=1, now=T0),
    ):
        refusal = refused(wallets, work)
        assert isinstance(refusal, PaymentNotFound) and refusal.reason == "payment_not_found"
    run(
        wallets,
        lambda c: store.capture(
            c, payment_id="hold_1", amount_minor=1, now=T0, payee_id="mer_x", currency="EUR"
        ),
    )


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


def test_expire_due_holds_voids_only_due_ones_oldest_first(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 100, payment_id="h_late", expires_at=later(300))
    hold(wallets, 100, payment_id="h_soon", expires_at=later(60))
    hold(wallets, 100, payment_id="h_mid", expires_at=later(120))
    run(wallets, lambda c: store.capture(c, payment_id="h_mid", amount_minor=100, now=T0))
    assert run(wallets, lambda c: store.expire_due_holds(c, later(59))) == []
    expired = run(wallets, lambda c: store.expire_due_holds(c, later(500), limit=1))
    assert [p.payment_id for p in expired] == ["h_soon"]
    expired = run(wallets, lambda c: store.expire_due_holds(c, later(500)))
    assert [(p.payment_id, p.status) for p in expired] == [("h_late", PaymentStatus.EXPIRED)]
    assert run(wallets, lambda c: store.expire_due_holds(c, later(500))) == []
    assert balances(wallets, "dev_a") == (900, 900)
    assert_books_balance(wallets)


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


def test_the_journal_is_append_only(wallets: Database) -> None:
    fund(wallets, "dev_a", 10)
    for statement in (
        "UPDATE wallet_transfers SET amount_minor = 1",
        "DELETE FROM wallet_transfers",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            run(wallets, functools.partial(Connection.execute, statement=text(statement)))
    assert balances(wallets, "dev_a") == (10, 10)


def test_the_database_refuses_a_second_resolution_of_a_hold(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    run(wallets, lambda c: store.void(c, payment_id="hold_1", now=T0))
    with pytest.raises(DBAPIError):
        run(
            wallets,
            lambda c: c.execute(
                schema.transfers.insert(),
                {
                    "kind": "capture",
                    "payment_id": "hold_1",
                    "pending_id": "hold_1",
                    "debit_account_id": "dev_a",
                    "credit_account_id": "mer_x",
                    "amount_minor": 400,
                    "currency": "EUR",
                    "created_at": T0,
                },
            ),
        )


def test_the_database_refuses_an_overdraft_even_without_the_condition(wallets: Database) -> None:
    fund(wallets, "dev_a", 10)
    with pytest.raises(DBAPIError):
        run(
            wallets,
            lambda c: c.execute(
                text(
                    "UPDATE wallet_accounts SET debits_posted = debits_posted + 11"
                    " WHERE id = 'dev_a'"
                )
            ),
        )


@pytest.mark.parametrize(
    "tamper, rule",
    [
        (
            "UPDATE wallet_accounts SET credits_posted = credits_posted + 1 WHERE id = 'mer_x'",
            "conservation",
        ),
        (
            "UPDATE wallet_accounts SET credits_posted = credits_posted + 1 WHERE id = 'mer_x'",
            "counters",
        ),
        (
            "UPDATE wallet_accounts SET debits_pending = debits_pending - 1 WHERE id = 'dev_a'",
            "conservation",
        ),
        (
            "UPDATE wallet_payments SET captured_amount_minor = 3 WHERE payment_id = 'hold_1'",
            "payments",
        ),
        ("UPDATE wallet_payments SET status = 'voided' WHERE payment_id = 'hold_1'", "payments"),
        (
            "UPDATE wallet_payments SET refunded_amount_minor = 1 WHERE payment_id = 'pay_1'",
            "payments",
        ),
        ("DELETE FROM wallet_payments WHERE payment_id = 'pay_1'", "payments"),
        ("DELETE FROM wallet_top_ups", "top_up"),
        ("UPDATE wallet_top_ups SET amount_minor = 7", "top_up"),
        (
            "INSERT INTO wallet_transfers (kind, payment_id, debit_account_id, credit_account_id,"
            " amount_minor, currency, created_at) VALUES ('refund', 'pay_1', 'mer_x', 'dev_a', 999,"
            " 'EUR', '2030-01-01 12:00:00')",
            "refund",
        ),
        (
            "INSERT INTO wallet_transfers (kind, payment_id, pending_id, debit_account_id,"
            " credit_account_id, amount_minor, currency, created_at) VALUES ('capture', 'pay_1',"
            " 'pay_1', 'dev_a', 'mer_x', 1, 'EUR', '2030-01-01 12:00:00')",
            "resolution",
        ),
        (
            "INSERT INTO wallet_transfers (kind, payment_id, debit_account_id, credit_account_id,"
            " amount_minor, currency, created_at) VALUES ('pay', 'pay_2', 'dev_a', 'mer_u', 1,"
            " 'EUR', '2030-01-01 12:00:00')",
            "currency",
        ),
    ],
)
def test_check_finds_tampering(wallets: Database, tamper: str, rule: str) -> None:
    fund(wallets, "dev_a", 1000)
    pay(wallets, 10)
    hold(wallets, 20)
    assert_books_balance(wallets)
    run(wallets, lambda c: c.execute(text(tamper)))
    with wallets.read() as conn:
        assert rule in {breach.rule for breach in check(conn)}


def test_check_finds_an_overdraft(wallets: Database) -> None:
    # The database's own constraint would refuse this, so drop to a contra-like flag first.
    run(
        wallets,
        lambda c: c.execute(
            text(
                "UPDATE wallet_accounts SET debits_must_not_exceed_credits = false,"
                " debits_posted = 5 WHERE id = 'dev_a'"
            )
        ),
    )
    with wallets.read() as conn:
        assert {"overdraft", "counters"} <= {breach.rule for breach in check(conn)}


def test_database_errors_on_the_fast_path_surface_as_sqlalchemy_errors(wallets: Database) -> None:
    # Database.run retries deadlocks by SQLAlchemy's exception types, so the statements that run
    # on the DBAPI cursor directly must raise those types too.
    row = {
        "kind": "pay",
        "payment_id": "p",
        "pending_id": None,
        "idempotency_key": None,
        "debit_account_id": "dev_a",
        "credit_account_id": "mer_x",
        "amount_minor": 0,
        "currency": "EUR",
        "created_at": T0,
        "expires_at": None,
    }
    with pytest.raises(IntegrityError):
        run(wallets, lambda c: journal.append(c, row))


def test_a_hold_replayed_after_its_expiry_gets_its_payment_back(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    held = hold(wallets, 400, expires_at=later(60))
    run(wallets, lambda c: store.expire_due_holds(c, later(61)))
    again = hold(wallets, 400, expires_at=later(60), now=later(62))
    assert again == replace(held, status=PaymentStatus.EXPIRED)
    with pytest.raises(AssertionError):
        hold(wallets, 400, payment_id="hold_2", expires_at=later(60), now=later(62))
    assert balances(wallets, "dev_a") == (1000, 1000)
