"""The MQTT contract that firmware and the gateway share (CONTRACT.md section 6), as types.

Topics: a device publishes orders to `orders_topic(id)` and reads results and events on
`results_topic(id)`; gateway workers share the orders with `ORDERS_SHARED`. `Status` and
`Reason` hold exactly the contract's codes, and `Result` is the payload of every decision.
The JWS codec and the order schema are in `devices.wire`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args

PREFIX = "kym/v1/devices"
ORDERS_SHARED = f"$share/kym/{PREFIX}/+/orders"
_ORDERS = re.compile(rf"{PREFIX}/([A-Za-z0-9._-]{{1,64}})/orders")  # whole: `fullmatch`

Category = Literal[
    "fuel", "ev_charging", "parking", "tolls", "groceries", "utilities", "insurance",
    "maintenance", "transport", "rideshare", "retail", "gambling", "other",
]  # fmt: skip
CATEGORIES: frozenset[str] = frozenset(get_args(Category))


def orders_topic(device_id: str) -> str:
    """Where a device publishes its orders (`%u` or `+` give the ACL patterns)."""
    return f"{PREFIX}/{device_id}/orders"


def results_topic(device_id: str) -> str:
    """Where a device reads its results and events."""
    return f"{PREFIX}/{device_id}/results"


def device_of_orders_topic(topic: str) -> str | None:
    """The device id of an orders topic, or None when the topic is not one."""
    match = _ORDERS.fullmatch(topic)  # `$` would also take a trailing newline
    return match.group(1) if match else None


class Status(StrEnum):
    """A result's `status`."""

    APPROVED = "approved"
    DECLINED = "declined"
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED = "refunded"

    @property
    def is_final(self) -> bool:
        """Everything but `pending_approval` is the order's last word."""
        return self is not Status.PENDING_APPROVAL


class Reason(StrEnum):
    """A `declined` or `rejected` result's `reason`."""

    INVALID_MESSAGE = "invalid_message"
    INVALID_SIGNATURE = "invalid_signature"
    STALE_ORDER = "stale_order"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    DEVICE_NOT_ACTIVE = "device_not_active"
    CURRENCY_NOT_ALLOWED = "currency_not_allowed"
    CATEGORY_NOT_ALLOWED = "category_not_allowed"
    PAYEE_NOT_ALLOWED = "payee_not_allowed"
    OUTSIDE_ACTIVE_HOURS = "outside_active_hours"
    AMOUNT_OVER_LIMIT = "amount_over_limit"
    PERIOD_LIMIT_EXCEEDED = "period_limit_exceeded"
    PAYMENT_COUNT_EXCEEDED = "payment_count_exceeded"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    APPROVAL_DECLINED = "approval_declined"
    APPROVAL_EXPIRED = "approval_expired"
    UNKNOWN_PAYEE = "unknown_payee"
    PAYMENT_NOT_FOUND = "payment_not_found"
    CAPTURE_EXCEEDS_HOLD = "capture_exceeds_hold"
    HOLD_EXPIRED = "hold_expired"
    HOLD_NOT_OPEN = "hold_not_open"
    REFUND_EXCEEDS_PAYMENT = "refund_exceeds_payment"
    OWNER_FROZEN = "owner_frozen"
    RATE_LIMITED = "rate_limited"


class Event(StrEnum):
    """An event's `event`: to the payee device, then to the payer device."""

    PAYMENT_RECEIVED = "payment_received"
    HOLD_PLACED = "hold_placed"
    HOLD_CAPTURED = "hold_captured"
    HOLD_VOIDED = "hold_voided"
    HOLD_EXPIRED = "hold_expired"
    REFUND_RECEIVED = "refund_received"


_REFUSALS = frozenset({Status.DECLINED, Status.REJECTED})


@dataclass(frozen=True)
class Result:
    """The answer to one order; `reason` is set exactly when it is declined or rejected."""

    device_id: str
    order_id: str | None
    status: Status
    ts: int
    reason: Reason | None = None
    payment_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    expires_at: int | None = None  # an approved hold's end, Unix seconds
    approval_id: str | None = None  # a pending_approval's approval
    duplicate: bool = False  # a replay: the order's latest result again
    # an approved pay's or hold's automatic top-ups: [{"source", "amount", "plan_id"?}]
    funded_by: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        assert (self.status in _REFUSALS) == (self.reason is not None), (self.status, self.reason)

    def to_payload(self) -> dict[str, Any]:
        """The JSON object the gateway signs."""
        payload: dict[str, Any] = {
            "v": 1,
            "order_id": self.order_id,
            "device_id": self.device_id,
            "status": self.status.value,
            "reason": None if self.reason is None else self.reason.value,
            "payment_id": self.payment_id,
            "amount": self.amount,
            "currency": self.currency,
            "ts": self.ts,
        }
        if self.expires_at is not None:
            payload["expires_at"] = self.expires_at
        if self.approval_id is not None:
            payload["approval_id"] = self.approval_id
        if self.status is Status.APPROVED:
            payload["funded_by"] = [dict(entry) for entry in self.funded_by]
        if self.duplicate:
            payload["duplicate"] = True
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Result:
        """A result from its JSON object (e.g. as stored); raises ValueError on unknown codes."""
        reason = payload.get("reason")
        return cls(
            device_id=payload["device_id"],
            order_id=payload.get("order_id"),
            status=Status(payload["status"]),
            ts=int(payload["ts"]),
            reason=None if reason is None else Reason(reason),
            payment_id=payload.get("payment_id"),
            amount=payload.get("amount"),
            currency=payload.get("currency"),
            expires_at=payload.get("expires_at"),
            approval_id=payload.get("approval_id"),
            duplicate=payload.get("duplicate") is True,
            funded_by=tuple(payload.get("funded_by") or ()),
        )


def event_payload(event: Event, device_id: str, ts: int, **fields: Any) -> dict[str, Any]:
    """An event for a payee or payer device; `device_id` names its recipient."""
    return {"v": 1, "event": event.value, "device_id": device_id, "ts": ts, **fields}
