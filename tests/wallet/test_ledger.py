"""The pure core: deltas conserve money, holds resolve by the contract's rules, it stays pure."""

from __future__ import annotations

import ast
import inspect
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.wallets import T0, later
from wallet import ceilings, errors, ledger
from wallet.ledger import Payment, PaymentRequest, PaymentStatus, PaymentType, TransferKind

PURE_IMPORTS = {
    "__future__",
    "dataclasses",
    "datetime",
    "enum",
    "hashlib",
    "json",
    "re",
    "typing",
    "wallet.ceilings",
    "wallet.errors",
    "wallet.ledger",
}


def hold_request(amount_minor: int = 400) -> PaymentRequest:
    return PaymentRequest(
        PaymentType.HOLD, "h1", "o1", "dev_a", "mer_x", amount_minor, "EUR", later(60)
    )


def held(amount_minor: int = 400) -> Payment:
    return ledger.open_payment(hold_request(amount_minor), T0)


def test_the_core_imports_no_database_clock_or_io() -> None:
    for module in (ledger, ceilings, errors):
        tree = ast.parse(inspect.getsource(module))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert imported <= PURE_IMPORTS, imported - PURE_IMPORTS
        assert "now()" not in inspect.getsource(module)


@given(
    kind=st.sampled_from(list(TransferKind)),
    amount=st.integers(1, 10**9),
    extra=st.integers(0, 10**9),
)
def test_every_transfer_conserves_money(kind: TransferKind, amount: int, extra: int) -> None:
    held_minor = amount + extra if kind is TransferKind.CAPTURE else amount
    debit, credit = ledger.transfer_deltas(kind, amount, held_minor)
    posted = (
        credit.credits_posted + debit.credits_posted - credit.debits_posted - debit.debits_posted
    )
    assert posted == 0
    assert debit.debits_pending + credit.debits_pending == (
        debit.credits_pending + credit.credits_pending
    )
    assert ledger.required_available(debit) == (
        amount
        if kind in (TransferKind.TOP_UP, TransferKind.PAY, TransferKind.HOLD, TransferKind.REFUND)
        or kind in (TransferKind.DRAW, TransferKind.LEND, TransferKind.FEE, TransferKind.COLLECT)
        else 0
    )
    assert ledger.required_available(credit) == 0


def test_a_hold_then_its_resolution_leaves_only_the_capture_posted() -> None:
    payer = ledger.Account("dev_a", "EUR", True, credits_posted=1000)
    payee = ledger.Account("mer_x", "EUR", True)
    hold_debit, hold_credit = ledger.transfer_deltas(TransferKind.HOLD, 400)
    payer, payee = ledger.apply(payer, hold_debit), ledger.apply(payee, hold_credit)
    assert (payer.balance_minor, payer.available_minor) == (1000, 600)
    capture_debit, capture_credit = ledger.transfer_deltas(TransferKind.CAPTURE, 250, 400)
    payer, payee = ledger.apply(payer, capture_debit), ledger.apply(payee, capture_credit)
    assert (payer.balance_minor, payer.available_minor) == (750, 750)
    assert (payee.balance_minor, payee.credits_pending) == (250, 0)


def test_capture_follows_the_contracts_order_of_reasons() -> None:
    hold = held()
    with pytest.raises(errors.HoldExpired):
        ledger.capture(hold, 500, later(60))  # expired is told before the amount
    with pytest.raises(errors.CaptureExceedsHold):
        ledger.capture(hold, 401, later(59))
    captured = ledger.capture(hold, 400, later(59))
    assert captured == replace(hold, status=PaymentStatus.CAPTURED, captured_amount_minor=400)
    with pytest.raises(errors.HoldNotOpen):
        ledger.capture(captured, 1, later(120))  # resolved holds are not open, whatever the time
    with pytest.raises(errors.HoldNotOpen):
        ledger.void(ledger.void(hold, T0), T0)
    with pytest.raises(errors.HoldExpired):
        ledger.void(ledger.expire(hold, later(60)), later(61))


def test_a_pay_is_never_an_open_hold() -> None:
    pay = ledger.open_payment(replace(hold_request(), type=PaymentType.PAY, expires_at=None), T0)
    assert pay.status is PaymentStatus.COMPLETED and pay.refundable_minor == 400
    with pytest.raises(errors.HoldNotOpen):
        ledger.void(pay, T0)


def test_refunds_never_exceed_what_was_paid_or_captured() -> None:
    hold = held()
    with pytest.raises(errors.RefundExceedsPayment):
        ledger.refund(hold, 1)
    captured = ledger.capture(hold, 100, T0)
    refunded = ledger.refund(ledger.refund(captured, 60), 40)
    assert refunded.refunded_amount_minor == 100
    with pytest.raises(errors.RefundExceedsPayment):
        ledger.refund(refunded, 1)


def test_find_hides_payments_of_other_payees_and_currencies() -> None:
    hold = held()
    assert ledger.find(hold, "mer_x", "EUR") == hold
    for payee, currency in (("dev_b", None), (None, "USD")):
        with pytest.raises(errors.PaymentNotFound):
            ledger.find(hold, payee, currency)
    with pytest.raises(errors.PaymentNotFound):
        ledger.find(None, None, None)


def test_a_replay_must_repeat_the_request() -> None:
    hold = held()
    assert ledger.replay(hold, hold_request()) == hold
    with pytest.raises(errors.IdempotencyConflict):
        ledger.replay(hold, hold_request(401))


@pytest.mark.parametrize("amount", [0, -1, 1.0, True, None, "5", ledger.MAX_AMOUNT_MINOR + 1])
def test_amounts_are_positive_ints(amount: Any) -> None:
    with pytest.raises(AssertionError):
        ledger.assert_amount(amount)
    with pytest.raises(AssertionError):
        ledger.open_payment(hold_request(amount), T0)


def test_times_need_a_timezone_and_payers_pay_others() -> None:
    with pytest.raises(AssertionError):
        ledger.open_payment(hold_request(), T0.replace(tzinfo=None))
    with pytest.raises(AssertionError):
        ledger.open_payment(replace(hold_request(), payee_id="dev_a"), T0)


def test_every_refusal_carries_a_contract_reason() -> None:
    reasons = {cls.reason for cls in errors.WalletRefusal.__subclasses__()}
    assert reasons == {
        "insufficient_funds",
        "currency_not_allowed",
        "idempotency_conflict",
        "wallet_not_found",
        "payment_not_found",
        "hold_not_open",
        "hold_expired",
        "capture_exceeds_hold",
        "refund_exceeds_payment",
        "amount_over_limit",
    }


def test_only_what_brings_money_in_needs_room_below_the_largest_balance() -> None:
    most, none = ledger.MAX_BALANCE_MINOR, ledger.UNBOUNDED_MINOR
    pay, held = ledger.transfer_deltas(ledger.TransferKind.PAY, 7)
    assert (ledger.most_held_before(pay), ledger.most_held_before(held)) == (none, most - 7)
    hold_out, hold_in = ledger.transfer_deltas(ledger.TransferKind.HOLD, 7)
    assert (ledger.most_held_before(hold_out), ledger.most_held_before(hold_in)) == (none, most - 7)
    for kind in (ledger.TransferKind.CAPTURE, ledger.TransferKind.VOID):
        out, into = ledger.transfer_deltas(kind, 7, 7)
        assert ledger.most_held_before(out) == ledger.most_held_before(into) == none


def test_a_move_into_a_full_wallet_is_refused_as_over_the_limit() -> None:
    full = ledger.Account("mer_x", "EUR", True, credits_posted=ledger.MAX_BALANCE_MINOR - 3)
    payer = ledger.Account("dev_a", "EUR", True, credits_posted=10)
    accounts: list[tuple[str, ledger.Account | None]] = [("dev_a", payer), ("mer_x", full)]
    refused = ledger.explain_refused_move(accounts, "EUR", "dev_a", 4)
    assert isinstance(refused, errors.BalanceOverLimit) and refused.reason == "amount_over_limit"
    fits = ledger.explain_refused_move(accounts, "EUR", "dev_a", 3)
    assert isinstance(fits, errors.InsufficientFunds)  # room enough: the funds decided


def test_only_the_side_a_move_raises_needs_room_below_the_largest_total() -> None:
    most, none = ledger.MAX_TOTAL_MINOR, ledger.UNBOUNDED_MINOR
    out, into = ledger.transfer_deltas(ledger.TransferKind.PAY, 7)
    assert ledger.most_totals_before(out) == (most - 7, none)
    assert ledger.most_totals_before(into) == (none, most - 7)
    hold_out, hold_in = ledger.transfer_deltas(ledger.TransferKind.HOLD, 7)
    assert ledger.most_totals_before(hold_out) == (most - 7, none)
    for kind, amount in ((ledger.TransferKind.CAPTURE, 5), (ledger.TransferKind.VOID, 7)):
        out, into = ledger.transfer_deltas(kind, amount, 7)  # pending becomes posted, or goes
        assert ledger.most_totals_before(out) == ledger.most_totals_before(into) == (none, none)


def test_a_move_past_an_accounts_largest_total_is_refused_as_over_the_limit() -> None:
    most = ledger.MAX_TOTAL_MINOR
    used = ledger.Account("mer_x", "EUR", True, most - 105, most - 5, 0, 2)  # holds 102
    payer = ledger.Account("dev_a", "EUR", True, credits_posted=10)
    accounts: list[tuple[str, ledger.Account | None]] = [("dev_a", payer), ("mer_x", used)]
    refused = ledger.explain_refused_move(accounts, "EUR", "dev_a", 4)
    assert isinstance(refused, errors.TotalsOverLimit) and refused.reason == "amount_over_limit"
    assert "credits" in str(refused)
    fits = ledger.explain_refused_move(accounts, "EUR", "dev_a", 3)
    assert isinstance(fits, errors.InsufficientFunds)
    funding = ledger.Account("@funding/EUR", "EUR", False, ledger.MAX_TOTAL_MINOR - 1)
    spent = ledger.explain_refused_move([("@funding/EUR", funding)], "EUR", "@funding/EUR", 2)
    assert isinstance(spent, errors.TotalsOverLimit) and "debits" in str(spent)


def test_top_up_fingerprint_is_canonical() -> None:
    assert ledger.top_up_fingerprint(5, "EUR") == ledger.top_up_fingerprint(5, "EUR")
    assert ledger.top_up_fingerprint(5, "EUR") != ledger.top_up_fingerprint(5, "USD")
