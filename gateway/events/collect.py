"""The events a decision transaction causes, read off what it did, written in that transaction.

`record_batch` runs in `gateway.orders.batch.finish`: the batch's audit entries say which pays
and holds were approved or declined (with their payee and kind), its results say which orders
now wait for approval, and the events it sends the payer devices say which holds were captured,
voided or expired and which payments refunded. Hooks outside the order path add events of their
own to `batch.events`. Everything goes in with one multi-row insert; the few lookups (recipients
not loaded yet, waiting approvals, adjusted payments) are one query each per batch, and only
when the batch has such events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices import store as device_store
from gateway import store as gateway_store
from gateway.consent import store as consent_store
from gateway.events import envelope, thresholds
from gateway.events import store as event_store
from gateway.events.envelope import Draft
from wallet import schema as wallet_schema

if TYPE_CHECKING:
    from gateway.orders.batch import Batch

About = tuple[str, str, dict[str, Any]]  # (a device or merchant id, type, data)


def record_batch(batch: Batch) -> None:
    """Derive the batch's events, find their recipients, and write them (one insert)."""
    event_store.record(batch.conn, batch_events(batch), batch.now)


def batch_events(batch: Batch) -> list[Draft]:
    """The batch's events and their recipients (a few reads when it has events that need
    them; they see the batch's money moved and its decisions made, not yet written)."""
    about: list[About] = [*batch.events, *_payment_results(batch.audit)]
    about += _approvals_pending(batch.conn, batch.outgoing)
    about += _adjustments(batch.conn, batch.outgoing)
    about += thresholds.limit_events(batch, thresholds.approved_by_device(about))
    about += thresholds.low_balance_events(batch, thresholds.balance_moves(about, batch.outgoing))
    return resolve(batch.conn, about, _known_recipients(batch)) if about else []


def likely_recipients(batch: Batch) -> set[str]:
    """Who the batch's events will mostly go to: the owners of its devices and its merchants
    (`resolve` may find others)."""
    return set(_known_recipients(batch).values())


def _known_recipients(batch: Batch) -> dict[str, str]:
    known = {device.id: device.owner_id for device in batch.devices.values()}
    known.update({merchant_id: merchant_id for merchant_id in batch.merchants})
    return known


def resolve(conn: Connection, about: list[About], known: dict[str, str]) -> list[Draft]:
    """Each event to the owner of the device it is about, or to the merchant it is about;
    one event per recipient, type and payment (an owner of both payer and payee gets one),
    and per refunded amount so far (two refunds of a payment are two events)."""
    missing = {party for party, _, _ in about if party not in known}
    if missing:
        known = {**known, **recipients_of(conn, missing)}
    drafts, seen = [], set()
    for party, event_type, data in about:
        recipient = known.get(party)
        about_what = data.get("payment_id") or id(data)
        key = (recipient, event_type, about_what, data.get("refunded_amount"))
        if recipient is None or key in seen:
            continue
        seen.add(key)
        drafts.append(Draft(recipient, event_type, data))
    return drafts


def recipients_of(conn: Connection, parties: Iterable[str]) -> dict[str, str]:
    """Device id -> its owner's id; merchant id -> itself."""
    parties = set(parties)
    devices = device_store.devices
    rows = conn.execute(
        sa.select(devices.c.id, devices.c.owner_id).where(devices.c.id.in_(parties))
    )
    found = {device_id: owner_id for device_id, owner_id in rows}
    merchants = gateway_store.merchants_by_id(conn, parties - set(found))
    return found | {merchant_id: merchant_id for merchant_id in merchants}


def _payment_results(audit: Iterable[tuple[str, str, str | None, Any]]) -> list[About]:
    """`payment.approved` / `payment.declined` for each pay or hold decided in this batch, and
    `payment.received` / `hold.placed` for the payee of each approved one."""
    out: list[About] = []
    for _actor, action, device_id, data in audit:
        if action not in ("order.approved", "order.declined") or device_id is None:
            continue
        if not isinstance(data, dict) or data.get("type") not in ("pay", "hold"):
            continue
        order = {**data, "device_id": device_id}
        out += payment_events(order, approved=action == "order.approved", kind=data["type"])
    return out


def payment_events(order: dict[str, Any], *, approved: bool, kind: str) -> list[About]:
    """The events of one final pay or hold result (`order`: `gateway.orders.batch.order_audit`)."""
    payer = order["device_id"]
    event_type, data = envelope.payment_result(
        approved=approved,
        device_id=payer,
        order_id=order["order_id"],
        payment_id=order.get("payment_id"),
        amount=order.get("amount"),
        currency=order.get("currency"),
        payee=order.get("payee"),
        reason=order.get("reason"),
    )
    out: list[About] = [(payer, event_type, data)]
    if approved and order.get("payee"):
        payee_type, payee_data = envelope.payee_event(kind, data)
        out.append((order["payee"], payee_type, payee_data))
    return out


def _approvals_pending(conn: Connection, outgoing: list[tuple[str, dict[str, Any]]]) -> list[About]:
    ids = [
        payload["approval_id"]
        for _, payload in outgoing
        if payload.get("status") == "pending_approval"
        and payload.get("approval_id")
        and not payload.get("duplicate")
    ]
    if not ids:
        return []
    table = consent_store.approvals
    rows = [dict(r) for r in conn.execute(table.select().where(table.c.id.in_(ids))).mappings()]
    return [(item["device_id"], "approval.pending", item) for item in approval_items(conn, rows)]


def approval_items(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Approvals as the approvals list shows them."""
    from gateway.consent import views  # imports gateway.service, which imports this module

    return views.approval_items(conn, rows)


def _adjustments(conn: Connection, outgoing: list[tuple[str, dict[str, Any]]]) -> list[About]:
    """`hold.captured`, `hold.voided`, `hold.expired`, `payment.refunded`, one for each such
    event sent to a payer device, with the payment as it stood after it: the payment's row is
    read as the batch left it, and a refund made later in the batch is not yet in the
    `refunded_amount` of an earlier one."""
    moved = [
        (payload["event"], payload["payment_id"], payload["amount"])
        for _, payload in outgoing
        if payload.get("event") in envelope.ADJUSTMENTS
    ]
    if not moved:
        return []
    payments = wallet_schema.payments
    query = sa.select(payments).where(payments.c.payment_id.in_({p for _, p, _ in moved}))
    found = {row["payment_id"]: dict(row) for row in conn.execute(query).mappings()}
    out: list[About] = []
    for device_event, payment_id, amount in reversed(moved):  # the batch's moves, undone
        payment = found.get(payment_id)
        if payment is None:
            continue
        event_type, data = envelope.adjustment(device_event, payment, amount)
        out += [(payment["payee_id"], event_type, data), (payment["payer_id"], event_type, data)]
        if event_type == "payment.refunded":
            before = data["refunded_amount"] - amount
            found[payment_id] = {**payment, "refunded_amount_minor": before}
    return out[::-1]


def approval_closed(batch: Batch, approval_id: str, result: Any) -> None:
    """`approval.decided` or `approval.expired` (the approval item with its `result`), and the
    order's final `payment.approved` / `payment.declined` with the payee's event."""
    row = consent_store.get_approval(batch.conn, approval_id)
    assert row is not None
    reason = None if result.reason is None else result.reason.value
    item = approval_items(batch.conn, [row])[0]
    item["result"] = {"status": result.status.value, "reason": reason}
    expired = row["status"] == "expired"
    batch.events.append(
        (row["device_id"], "approval.expired" if expired else "approval.decided", item)
    )
    order = {
        "device_id": row["device_id"],
        "order_id": row["order_id"],
        "payment_id": result.payment_id,
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "payee": row["payee"],
        "reason": reason,
    }
    approved = result.status.value == "approved"
    batch.events.extend(payment_events(order, approved=approved, kind=item["kind"]))


def record_status_change(conn: Connection, device: Any, to: str, now: Any) -> None:
    """`device.status_changed` for the device's owner, in the transaction that changes it."""
    event_type, data = envelope.status_changed(device.id, device.status.value, to)
    event_store.record(conn, [Draft(device.owner_id, event_type, data)], now)
