"""Capture, void, expiry and refund on real SQLite and PostgreSQL."""

from __future__ import annotations

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
    CaptureExceedsHold,
    HoldExpired,
    HoldNotOpen,
    InsufficientFunds,
    PaymentNotFound,
    RefundExceedsPayment,
)
from wallet.ledger import PaymentStatus


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
