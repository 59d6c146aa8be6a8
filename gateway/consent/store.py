"""SQL adapter for consent: the owner's rules, standing mandates and approvals.

Functions take a Connection and never commit: the caller owns the transaction (an order's
decision, or an owner's change over HTTP).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices.store import UtcDateTime, devices
from gateway.consent.mandates import Mandate
from gateway.consent.rules import Limit, Rules, rules_from_json
from gateway.db import upsert
from gateway.store import before

metadata = sa.MetaData()
device_rules = sa.Table(
    "device_rules",
    metadata,
    sa.Column("device_id", sa.String, primary_key=True),
    sa.Column("rules_json", sa.Text),
    sa.Column("updated_at", UtcDateTime),
)
mandates = sa.Table(
    "mandates",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("device_id", sa.String),
    sa.Column("payee", sa.String),
    sa.Column("category", sa.String),
    sa.Column("max_amount_minor", sa.BigInteger),
    sa.Column("limits_json", sa.Text),
    sa.Column("valid_from", UtcDateTime),
    sa.Column("valid_until", UtcDateTime),
    sa.Column("status", sa.String),
    sa.Column("created_at", UtcDateTime),
    sa.Column("revoked_at", UtcDateTime),
)
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("device_id", sa.String),
    sa.Column("order_id", sa.String),
    sa.Column("order_json", sa.Text),
    sa.Column("payee", sa.String),
    sa.Column("amount_minor", sa.BigInteger),
    sa.Column("currency", sa.String),
    sa.Column("status", sa.String),
    sa.Column("created_at", UtcDateTime),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("decided_at", UtcDateTime),
    sa.Column("result_status", sa.String),
    sa.Column("result_reason", sa.String),
    sa.Column("why", sa.String),  # approval_above | no_rules (null before revision 0007)
    sa.Column("offer_json", sa.Text),  # the instalment offer (why = instalment_offer), 0015
)

# --- rules and mandates ----------------------------------------------------------------------


def rules_for(conn: Connection, device_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored rules JSON of each device that has rules."""
    query = sa.select(device_rules.c.device_id, device_rules.c.rules_json).where(
        device_rules.c.device_id.in_(list(device_ids))
    )
    return {d: json.loads(r) for d, r in conn.execute(query)}


def put_rules(
    conn: Connection, device_id: str, rules_json: dict[str, Any] | None, now: datetime
) -> None:
    """Replace the device's rules; None removes them (the device has no rules)."""
    if rules_json is None:
        conn.execute(device_rules.delete().where(device_rules.c.device_id == device_id))
        return
    values = {"device_id": device_id, "rules_json": json.dumps(rules_json), "updated_at": now}
    upsert(conn, device_rules, values)


def insert_mandate(conn: Connection, values: dict[str, Any]) -> None:
    """Record a standing consent."""
    conn.execute(mandates.insert().values(**values))


def mandates_for(conn: Connection, device_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Active mandates of these devices."""
    query = (
        mandates.select()
        .where(mandates.c.device_id.in_(list(device_ids)), mandates.c.status == "active")
        .order_by(mandates.c.created_at)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def list_mandates(
    conn: Connection,
    device_id: str,
    status: str | None,
    now: datetime,
    limit: int,
    after: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` of the device's mandates, newest first, after a page's last key
    (created_at, id); an active mandate past its `valid_until` is `expired`."""
    query = mandates.select().where(mandates.c.device_id == device_id)
    lapsed = sa.and_(mandates.c.valid_until.is_not(None), mandates.c.valid_until <= now)
    if status == "revoked":
        query = query.where(mandates.c.status == "revoked")
    elif status == "expired":
        query = query.where(mandates.c.status == "active", lapsed)
    elif status == "active":
        query = query.where(mandates.c.status == "active", sa.not_(lapsed))
    if after is not None:
        query = query.where(before((mandates.c.created_at, mandates.c.id), after))
    query = query.order_by(mandates.c.created_at.desc(), mandates.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def get_mandate(conn: Connection, mandate_id: str) -> dict[str, Any] | None:
    """The mandate with this id, if any."""
    row = conn.execute(mandates.select().where(mandates.c.id == mandate_id)).mappings().first()
    return dict(row) if row else None


def revoke_mandate(conn: Connection, mandate_id: str, now: datetime) -> None:
    """Revoke a mandate at once."""
    conn.execute(
        mandates.update()
        .where(mandates.c.id == mandate_id)
        .values(status="revoked", revoked_at=now)
    )


# --- approvals -------------------------------------------------------------------------------


def insert_approval(conn: Connection, values: dict[str, Any]) -> None:
    """Store an order that waits for its owner."""
    conn.execute(approvals.insert().values(**values, status="pending"))


def get_approval(conn: Connection, approval_id: str) -> dict[str, Any] | None:
    """The approval with this id, if any."""
    row = conn.execute(approvals.select().where(approvals.c.id == approval_id)).mappings().first()
    return dict(row) if row else None


def list_approvals(
    conn: Connection,
    owner_id: str,
    status: str | None,
    limit: int,
    after: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` approvals of the owner's devices, newest first, after a page's last key
    (created_at, id)."""
    owned = sa.select(devices.c.id).where(devices.c.owner_id == owner_id)
    query = approvals.select().where(approvals.c.device_id.in_(owned))
    if status:
        query = query.where(approvals.c.status == status)
    if after is not None:
        query = query.where(before((approvals.c.created_at, approvals.c.id), after))
    query = query.order_by(approvals.c.created_at.desc(), approvals.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def due_approvals(conn: Connection, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Pending approvals whose time is up."""
    query = (
        approvals.select()
        .where(approvals.c.status == "pending", approvals.c.expires_at <= now)
        .order_by(approvals.c.expires_at)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def close_approval(
    conn: Connection,
    approval_id: str,
    status: str,
    result_status: str,
    reason: str | None,
    now: datetime,
) -> bool:
    """Move a pending approval to its final state; False when it was no longer pending."""
    result = conn.execute(
        approvals.update()
        .where(
            approvals.c.id == approval_id,
            approvals.c.status == "pending",
        )
        .values(status=status, decided_at=now, result_status=result_status, result_reason=reason)
    )
    return result.rowcount == 1


# --- rows to domain --------------------------------------------------------------------------


def load_rules(conn: Connection, device_ids: Iterable[str]) -> dict[str, Rules | None]:
    """Each device's rules (None: the device has no rules)."""
    device_ids = list(device_ids)
    stored = rules_for(conn, device_ids)
    return {d: rules_from_json(stored[d]) if d in stored else None for d in device_ids}


def load_mandates(conn: Connection, device_ids: Iterable[str]) -> dict[str, list[Mandate]]:
    """Each device's active mandates, oldest first."""
    found: dict[str, list[Mandate]] = {}
    for row in mandates_for(conn, device_ids):
        found.setdefault(row["device_id"], []).append(mandate_from_row(row))
    return found


def mandate_from_row(row: Mapping[str, Any]) -> Mandate:
    """A stored mandate as the consent module sees it."""
    limits = tuple(Limit(x["period"], x["amount"]) for x in json.loads(row["limits_json"]))
    return Mandate(
        id=row["id"],
        payee=row["payee"],
        category=row["category"],
        max_amount_minor=row["max_amount_minor"],
        limits=limits,
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        active=row["status"] == "active",
    )
