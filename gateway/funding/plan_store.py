"""Instalment plans in SQL (`instalment_plans` and `instalments`, migration 0015): written when
a plan opens, read for the owner's list, locked and changed by collections. Never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.funding.store import metadata
from wallet.schema import aware, utc

_TIME = sa.DateTime(timezone=True)
plans = sa.Table(
    "instalment_plans",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("owner_id", sa.String(64), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("payment_id", sa.String(64), nullable=False, unique=True),
    sa.Column("source_id", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("fee_minor", sa.BigInteger, nullable=False),
    sa.Column("total_minor", sa.BigInteger, nullable=False),
    sa.Column("apr_bps", sa.Integer, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("interval_days", sa.Integer, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("opened_at", _TIME, nullable=False),
    sa.Column("repaid_at", _TIME, nullable=True),
)
instalments = sa.Table(
    "instalments",
    metadata,
    sa.Column("plan_id", sa.String(64), sa.ForeignKey("instalment_plans.id"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("due_at", _TIME, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(9), nullable=False),
    sa.Column("next_try_at", _TIME, nullable=False),
    sa.Column("paid_at", _TIME, nullable=True),
    sa.Column("collection_id", sa.String(64), nullable=True),
)
_p, _i = plans.c, instalments.c
UNPAID = ("scheduled", "overdue")


def insert_plan(conn: Connection, plan: dict[str, Any], schedule: Sequence[dict[str, Any]]) -> None:
    """Store a new plan and its instalments."""
    conn.execute(sa.insert(plans).values({**plan, "opened_at": utc(plan["opened_at"])}))
    rows = [
        {**row, "plan_id": plan["id"], "due_at": utc(row["due_at"]), "status": "scheduled"}
        for row in schedule
    ]
    conn.execute(sa.insert(instalments), [{**r, "next_try_at": r["due_at"]} for r in rows])


def get_plan(conn: Connection, plan_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """One plan's row, or None; `lock` holds it until the transaction ends (PostgreSQL)."""
    query = sa.select(plans).where(_p.id == plan_id)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    return None if row is None else _plan_row(row)


def owner_plans(
    conn: Connection, owner_id: str, limit: int, after_seq: int | None
) -> list[dict[str, Any]]:
    """Up to `limit` of the owner's plans, newest first, after `after_seq` when given."""
    query = sa.select(plans).where(_p.owner_id == owner_id)
    if after_seq is not None:
        query = query.where(_p.seq < after_seq)
    rows = conn.execute(query.order_by(_p.seq.desc()).limit(limit)).mappings()
    return [_plan_row(row) for row in rows]


def plan_instalments(conn: Connection, plan_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Each plan's instalments in order, in one query."""
    ids = sorted(set(plan_ids))
    found: dict[str, list[dict[str, Any]]] = {plan_id: [] for plan_id in ids}
    if ids:
        query = sa.select(instalments).where(_i.plan_id.in_(ids)).order_by(_i.plan_id, _i.n)
        for row in conn.execute(query).mappings():
            found[row["plan_id"]].append(_instalment_row(row))
    return found


def due(conn: Connection, now: datetime, limit: int = 100) -> list[tuple[str, int]]:
    """(plan id, n) of unpaid instalments whose next try has come, oldest first."""
    query = (
        sa.select(_i.plan_id, _i.n)
        .where(_i.status.in_(UNPAID), _i.next_try_at <= utc(now))
        .order_by(_i.next_try_at, _i.plan_id, _i.n)
        .limit(limit)
    )
    return [(plan_id, n) for plan_id, n in conn.execute(query)]


def claim(
    conn: Connection, plan_id: str, ns: Sequence[int], now: datetime | None
) -> list[dict[str, Any]]:
    """Lock these instalments while still unpaid (and due, unless `now` is None) and return them:
    a collector that runs at the same time finds them paid once this one commits."""
    query = sa.select(instalments).where(_i.plan_id == plan_id, _i.n.in_(ns), _i.status.in_(UNPAID))
    rows = conn.execute(query.order_by(_i.n).with_for_update()).mappings()
    return [r for r in map(_instalment_row, rows) if now is None or r["next_try_at"] <= now]


def mark_paid(
    conn: Connection, plan_id: str, ns: Sequence[int], collection_id: str, now: datetime
) -> int:
    """Mark unpaid instalments paid by one collection; how many changed."""
    done = sa.update(instalments).where(_i.plan_id == plan_id, _i.n.in_(ns), _i.status.in_(UNPAID))
    values = {"status": "paid", "paid_at": utc(now), "collection_id": collection_id}
    return int(conn.execute(done.values(**values)).rowcount)


def mark_overdue(conn: Connection, plan_id: str, n: int, next_try_at: datetime) -> None:
    """An instalment that could not be collected: overdue, tried again at `next_try_at`."""
    change = sa.update(instalments).where(_i.plan_id == plan_id, _i.n == n, _i.status.in_(UNPAID))
    conn.execute(change.values(status="overdue", next_try_at=utc(next_try_at)))


def set_status(conn: Connection, plan_id: str, status: str, now: datetime) -> None:
    """A plan's status (and when it was repaid)."""
    repaid_at = utc(now) if status == "repaid" else None
    change = sa.update(plans).where(_p.id == plan_id)
    conn.execute(change.values(status=status, repaid_at=repaid_at))


def all_plans(conn: Connection) -> list[dict[str, Any]]:
    """Every plan (for `kym ledger check`)."""
    return [_plan_row(row) for row in conn.execute(sa.select(plans).order_by(_p.seq)).mappings()]


def _plan_row(row: Any) -> dict[str, Any]:
    plan = dict(row)
    plan["opened_at"] = aware(plan["opened_at"])
    plan["repaid_at"] = None if plan["repaid_at"] is None else aware(plan["repaid_at"])
    return plan


def _instalment_row(row: Any) -> dict[str, Any]:
    instalment = dict(row)
    for name in ("due_at", "next_try_at", "paid_at"):
        if instalment[name] is not None:
            instalment[name] = aware(instalment[name])
    return instalment
