"""Results and events as a device sees them, and the orders it can build (contract section 6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.contract import Reason, Status

PENDING = Status.PENDING_APPROVAL


@dataclass(frozen=True)
class Funding:
    """What one of the owner's funding sources moved for an approved pay or hold (section 8):
    an automatic top-up from a balance source, or a credit line's payment with its plan."""

    source: str
    amount: int
    plan_id: str | None = None


@dataclass(frozen=True)
class Result:
    """The gateway's verified answer to one order (`order_id` is None for unparseable ones)."""

    order_id: str | None
    status: str
    reason: str | None
    payment_id: str | None
    amount: int | None
    currency: str | None
    ts: int
    duplicate: bool
    payload: dict[str, Any] = field(compare=False, repr=False)
    funded_by: tuple[Funding, ...] = ()  # `[]` on the wire when the wallet alone paid

    @property
    def is_final(self) -> bool:
        """Everything but `pending_approval` and a `rate_limited` refusal is the order's last word.

        A `rate_limited` order was not decided: sent again later, it is decided then (contract
        section 10), and the client's re-sending sends it again.
        """
        return self.status != PENDING and not self.is_rate_limited

    @property
    def is_rate_limited(self) -> bool:
        """The gateway refused the order unread because the device went over its rate."""
        return self.status == Status.REJECTED and self.reason == Reason.RATE_LIMITED

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Result:
        return cls(
            order_id=payload.get("order_id"),
            status=payload["status"],
            reason=payload.get("reason"),
            payment_id=payload.get("payment_id"),
            amount=payload.get("amount"),
            currency=payload.get("currency"),
            ts=int(payload.get("ts") or 0),
            duplicate=payload.get("duplicate") is True,
            payload=payload,
            funded_by=tuple(
                Funding(str(f["source"]), int(f["amount"]), f.get("plan_id"))
                for f in payload.get("funded_by") or ()
                if isinstance(f, dict) and "source" in f and "amount" in f
            ),
        )


@dataclass(frozen=True)
class Event:
    """A verified event: `payment_received`, `hold_placed`, `hold_captured`, `hold_voided`,
    `hold_expired` or `refund_received`."""

    event: str
    payment_id: str | None
    amount: int | None
    currency: str | None
    ts: int
    order_id: str | None = None
    payer_device_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        return cls(
            event=payload["event"],
            payment_id=payload.get("payment_id"),
            amount=payload.get("amount"),
            currency=payload.get("currency"),
            ts=int(payload.get("ts") or 0),
            order_id=payload.get("order_id"),
            payer_device_id=payload.get("payer_device_id"),
            payload=payload,
        )


def pay_fields(
    payee: str, amount_minor: int, currency: str, description: str | None = None
) -> dict[str, Any]:
    """The type-specific fields of a `pay` order."""
    return _without_none(
        {
            "type": "pay",
            "payee": payee,
            "amount": amount_minor,
            "currency": currency,
            "description": description,
        }
    )


def hold_fields(
    payee: str,
    amount_minor: int,
    currency: str,
    expires_in_s: int | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A `hold`: reserves up to `amount_minor` for the payee (60 to 86400 s, default 900)."""
    return _without_none(
        {
            "type": "hold",
            "payee": payee,
            "amount": amount_minor,
            "currency": currency,
            "expires_in": expires_in_s,
            "description": description,
        }
    )


def capture_fields(
    payment_id: str, amount_minor: int, currency: str | None = None
) -> dict[str, Any]:
    """A `capture` by the payee: posts up to the held amount and releases the rest."""
    return _without_none(
        {"type": "capture", "payment_id": payment_id, "amount": amount_minor, "currency": currency}
    )


def void_fields(payment_id: str) -> dict[str, Any]:
    """A `void` by the payee: releases the whole hold."""
    return {"type": "void", "payment_id": payment_id}


def refund_fields(
    payment_id: str, amount_minor: int, currency: str | None = None
) -> dict[str, Any]:
    """A `refund` by the payee of a pay or a captured hold."""
    return _without_none(
        {"type": "refund", "payment_id": payment_id, "amount": amount_minor, "currency": currency}
    )


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
