"""Events for owners and merchants (contract section 7): their types, who gets which, and the
envelope `{"id", "type", "created_at", "data"}`. Pure: ids and times are handed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.ids import ordered_hex

DISPUTES = ("dispute.opened", "dispute.answered", "dispute.resolved")
MERCHANT_TYPES = (
    "payment.received",
    "hold.placed",
    "hold.captured",
    "hold.voided",
    "hold.expired",
    "payment.refunded",
    *DISPUTES,
)
OWNER_TYPES = (
    "approval.pending",
    "approval.decided",
    "approval.expired",
    "payment.approved",
    "payment.declined",
    "hold.captured",
    "hold.voided",
    "hold.expired",
    "payment.refunded",
    "device.status_changed",
    "limit.nearly_reached",
    "wallet.low_balance",
    "payment.received",
    "hold.placed",
    "instalment.plan_opened",
    "instalment.paid",
    "instalment.overdue",
    *DISPUTES,
)
TYPES_BY_KIND: dict[str, tuple[str, ...]] = {"owner": OWNER_TYPES, "merchant": MERCHANT_TYPES}
# the device events of section 6 that the payer hears about, and the owner's event for each
ADJUSTMENTS = {
    "hold_captured": "hold.captured",
    "hold_voided": "hold.voided",
    "hold_expired": "hold.expired",
    "refund_received": "payment.refunded",
}


@dataclass(frozen=True)
class Draft:
    """An event for one recipient (an owner's or a merchant's id), before it has an id."""

    recipient: str
    type: str
    data: dict[str, Any]


def new_event_id() -> str:
    """An opaque event id: `evt_`, the time and 96 random bits (`ordered_hex`)."""
    return f"evt_{ordered_hex(12)}"


def envelope(event_id: str, event_type: str, created_at: datetime, data: Any) -> dict[str, Any]:
    """The event as webhooks POST it and the stream sends it."""
    return {"id": event_id, "type": event_type, "created_at": created_at.isoformat(), "data": data}


def body_of(event: dict[str, Any]) -> str:
    """The envelope as one line of JSON (the webhook body, the stream's `data:` line)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def payment_result(
    *,
    approved: bool,
    device_id: str,
    order_id: str,
    payment_id: str | None,
    amount: int | None,
    currency: str | None,
    payee: str | None,
    reason: str | None,
) -> tuple[str, dict[str, Any]]:
    """`payment.approved` or `payment.declined` for the payer's owner: (type, data)."""
    data = {
        "device_id": device_id,
        "order_id": order_id,
        "payment_id": payment_id if approved else None,
        "amount": amount,
        "currency": currency,
        "payee": payee,
        "reason": None if approved else reason,
    }
    return ("payment.approved" if approved else "payment.declined"), data


def payee_event(kind: str, payer_data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`payment.received` (a pay) or `hold.placed` (a hold) for the payee, from the payer's
    `payment.approved` data, with `payer_device_id`."""
    event_type = "hold.placed" if kind == "hold" else "payment.received"
    data = {k: v for k, v in payer_data.items() if k != "reason"}
    return event_type, {**data, "payer_device_id": payer_data["device_id"]}


def adjustment(
    device_event: str, payment: dict[str, Any], amount: int
) -> tuple[str, dict[str, Any]]:
    """`hold.captured`, `hold.voided`, `hold.expired` or `payment.refunded` from the payer
    device's event and the payment as it now stands (`payer_id`, `payee_id`, ... in minor units)."""
    data = {
        "device_id": payment["payer_id"],
        "payment_id": payment["payment_id"],
        "amount": amount,
        "currency": payment["currency"],
        "payee": payment["payee_id"],
        "captured_amount": payment["captured_amount_minor"],
        "refunded_amount": payment["refunded_amount_minor"],
        "payer_device_id": payment["payer_id"],
    }
    return ADJUSTMENTS[device_event], data


def status_changed(device_id: str, before: str, after: str) -> tuple[str, dict[str, Any]]:
    """`device.status_changed` for the device's owner."""
    return "device.status_changed", {"device_id": device_id, "from": before, "to": after}


def check_subscription(kind: str, types: list[str] | None) -> list[str]:
    """The event types a webhook of this kind of party gets: all of its kind's when absent;
    raises ValueError for `[]`, an unknown type, or one this kind never gets."""
    allowed = TYPES_BY_KIND[kind]
    if types is None:
        return list(allowed)
    if not types:
        raise ValueError("events: give at least one type, or leave it out for all of them")
    wrong = [t for t in types if t not in allowed]
    if wrong:
        raise ValueError(f"events: {wrong[0]!r} is not an event {kind}s get")
    return list(dict.fromkeys(types))
