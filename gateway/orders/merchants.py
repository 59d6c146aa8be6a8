"""A merchant's capture, void or refund over HTTP (contract section 4), decided like a payee
device's order: the same steps and outcomes, in one transaction, idempotent by its key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from devices import wire
from devices.contract import Reason, Result
from gateway.context import Context, OutboxEntry
from gateway.errors import Conflict
from gateway.orders import store as order_store
from gateway.orders.batch import finish, load_state, order_audit
from gateway.orders.decide import decide_order


def merchant_adjust(
    ctx: Context,
    merchant_id: str,
    payment_id: str,
    kind: str,
    amount: int | None,
    idempotency_key: str,
) -> Result:
    """A merchant's capture, void or refund over HTTP: the same checks as a payee device's.

    Idempotent by (merchant, key): the same request answers the first result again, another
    request with the key is 409 `idempotency_conflict`. A refusal is a `declined` result.
    """
    now = ctx.clock()
    body: dict[str, Any] = {
        "v": 1,
        "type": kind,
        "order_id": idempotency_key,
        "nonce": "http",
        "device_id": merchant_id,
        "payment_id": payment_id,
        "ts": int(now.timestamp()),
    }
    if amount is not None:
        body["amount"] = amount
    order = wire.parse_order(body, merchant_id)
    digest = wire.payload_digest({k: v for k, v in body.items() if k != "ts"})

    def work(conn: Connection) -> tuple[Result, list[OutboxEntry]]:
        order_store.lock_order_key(conn, merchant_id, idempotency_key)  # the same request, twice
        known = order_store.known_orders(conn, [(merchant_id, idempotency_key)])
        if known:
            earlier = known[(merchant_id, idempotency_key)]
            if earlier.payload_sha256 != digest:
                raise Conflict(
                    "this idempotency key was used for another request",
                    reason=Reason.IDEMPOTENCY_CONFLICT.value,
                )
            return earlier.result, []
        batch = load_state(conn, now, set(), {merchant_id})
        result = decide_order(batch, order)
        batch.new_orders.append(
            order_store.order_row(merchant_id, idempotency_key, digest, kind, result, now)
        )
        batch.audit.append(
            (f"merchant:{merchant_id}", f"order.{result.status}", None, order_audit(order, result))
        )
        return result, finish(ctx, batch)

    result, entries = ctx.db.run(work)
    ctx.publish(entries)
    return result
