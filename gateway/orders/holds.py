"""Holds nobody captured or voided in time: the gateway voids them (contract section 6)."""

from __future__ import annotations

from sqlalchemy import Connection

from devices.contract import Event, event_payload
from gateway.context import Context, OutboxEntry
from gateway.orders.batch import Batch, finish
from wallet import store as wallet_store


def expire_holds(ctx: Context) -> int:
    """Void holds past their end, give back what they counted, tell the payer; returns how many
    messages that sent."""
    now = ctx.clock()
    with ctx.db.read() as conn:  # most rounds end here, without taking the write lock
        if not wallet_store.any_due_holds(conn, now):
            return 0

    def work(conn: Connection) -> list[OutboxEntry]:
        batch = Batch(conn, now)
        for payment in wallet_store.expire_due_holds(conn, now):
            batch.give_back(payment.payment_id, -payment.amount_minor, -1)
            batch.send(
                payment.payer_id,
                event_payload(
                    Event.HOLD_EXPIRED,
                    payment.payer_id,
                    batch.ts,
                    payment_id=payment.payment_id,
                    amount=payment.amount_minor,
                    currency=payment.currency,
                ),
            )
            audit = {"payment_id": payment.payment_id, "amount": payment.amount_minor}
            batch.audit.append(("gateway", "hold.expired", payment.payer_id, audit))
        return finish(ctx, batch)

    entries = ctx.db.run(work)
    ctx.publish(entries)
    return len(entries)
