"""The final answer to a message the gateway failed to decide MAX_TRIES times.

The worker gives such a message up (`gateway.mqtt.workers.Worker._give_up`) so that it does not
hold the broker's in-flight window for ever. Its answer must stay its only one: an order that
passes the message checks (decoding, signature, schema) and freshness is recorded with its
`rejected` result, as a decided order is, so that a copy sent again later (the device lost the
result and re-sends it byte for byte) gets that result again, marked `"duplicate": true`, and
is never decided anew (CONTRACT section 6, "Delivery": two different final results, never). A
message whose order was decided before gets the stored result.

Whatever fails here (the failure may be the one that made the message undecidable) is rolled
back to a savepoint, and the message still gets its rejection, unrecorded, as any other
rejected message does.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Connection

from devices import wire
from devices.contract import Reason, Result, Status, device_of_orders_topic, results_topic
from gateway.audit import store as audit_store
from gateway.context import Context, OutboxEntry
from gateway.orders import store as order_store
from gateway.orders.decide import FRESHNESS
from gateway.orders.intake import KeyRing, check_messages

log = logging.getLogger("kym.orders")


def reject_undecidable(
    ctx: Context, conn: Connection, keyring: KeyRing, topic: str, payload: bytes, tries: int
) -> list[OutboxEntry]:
    """The message's final result, signed into the outbox with its audit entry."""
    device_id, now = device_of_orders_topic(topic), ctx.clock()
    if device_id is None:
        return []
    order_id = wire.order_id_of(wire.payload_of(payload))
    detail = f"the gateway failed to decide this message {tries} times"
    rejected = Result(
        device_id, order_id, Status.REJECTED, int(now.timestamp()), Reason.INVALID_MESSAGE
    )
    grace = timedelta(seconds=ctx.settings.rotation_grace_s)
    savepoint = conn.begin_nested()
    try:
        answer = _record(conn, keyring, topic, payload, rejected, now, grace)
    except Exception:  # noqa: BLE001 - the rejection goes out unrecorded
        savepoint.rollback()
        log.exception("could not record the undecidable message on %s as an order", topic)
        answer = rejected
    else:
        savepoint.commit()
    result = answer.to_payload()
    if not answer.duplicate:  # a replay's answer is not audited again, as in `decide_one`
        result["detail"] = detail
        data = {"order_id": order_id, "detail": detail}
        audit_store.append(conn, now, [(f"topic:{device_id}", "order.rejected", None, data)])
    signed = wire.sign(result, ctx.pki.signer.private_key, ctx.signer_jose)
    results = results_topic(device_id)
    ids = order_store.enqueue(conn, [(results, signed)], now)
    return [(ids[0], results, signed)]


def _record(
    conn: Connection,
    keyring: KeyRing,
    topic: str,
    payload: bytes,
    rejected: Result,
    now: datetime,
    grace: timedelta,
) -> Result:
    """The stored result of the order when it was decided before; else `rejected`, recorded as
    its result when the message is a signed order within FRESHNESS of `now`."""
    checked = check_messages(conn, keyring, [(topic, payload)], now, grace)
    item = checked[0] if checked else None
    if item is None or item.order is None or item.payload is None:
        return rejected  # refused by the message checks: the same bytes always are
    order, digest = item.order, wire.payload_digest(item.payload)
    known = order_store.known_orders(conn, [(item.device_id, order.order_id)])
    stored = known.get((item.device_id, order.order_id))
    if stored is not None:
        if stored.payload_sha256 == digest:
            return replace(stored.result, duplicate=True, ts=rejected.ts)
        return rejected  # another order's id: its own answer stands, this one is not recorded
    if abs(order.ts - rejected.ts) > FRESHNESS.total_seconds() or item.outside_validity:
        return rejected  # never recorded, as a stale or unsigned order is not
    row = order_store.order_row(
        item.device_id, order.order_id, digest, order.type, rejected, now, item.token
    )
    order_store.record_orders(conn, [row])
    return rejected
