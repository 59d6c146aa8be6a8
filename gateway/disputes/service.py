"""Disputes over HTTP and by the housekeeper: open, answer, resolve, resolve by silence.

Each use case is one transaction holding the dispute's change, its refund (a refund of section
5 without its steps 1 and 2: it counts in the payment's period and sends `refund_received` and
`payment.refunded`), its audit entries (device_id: the payer, with the payment's id, so that the
payment's evidence holds them) and its events to both sides (`batch.finish`).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from devices import store as device_store
from devices.contract import Event, event_payload
from gateway.audit import store as audit_store
from gateway.context import Context, OutboxEntry
from gateway.disputes import rules
from gateway.disputes import store as dispute_store
from gateway.disputes.views import dispute_public
from gateway.errors import Conflict, NotFound
from gateway.orders.batch import Batch, finish, load_state
from gateway.parties import Party
from wallet import errors as wallet_errors
from wallet import store as wallet_store
from wallet.ledger import Payment

log = logging.getLogger("kym.disputes")

Row = dict[str, Any]
# A resolution's refund that cannot move yet: the payee lacks the funds, or the payer's wallet
# is full (the ledger's largest balance). It stays `refund_pending` and is tried again.
_CANNOT_REFUND_NOW = (wallet_errors.InsufficientFunds, wallet_errors.BalanceOverLimit)


def open_dispute(ctx: Context, owner: Party, payment_id: str, body: dict[str, Any]) -> Row:
    """The paying device's owner disputes a completed pay or a captured hold (within 120 days)."""
    now = ctx.clock()

    def work(conn: Connection) -> tuple[Row, list[OutboxEntry]]:
        payment = wallet_store.get_payment(conn, payment_id)
        payer = device_store.get_device(conn, payment.payer_id) if payment else None
        if payment is None or payer is None or payer.owner_id != owner.id:
            raise NotFound("no such payment")
        batch = load_state(conn, now, {payer.id}, {payment.payee_id})  # locks the payer
        # Read again, locked: a refund that committed since the first read bounds the amount
        # (and its `refunded_at_open`); one made from now on waits, and then reduces it.
        payment = wallet_store.get_payment(conn, payment_id, lock=True)
        assert payment is not None
        requested = body.get("amount")
        if requested is not None:  # a bad amount is 422 before any 409 (contract section 2)
            rules.disputed_amount(requested, payment.refundable_minor)
        rules.check_disputable(payment.type.value, payment.status.value)
        if dispute_store.of_payment(conn, payment_id) is not None:
            raise Conflict("this payment was disputed already", reason="dispute_exists")
        # The default amount after that 409: a dispute resolved by a full refund leaves 0 to
        # dispute, and a client retrying the same body must still learn it was taken.
        amount = rules.disputed_amount(requested, payment.refundable_minor)
        rules.check_window(window_start(conn, payment), now)
        row = new_dispute(batch, payment, owner.id, body, amount, ctx.settings)
        dispute_store.insert(conn, row)
        _note(batch, row, owner.actor, "dispute.opened", {"reason": row["reason"]})
        return row, finish(ctx, batch)

    row, entries = ctx.db.run(work)
    ctx.publish(entries)
    return dispute_public(row)


def new_dispute(
    batch: Batch, payment: Payment, owner_id: str, body: dict[str, Any], amount: int, settings: Any
) -> Row:
    """The row of a dispute opened now."""
    payee_device = batch.devices.get(payment.payee_id)
    days = getattr(settings, "dispute_response_days", rules.DEFAULT_RESPONSE_DAYS)
    return {
        "id": f"dsp_{secrets.token_hex(8)}",
        "payment_id": payment.payment_id,
        "owner_id": owner_id,
        "payer_id": payment.payer_id,
        "payee_id": payment.payee_id,
        "payee_party": payee_device.owner_id if payee_device else payment.payee_id,
        "reason": body["reason"],
        "message": body["message"],
        "amount_minor": amount,
        "currency": payment.currency,
        "refunded_at_open": payment.refunded_amount_minor,
        "status": rules.OPEN,
        "respond_by": rules.respond_by(batch.now, days),
        "refund_pending": False,
        "refund_due_minor": 0,
        "refunded_minor": 0,
        "created_at": batch.now,
        "updated_at": batch.now,
    }


def window_start(conn: Connection, payment: Payment) -> datetime:
    """When the 120 days start: the pay, or the hold's capture (its audit entry's time)."""
    if payment.type.value == "hold":
        for entry in audit_store.iter_entries(conn, payment_id=payment.payment_id):
            if entry.action == "order.captured":
                return entry.at
    return payment.created_at


def respond(ctx: Context, party: Party, dispute_id: str, decision: str, message: str) -> Row:
    """The payee accepts (a refund at once) or contests (the admin decides)."""
    now = ctx.clock()

    def work(conn: Connection) -> tuple[Row, list[OutboxEntry]]:
        row = dispute_store.get(conn, dispute_id, lock=True)
        if row is None or row["payee_party"] != party.id:
            raise NotFound("no such dispute")
        rules.check_may_answer(row["status"], row["respond_by"], now)
        batch = load_state(conn, now, set(), {row["payer_id"], row["payee_id"]})
        changes: Row = {"response_decision": decision, "response_message": message}
        if decision == "accept":
            refunded = refund_what_is_left(batch, row)  # 409 insufficient_funds: stays open
            changes.update(status=rules.FOR_OWNER, refunded_minor=refunded, resolved_by=party.actor)
        else:
            changes["status"] = rules.UNDER_REVIEW
        row = _change(batch, row, changes)
        _note(batch, row, party.actor, "dispute.answered", {"decision": decision})
        if decision == "accept":
            _note(batch, row, party.actor, "dispute.resolved", {"outcome": "owner"})
        return row, finish(ctx, batch)

    row, entries = ctx.db.run(work)
    ctx.publish(entries)
    return dispute_public(row)


def resolve(
    ctx: Context,
    actor: str,
    dispute_id: str,
    outcome: str,
    message: str | None,
    *,
    silence: bool = False,
) -> Row:
    """The admin decides an open or contested dispute; or `silence` (`actor` "gateway")
    resolves an open one whose `respond_by` passed, checked again once it is locked."""
    now = ctx.clock()

    def work(conn: Connection) -> tuple[Row, list[OutboxEntry]]:
        row = dispute_store.get(conn, dispute_id, lock=True)
        if row is None:
            raise NotFound("no such dispute")
        if silence:
            rules.check_silence(row["status"], row["respond_by"], now)
        else:
            rules.check_may_resolve(row["status"])
        batch = load_state(conn, now, set(), {row["payer_id"], row["payee_id"]})
        changes: Row = {"resolution_message": message, "resolved_by": actor}
        if outcome == "owner":
            changes["status"] = rules.FOR_OWNER
            changes.update(refund_or_owe(batch, row))
        else:
            changes["status"] = rules.FOR_PAYEE
        row = _change(batch, row, changes)
        _note(batch, row, actor, "dispute.resolved", {"outcome": outcome})
        return row, finish(ctx, batch)

    row, entries = ctx.db.run(work)
    ctx.publish(entries)
    return dispute_public(row)


def refund_or_owe(batch: Batch, row: Row) -> Row:
    """A resolution's refund now, or `refund_pending` when the payee cannot fund it (or the
    payer's wallet cannot take it: it would hold more than the ledger's largest balance)."""
    try:
        return {"refunded_minor": refund_what_is_left(batch, row)}
    except _CANNOT_REFUND_NOW:
        payment = wallet_store.get_payment(batch.conn, row["payment_id"])
        assert payment is not None
        due = _left(row, payment)
        return {"refund_pending": True, "refund_due_minor": due}


def refund_what_is_left(batch: Batch, row: Row) -> int:
    """Refund the disputed amount less the refunds since the dispute opened; how much. The
    payment is locked first: a merchant's refund committing meanwhile is then counted (read
    unlocked, the dispute's refund was too large and refused: 409 `refund_exceeds_payment`)."""
    payment = wallet_store.get_payment(batch.conn, row["payment_id"], lock=True)
    assert payment is not None
    amount = _left(row, payment)
    if amount:
        refund(batch, row, amount)
    return amount


def refund(batch: Batch, row: Row, amount: int) -> None:
    """Move `amount` back from the payee to the payer, as a refund; wallet refusals roll back
    only this and propagate."""
    savepoint = batch.conn.begin_nested()
    try:
        wallet_store.refund(
            batch.conn, payment_id=row["payment_id"], amount_minor=amount, now=batch.now
        )
    except wallet_errors.WalletRefusal:
        savepoint.rollback()
        raise
    savepoint.commit()
    batch.give_back(row["payment_id"], -amount, 0)  # counts in the payment's period
    payer = row["payer_id"]
    batch.send(
        payer,
        event_payload(
            Event.REFUND_RECEIVED, payer, batch.ts, payment_id=row["payment_id"], amount=amount,
            currency=row["currency"],
        ),
    )  # fmt: skip
    data = {"dispute_id": row["id"], "amount": amount, "currency": row["currency"]}
    batch.audit.append(
        ("gateway", "dispute.refunded", payer, {"payment_id": row["payment_id"], **data})
    )


def settle_due(ctx: Context) -> int:
    """For the housekeeper: resolve for the owner the open disputes whose `respond_by` passed,
    and pay pending refunds that the payee's wallet can now fund; how many changed."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        due = dispute_store.due(conn, now)
    changed = 0
    for dispute_id in due:
        try:
            changed += _settle(ctx, dispute_id, now)
        except Conflict:
            continue  # answered or resolved meanwhile
        except wallet_errors.WalletRefusal:  # this one waits; the others are settled
            log.exception("settling dispute %s was refused by the wallet", dispute_id)
    return changed


def _settle(ctx: Context, dispute_id: str, now: datetime) -> int:
    with ctx.db.read() as conn:
        row = dispute_store.get(conn, dispute_id)
    if row is None:
        return 0
    if row["status"] == rules.OPEN:
        resolve(ctx, "gateway", dispute_id, "owner", "no answer by respond_by", silence=True)
        return 1

    def work(conn: Connection) -> tuple[int, list[OutboxEntry]]:
        row = dispute_store.get(conn, dispute_id, lock=True)
        if row is None or not row["refund_pending"]:
            return 0, []
        batch = load_state(conn, now, set(), {row["payer_id"], row["payee_id"]})
        # Locked, and counted as at the resolution (never more than `refund_due_minor`): the
        # payee's own refunds of this payment since it opened pay toward what is still owed.
        payment = wallet_store.get_payment(conn, row["payment_id"], lock=True)
        assert payment is not None
        amount = _left(row, payment)
        try:
            if amount:
                refund(batch, row, amount)
        except _CANNOT_REFUND_NOW:
            return 0, []
        done = {"refund_pending": False, "refund_due_minor": 0, "refunded_minor": amount}
        _change(batch, row, done)
        return 1, finish(ctx, batch)

    changed, entries = ctx.db.run(work)
    ctx.publish(entries)
    return changed


def list_page(ctx: Context, party: Party, limit: int, cursor: str | None) -> Any:
    """The party's disputes, newest first (owner: as payer or payee; merchant; admin: all)."""
    from gateway import paging

    start = paging.after("disputes", cursor, paging.SEQUENCE)
    with ctx.db.read() as conn:
        rows = dispute_store.page(conn, party.kind, party.id, paging.check_limit(limit) + 1, start)
    page, next_cursor = paging.page_of(rows, limit, "disputes", lambda row: (row["seq"],))
    return paging.Page([dispute_public(row) for row in page], next_cursor)


def _left(row: Row, payment: Payment) -> int:
    return rules.left_to_refund(
        row["amount_minor"], row["refunded_at_open"], payment.refunded_amount_minor,
        payment.refundable_minor,
    )  # fmt: skip


def _change(batch: Batch, row: Row, changes: Row) -> Row:
    dispute_store.update(batch.conn, row["id"], batch.now, **changes)
    return {**row, **changes, "updated_at": batch.now}


def _note(batch: Batch, row: Row, actor: str, action: str, extra: Row) -> None:
    """The step in the audit trail, and its event to both sides."""
    data = {"dispute_id": row["id"], "payment_id": row["payment_id"], "status": row["status"]}
    batch.audit.append((actor, action, row["payer_id"], {**data, **extra}))
    public = dispute_public(row)
    for party in (row["payer_id"], row["payee_id"]):
        batch.events.append((party, action, public))
