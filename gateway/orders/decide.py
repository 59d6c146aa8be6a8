"""Deciding the orders devices send: one database transaction per batch, then publish.

`decide_messages` is what an MQTT worker calls with the batch it took off its queue. In one
transaction it checks each message (`intake`: decoding, signature, schema), locks the senders
and loads their state (`batch`), answers replays and refuses stale orders, decides each order
with one `match` on its type (`payments` for pay and hold, `adjustments` for capture, void and
refund), and writes the money, the counters, the signed results (outbox) and the audit entries
(`batch.finish`). The worker publishes the outbox entries after the commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, assert_never

from sqlalchemy import Connection

from devices import store as device_store
from devices import wire
from devices.contract import Reason, Result, Status
from gateway.context import Context, OutboxEntry
from gateway.errors import ORDER_REFUSALS, reason_of
from gateway.orders import adjustments, payments
from gateway.orders import store as order_store
from gateway.orders.batch import Batch, finish, load_state, order_audit
from gateway.orders.intake import Checked, KeyRing, check_messages

FRESHNESS = timedelta(seconds=300)


def decide_messages(
    ctx: Context, keyring: KeyRing, messages: Iterable[tuple[str, bytes]], now: datetime
) -> list[OutboxEntry]:
    """Decide a batch of (topic, payload) in one transaction; the outbox entries to publish."""
    grace = timedelta(seconds=ctx.settings.rotation_grace_s)

    def work(conn: Connection) -> list[OutboxEntry]:
        checked = check_messages(conn, keyring, messages, now, grace)
        if not checked:
            return []
        batch = load_batch(conn, checked, now)
        for serial in sorted({c.first_use for c in checked if c.first_use}):
            device_store.mark_certificate_used(conn, serial, now)
        for item in checked:
            decide_one(batch, item)
        return finish(ctx, batch)

    return ctx.db.run(work)


def load_batch(conn: Connection, checked: list[Checked], now: datetime) -> Batch:
    """Lock the senders and load their state, the payees and known orders in a few queries."""
    orders = [c.order for c in checked if c.order is not None]
    senders = {o.device_id for o in orders}
    payees = {o.payee for o in orders if isinstance(o, wire.PayOrder | wire.HoldOrder)}
    batch = load_state(conn, now, senders, payees)
    batch.known = order_store.known_orders(conn, [(o.device_id, o.order_id) for o in orders])
    return batch


def decide_one(batch: Batch, item: Checked) -> None:
    """Answer one checked message within the batch: a rejection, a replay, or a decision."""
    if item.reason is not None:
        reject(batch, item.device_id, item.order_id, item.reason)
        return
    assert item.order is not None and item.payload is not None
    order, digest = item.order, payload_digest(item.payload)
    known = batch.known.get((item.device_id, order.order_id))
    if known is not None and known.payload_sha256 != digest:
        reject(batch, item.device_id, order.order_id, Reason.IDEMPOTENCY_CONFLICT)
        return
    if known is not None:  # a replay: the latest answer again, nothing decided anew
        batch.answer(replace(known.result, duplicate=True, ts=batch.ts))
        return
    if abs(order.ts - batch.ts) > FRESHNESS.total_seconds():
        reject(batch, item.device_id, order.order_id, Reason.STALE_ORDER)
        return
    result = decide_order(batch, order)
    batch.new_orders.append(
        order_store.order_row(
            order.device_id, order.order_id, digest, order.type, result, batch.now
        )
    )
    batch.known[(order.device_id, order.order_id)] = order_store.KnownOrder(digest, result)
    batch.answer(result)
    batch.audit.append(
        (
            f"device:{order.device_id}",
            f"order.{result.status}",
            order.device_id,
            order_audit(order, result),
        )
    )


def reject(batch: Batch, device_id: str, order_id: str | None, reason: Reason) -> None:
    """A `rejected` result; recorded in the audit trail (not as an order: nothing was decided
    about money), so that every refusal can be explained later."""
    batch.answer(batch.result(device_id, order_id, Status.REJECTED, reason=reason))
    batch.audit.append(
        (
            f"topic:{device_id}",
            "order.rejected",
            None,
            {"order_id": order_id, "reason": reason.value},
        )
    )


def decide_order(batch: Batch, order: wire.Order, *, owner_approved: bool = False) -> Result:
    """Steps 2 to 6 for one order; a refusal becomes a `declined` result and leaves nothing of
    the order behind. `owner_approved`: the owner approved this pay or hold just now."""
    savepoint = batch.conn.begin_nested()
    try:
        match order:
            case wire.PayOrder() | wire.HoldOrder():
                result = payments.decide_payment(batch, order, owner_approved=owner_approved)
            case wire.CaptureOrder():
                result = adjustments.capture(batch, order)
            case wire.VoidOrder():
                result = adjustments.void(batch, order)
            case wire.RefundOrder():
                result = adjustments.refund(batch, order)
            case _:
                assert_never(order)
    except ORDER_REFUSALS as refusal:
        savepoint.rollback()
        return declined(batch, order, reason_of(refusal))
    savepoint.commit()
    return result


def declined(batch: Batch, order: wire.Order, reason: Reason) -> Result:
    """A `declined` result naming the order's amount, currency and payment where it has them."""
    return batch.result(
        order.device_id,
        order.order_id,
        Status.DECLINED,
        reason=reason,
        amount=getattr(order, "amount", None),
        currency=getattr(order, "currency", None),
        payment_id=getattr(order, "payment_id", None),
    )


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of the payload as parsed JSON (key order and spacing do not matter)."""
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
