"""What may be disputed, until when and for how much, and which step may follow which. Pure.

open ──accept──────────────▶ resolved_for_owner (refunded at once, or 409 insufficient_funds)
 │ ──contest─▶ under_review ──resolution owner─▶ resolved_for_owner (refund, maybe pending)
 │                          ──resolution payee─▶ resolved_for_payee
 │                          ──accept (the payee gives in)─▶ resolved_for_owner, as above
 └── resolution (admin), or respond_by passes ─▶ resolved_for_owner / resolved_for_payee
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.errors import Conflict, Invalid

REASONS = ("not_authorized", "not_received", "defective", "duplicate", "amount_incorrect")
OPEN, UNDER_REVIEW = "open", "under_review"
FOR_OWNER, FOR_PAYEE = "resolved_for_owner", "resolved_for_payee"
STATUSES = (OPEN, UNDER_REVIEW, FOR_OWNER, FOR_PAYEE)
WINDOW = timedelta(days=120)
DEFAULT_RESPONSE_DAYS = 7.0


def check_disputable(kind: str, status: str) -> None:
    """Only a completed pay or a captured hold (409 `payment_not_disputable`)."""
    if (kind, status) not in (("pay", "completed"), ("hold", "captured")):
        raise Conflict(
            f"a {kind} that is {status} cannot be disputed, only a completed pay or captured hold",
            reason="payment_not_disputable",
        )


def check_window(start: datetime, now: datetime) -> None:
    """Within 120 days of the pay or the capture (409 `dispute_window_closed`)."""
    if now - start > WINDOW:
        raise Conflict(
            "disputes are taken within 120 days of the pay or the capture",
            reason="dispute_window_closed",
        )


def disputed_amount(requested: int | None, refundable_minor: int) -> int:
    """The amount disputed: what was asked, by default what was paid less refunds; 0 or more
    than that is 422."""
    amount = refundable_minor if requested is None else requested
    if not 1 <= amount <= refundable_minor:
        raise Invalid(
            f"amount must be 1 to {refundable_minor} (what was paid less refunds)",
            reason="invalid_request",
        )
    return amount


def respond_by(opened_at: datetime, response_days: float) -> datetime:
    """When the payee's answer is due."""
    return opened_at + timedelta(days=response_days)


def check_may_answer(status: str, respond_by_at: datetime, now: datetime) -> None:
    """The payee answers an open dispute before `respond_by`, or one under review until the
    admin decides it (accepting then refunds; contesting again keeps it under review); else 409
    `dispute_not_open`. An open one past `respond_by` is the owner's by silence, even before
    the housekeeper says so."""
    if status == UNDER_REVIEW:
        return
    if status != OPEN:
        raise Conflict(f"the dispute is {status}", reason="dispute_not_open")
    if now >= respond_by_at:
        raise Conflict(
            "the time to answer passed at respond_by: the dispute is resolved for the owner",
            reason="dispute_not_open",
        )


def check_may_resolve(status: str) -> None:
    """The admin resolves an open or contested dispute (409 `dispute_not_open`)."""
    if status not in (OPEN, UNDER_REVIEW):
        raise Conflict(f"the dispute is {status}", reason="dispute_not_open")


def check_silence(status: str, respond_by_at: datetime, now: datetime) -> None:
    """Silence resolves an open dispute once `respond_by` has passed, never an answered one
    (409 `dispute_not_open`: a contest made in time and committed meanwhile stands)."""
    if status != OPEN or now < respond_by_at:
        raise Conflict(f"the dispute is {status}, answered in time", reason="dispute_not_open")


def left_to_refund(
    disputed_minor: int, refunded_at_open: int, refunded_now: int, refundable_now: int
) -> int:
    """What a resolution for the owner refunds: the disputed amount less the refunds made since
    the dispute opened, and never more than the payment still holds."""
    return max(0, min(disputed_minor - (refunded_now - refunded_at_open), refundable_now))
