"""SQL adapter for disputes; functions never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices.store import UtcDateTime
from gateway import paging, store
from gateway.disputes.rules import FOR_OWNER, OPEN
from wallet.schema import accounts, payments

metadata = sa.MetaData()
disputes = sa.Table(
    "disputes",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String),
    sa.Column("payment_id", sa.String),
    sa.Column("owner_id", sa.String),  # the paying device's owner
    sa.Column("payer_id", sa.String),  # the paying device
    sa.Column("payee_id", sa.String),  # a merchant or a device
    sa.Column("payee_party", sa.String),  # who answers: the merchant, or the payee device's owner
    sa.Column("reason", sa.String),
    sa.Column("message", sa.Text),
    sa.Column("amount_minor", sa.BigInteger),
    sa.Column("currency", sa.String),
    sa.Column("refunded_at_open", sa.BigInteger),
    sa.Column("status", sa.String),
    sa.Column("respond_by", UtcDateTime),
    sa.Column("response_decision", sa.String),
    sa.Column("response_message", sa.Text),
    sa.Column("resolution_message", sa.Text),
    sa.Column("resolved_by", sa.String),
    sa.Column("refund_pending", sa.Boolean),
    sa.Column("refund_due_minor", sa.BigInteger),  # what a pending refund still has to pay
    sa.Column("refunded_minor", sa.BigInteger),  # what the resolution refunded
    sa.Column("created_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime),
)


def insert(conn: Connection, row: dict[str, Any]) -> None:
    """Record a new dispute (a second one for the payment breaks the unique index)."""
    conn.execute(disputes.insert().values(**row))


def get(conn: Connection, dispute_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The dispute, locked until the transaction ends when `lock`."""
    query = disputes.select().where(disputes.c.id == dispute_id)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    return dict(row) if row else None


def of_payment(conn: Connection, payment_id: str) -> dict[str, Any] | None:
    """The payment's dispute, if it was ever disputed."""
    query = disputes.select().where(disputes.c.payment_id == payment_id)
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def update(conn: Connection, dispute_id: str, now: datetime, **values: Any) -> None:
    """Change a dispute."""
    conn.execute(
        disputes.update().where(disputes.c.id == dispute_id).values(updated_at=now, **values)
    )


def page(
    conn: Connection, kind: str, party_id: str, limit: int, after: paging.Key | None
) -> list[dict[str, Any]]:
    """Up to `limit` of the party's disputes, newest first, after a cursor's key: an owner's
    as payer or payee, a merchant's as payee, all for the admin."""
    query = disputes.select().order_by(disputes.c.seq.desc()).limit(limit)
    if kind == "owner":
        query = query.where(
            sa.or_(disputes.c.owner_id == party_id, disputes.c.payee_party == party_id)
        )
    elif kind == "merchant":
        query = query.where(disputes.c.payee_party == party_id)
    if after is not None:
        query = query.where(store.before((disputes.c.seq,), after))
    return [dict(row) for row in conn.execute(query).mappings()]


def due(conn: Connection, now: datetime, limit: int = 100) -> list[str]:
    """Open disputes past their `respond_by`, then resolved ones whose pending refund the
    payee's wallet can now fund. Pending refunds it cannot fund are left out: however many
    wait, they never keep the others from being settled."""
    silent = (
        sa.select(disputes.c.id)
        .where(disputes.c.status == OPEN, disputes.c.respond_by <= now)
        .order_by(disputes.c.respond_by, disputes.c.seq)
        .limit(limit)
    )
    p, a, d = payments.c, accounts.c, disputes.c
    left = p.captured_amount_minor - p.refunded_amount_minor  # a refund pays at most this
    # what the dispute still owes (`rules.left_to_refund`, never more than `refund_due_minor`):
    # the payee's own refunds since it opened pay toward it
    owed = d.amount_minor - (p.refunded_amount_minor - d.refunded_at_open)
    need = sa.case((owed < left, owed), else_=left)
    fundable = (
        sa.select(disputes.c.id)
        .join(payments, p.payment_id == disputes.c.payment_id)
        .join(accounts, a.id == disputes.c.payee_id)
        .where(
            disputes.c.status == FOR_OWNER,
            disputes.c.refund_pending.is_(True),
            a.credits_posted - a.debits_posted - a.debits_pending >= need,
        )
        .order_by(disputes.c.seq)
        .limit(limit)
    )
    return [str(i) for query in (silent, fundable) for i in conn.execute(query).scalars()]
