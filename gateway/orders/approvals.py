"""Orders that wait for their owner: the owner's decision over HTTP, and expiry.

Approving runs steps 2 to 4 again at that moment, then moves the money
(`gateway.orders.decide.decide_order` with `owner_approved`); approving with `instalments` runs
steps 2 and 3 and pays from the credit line on the terms the approval's offer showed (section
8); declining or expiring answers the device `declined` with `approval_declined` or
`approval_expired`. A timeout never approves.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from devices import store as device_store
from devices import wire
from devices.contract import Reason, Result, Status
from gateway.consent import store as consent_store
from gateway.context import Context, OutboxEntry
from gateway.errors import ORDER_REFUSALS, Conflict, Invalid, NotFound, reason_of
from gateway.events.collect import approval_closed
from gateway.evidence.record import instalments_consent, owner_consent
from gateway.funding import conversion, offers
from gateway.funding.offers import Terms
from gateway.orders import payments
from gateway.orders import store as order_store
from gateway.orders.batch import Batch, finish, load_state, order_audit
from gateway.orders.decide import decide_order, declined


def decide_approval(
    ctx: Context, owner_id: str, approval_id: str, decision: str, instalments: int | None = None
) -> tuple[dict[str, Any], Result]:
    """The owner approves or declines; returns the approval as stored and the order's result.
    `instalments`: approve by instalments on that count of the approval's offer (section 8)."""
    now = ctx.clock()

    def work(conn: Connection) -> tuple[dict[str, Any], Result, list[OutboxEntry]]:
        row = consent_store.get_approval(conn, approval_id)
        device = device_store.get_device(conn, row["device_id"]) if row else None
        if row is None or device is None or device.owner_id != owner_id:
            raise NotFound("no such approval")
        terms = offered_terms(row, decision, instalments)  # 422 before 409
        # locks the device; the batch's time is read again then (see `load_state`)
        batch = load_state(conn, now, {device.id}, {row["payee"]}, clock=ctx.clock)
        row = consent_store.get_approval(conn, approval_id)
        if row is None or row["status"] != "pending" or row["expires_at"] <= now:
            raise Conflict("the approval is no longer pending", reason="approval_not_pending")
        if decision == "approve" and device.owner_id in batch.frozen:  # stays pending
            raise Conflict("the owner's payments are frozen", reason="owner_frozen")
        order = wire.parse_order(json.loads(row["order_json"]), device.id)
        assert isinstance(order, wire.PayOrder | wire.HoldOrder)
        if terms is not None:
            result = approve_by_instalments(batch, order, terms, approval_id, owner_id)
        elif decision == "approve":
            result = decide_order(batch, order, owner_approved=True)
            owner_consent(batch, result, approval_id, owner_id)  # evidence: the owner's consent
        else:
            result = declined(batch, order, Reason.APPROVAL_DECLINED)
        _close(batch, approval_id, decision + "d", result)
        digest = _order_digest(conn, device.id, order.order_id)
        audit = {"approval_id": approval_id, **order_audit(order, result, digest)}
        if terms is not None:
            audit["instalments"] = terms.count
        batch.audit.append((f"owner:{owner_id}", f"approval.{decision}", device.id, audit))
        approval = consent_store.get_approval(conn, approval_id)
        assert approval is not None
        return approval, result, finish(ctx, batch)

    approval, result, entries = ctx.db.run(work)
    ctx.publish(entries)
    return approval, result


def offered_terms(row: dict[str, Any], decision: str, instalments: int | None) -> Terms | None:
    """The terms of the offer's option the owner chose; None without `instalments`. A count
    not offered, `instalments` with `decline`, or on an approval without an offer is 422."""
    if instalments is None:
        return None
    if decision != "approve":
        raise Invalid("`instalments` goes with `approve` only")
    if row.get("offer_json") is None:
        raise Invalid("this approval carries no instalment offer")
    offer = offers.offer_from_json(json.loads(row["offer_json"]))
    if offer.option(instalments) is None:
        counts = ", ".join(str(o.count) for o in offer.options)
        raise Invalid(f"`instalments` must be one of the offered counts ({counts})")
    return Terms(offer.source_id, instalments, offer.apr_bps, offer.interval_days)


def approve_by_instalments(
    batch: Batch,
    order: wire.PayOrder | wire.HoldOrder,
    terms: Terms,
    approval_id: str,
    owner_id: str,
) -> Result:
    """Steps 2 and 3 again, then the credit line pays on the offer's terms and a plan opens.
    409 `offer_withdrawn` when the policy was deleted or names another line since, and 409
    `credit_limit_exceeded` when the line cannot cover the total: the approval stays pending."""
    policy = conversion.current_policy(batch.conn, owner_id)
    if offers.withdrawn(policy, terms.source_id):
        raise Conflict("the instalment offer was withdrawn", reason="offer_withdrawn")
    try:
        result = payments.decide_payment(batch, order, owner_approved=True, terms=terms)
    except ORDER_REFUSALS as refusal:  # steps 2 and 3 decline it, as for any approval
        return declined(batch, order, reason_of(refusal))
    instalments_consent(batch, result, approval_id, owner_id, plan_of(result))
    return result


def plan_of(result: Result) -> str:
    """The plan that paid an approved result (its credit line's `funded_by` entry)."""
    [plan_id] = [str(f["plan_id"]) for f in result.funded_by if "plan_id" in f]
    return plan_id


def _order_digest(conn: Connection, device_id: str, order_id: str) -> str | None:
    """The digest of the device's order as it was received (the approval keeps a copy of the
    order, not its JSON as signed)."""
    known = order_store.known_orders(conn, [(device_id, order_id)]).get((device_id, order_id))
    return None if known is None else known.payload_sha256


def _close(batch: Batch, approval_id: str, status: str, result: Result) -> None:
    """Close the approval, replace its order's result and answer the device."""
    reason = None if result.reason is None else result.reason.value
    closed = consent_store.close_approval(
        batch.conn, approval_id, status, result.status.value, reason, batch.now
    )
    if not closed:  # expired at this very moment: roll everything back
        raise Conflict("the approval is no longer pending", reason="approval_not_pending")
    order_store.update_order_result(
        batch.conn, result.device_id, str(result.order_id), result, batch.now
    )
    approval_closed(batch, approval_id, result)  # owners' events, written at `finish`
    batch.answer(result)


def expire_approvals(ctx: Context) -> int:
    """Decline approvals nobody decided in time (`approval_expired`); returns how many."""
    now = ctx.clock()
    with ctx.db.read() as conn:  # most rounds end here, without taking the write lock
        if not consent_store.due_approvals(conn, now, limit=1):
            return 0

    def work(conn: Connection) -> list[OutboxEntry]:
        batch = Batch(conn, now)
        for row in consent_store.due_approvals(conn, now):
            result = batch.result(
                row["device_id"],
                row["order_id"],
                Status.DECLINED,
                reason=Reason.APPROVAL_EXPIRED,
                amount=row["amount_minor"],
                currency=row["currency"],
            )
            try:
                _close(batch, row["id"], "expired", result)
            except Conflict:
                continue  # decided by its owner meanwhile
            audit = {"approval_id": row["id"], "order_id": row["order_id"]}
            batch.audit.append(("gateway", "approval.expired", row["device_id"], audit))
        return finish(ctx, batch)

    entries = ctx.db.run(work)
    ctx.publish(entries)
    return len(entries)
