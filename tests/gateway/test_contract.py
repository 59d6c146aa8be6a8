"""The contract as types (`devices.contract`): exactly the codes of CONTRACT.md section 6."""

from __future__ import annotations

import json

import pytest

from devices import contract
from devices.contract import Reason, Result, Status
from gateway.errors import (
    REFUSALS,
    RULE_VIOLATIONS,
    Conflict,
    Declined,
    NotFound,
    reason_of,
    refusal_of,
)
from wallet import errors as wallet_errors

# Copied from CONTRACT.md section 6 ("status is ..." and "Reasons include ...").
CONTRACT_STATUSES = "approved, declined, pending_approval, rejected, captured, voided, refunded"
CONTRACT_REASONS = (
    "invalid_message, invalid_signature, stale_order, idempotency_conflict, device_not_active, "
    "currency_not_allowed, category_not_allowed, payee_not_allowed, outside_active_hours, "
    "amount_over_limit, period_limit_exceeded, payment_count_exceeded, insufficient_funds, "
    "approval_declined, approval_expired, unknown_payee, payment_not_found, capture_exceeds_hold, "
    "hold_expired, hold_not_open, refund_exceeds_payment, owner_frozen, rate_limited"
)
CONTRACT_CATEGORIES = (
    "fuel, ev_charging, parking, tolls, groceries, utilities, insurance, maintenance, transport, "
    "rideshare, retail, gambling, other"
)


def codes(text: str) -> list[str]:
    return [code.strip() for code in text.split(",")]


def test_status_holds_exactly_the_contracts_statuses() -> None:
    assert [s.value for s in Status] == codes(CONTRACT_STATUSES)
    assert [s for s in Status if not s.is_final] == [Status.PENDING_APPROVAL]


def test_reason_holds_exactly_the_contracts_reasons() -> None:
    assert [r.value for r in Reason] == codes(CONTRACT_REASONS)


def test_categories_are_the_contracts() -> None:
    assert sorted(contract.CATEGORIES) == sorted(codes(CONTRACT_CATEGORIES))


def test_topics() -> None:
    assert contract.orders_topic("dev_1") == "kym/v1/devices/dev_1/orders"
    assert contract.results_topic("dev_1") == "kym/v1/devices/dev_1/results"
    assert contract.ORDERS_SHARED == "$share/kym/kym/v1/devices/+/orders"
    assert contract.device_of_orders_topic("kym/v1/devices/dev_1.a-b/orders") == "dev_1.a-b"
    for topic in (
        "kym/v1/devices/dev_1/results",
        "kym/v1/devices/+/orders",
        "kym/v1/devices/a/b/orders",
        "kym/v1/devices//orders",
        f"kym/v1/devices/{'x' * 65}/orders",
        "x/kym/v1/devices/dev_1/orders",
        "kym/v1/devices/dev_1/orders\n",
    ):
        assert contract.device_of_orders_topic(topic) is None, topic


def test_an_approved_result_has_the_contracts_payload() -> None:
    result = Result(
        "dev_1", "o-1", Status.APPROVED, 1795000001, payment_id="pay_9", amount=1250, currency="EUR"
    )
    assert result.to_payload() == {
        "v": 1,
        "order_id": "o-1",
        "device_id": "dev_1",
        "status": "approved",
        "reason": None,
        "payment_id": "pay_9",
        "amount": 1250,
        "currency": "EUR",
        "ts": 1795000001,
        "funded_by": [],  # section 8: every approved pay or hold says what topped it up
    }
    assert json.loads(json.dumps(result.to_payload()))["status"] == "approved"
    assert "funded_by" not in Result("d", "o", Status.PENDING_APPROVAL, 1).to_payload()


def test_optional_fields_appear_only_when_set() -> None:
    hold = Result("d", "o", Status.APPROVED, 1, payment_id="p", expires_at=61).to_payload()
    assert hold["expires_at"] == 61 and "approval_id" not in hold and "duplicate" not in hold
    pending = Result("d", "o", Status.PENDING_APPROVAL, 1, approval_id="apr_1").to_payload()
    assert pending["approval_id"] == "apr_1" and "expires_at" not in pending
    replay = Result("d", "o", Status.DECLINED, 1, Reason.INSUFFICIENT_FUNDS, duplicate=True)
    assert replay.to_payload()["duplicate"] is True
    assert replay.to_payload()["reason"] == "insufficient_funds"


@pytest.mark.parametrize(
    "result",
    [
        Result("d", None, Status.REJECTED, 5, Reason.INVALID_MESSAGE),
        Result(
            "d", "o", Status.APPROVED, 5, payment_id="p", amount=1, currency="EUR", expires_at=9
        ),
        Result("d", "o", Status.PENDING_APPROVAL, 5, amount=1, currency="EUR", approval_id="a"),
        Result("d", "o", Status.DECLINED, 5, Reason.APPROVAL_EXPIRED, duplicate=True),
    ],
)
def test_a_stored_result_reads_back_equal(result: Result) -> None:
    assert Result.from_payload(json.loads(json.dumps(result.to_payload()))) == result


def test_a_reason_is_set_exactly_when_declined_or_rejected() -> None:
    with pytest.raises(AssertionError):
        Result("d", "o", Status.DECLINED, 1)
    with pytest.raises(AssertionError):
        Result("d", "o", Status.APPROVED, 1, Reason.STALE_ORDER)
    with pytest.raises(ValueError):
        Result.from_payload({"device_id": "d", "status": "declined", "reason": "declined", "ts": 1})


def test_one_table_gives_an_orders_reason_and_its_http_answer() -> None:
    for violation in RULE_VIOLATIONS:
        assert reason_of(violation()) == Reason(violation.reason)
        assert refusal_of(violation()) == (409, violation.reason)
    for refusal in (wallet_errors.HoldExpired(), wallet_errors.InsufficientFunds()):
        assert reason_of(refusal) == Reason(refusal.reason)
        assert refusal_of(refusal) == (409, refusal.reason)
    declined = Declined(Reason.DEVICE_NOT_ACTIVE)
    assert reason_of(declined) is Reason.DEVICE_NOT_ACTIVE
    assert refusal_of(declined) == (409, "device_not_active")
    assert refusal_of(wallet_errors.CurrencyNotAllowed()) == (422, "currency_not_allowed")
    assert refusal_of(NotFound("no such device")) == (404, "not_found")
    assert refusal_of(Conflict("x", reason="invalid_state")) == (409, "invalid_state")
    with pytest.raises(ValueError):
        reason_of(wallet_errors.WalletNotFound())  # not a contract reason: a bug, not a refusal
    assert len({kind for kind, _, _ in REFUSALS}) == len(REFUSALS)
