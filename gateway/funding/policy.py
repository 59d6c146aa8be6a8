"""An owner's instalment policy (contract section 8): stored, shown and removed.

The decision reads it at step 4 (`gateway.funding.conversion`) to make an instalment offer or,
up to `auto_accept_up_to`, to convert a pay the owner agreed to in advance.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.db import upsert
from gateway.errors import Invalid, NotFound
from gateway.funding import store as funding_store
from gateway.funding.plan import CREDIT_LINE
from gateway.parties import Party

policies = sa.Table(
    "instalment_policies",
    funding_store.metadata,
    sa.Column("owner_id", sa.String(64), primary_key=True),
    sa.Column("source_id", sa.String(64), nullable=False),
    sa.Column("min_amount_minor", sa.BigInteger, nullable=False),
    sa.Column("max_amount_minor", sa.BigInteger, nullable=False),
    sa.Column("counts_json", sa.Text, nullable=False),
    sa.Column("interval_days", sa.Integer, nullable=False),
    sa.Column("keep_at_least_minor", sa.BigInteger, nullable=False),
    sa.Column("categories_json", sa.Text, nullable=True),
    sa.Column("auto_accept_up_to_minor", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def put_policy(ctx: Context, owner: Party, body: dict[str, Any]) -> dict[str, Any]:
    """Replace the owner's policy (validated at the boundary); its source must be their line."""
    now = ctx.clock()
    row = {
        "owner_id": owner.id,
        "source_id": body["source"],
        "min_amount_minor": body["min_amount"],
        "max_amount_minor": body["max_amount"],
        "counts_json": json.dumps(body["counts"]),
        "interval_days": body["interval_days"],
        "keep_at_least_minor": body["keep_at_least"],
        "categories_json": None
        if body.get("categories") is None
        else json.dumps(body["categories"]),
        "auto_accept_up_to_minor": body["auto_accept_up_to"],
        "updated_at": now,
    }

    def work(conn: Connection) -> dict[str, Any]:
        source = funding_store.get_source(conn, body["source"])
        if source is None or source.owner_id != owner.id or source.kind != CREDIT_LINE:
            raise Invalid("`source` must be one of your credit lines", reason="invalid_request")
        upsert(conn, policies, row)  # two at once: one statement each, never a 500
        data = {"source": body["source"], "counts": body["counts"]}
        audit_store.append(conn, now, [(owner.actor, "funding.policy_set", None, data)])
        return _public(row)

    return ctx.db.run(work)


def get_policy(ctx: Context, owner: Party) -> dict[str, Any]:
    """The owner's policy; 404 without one."""
    with ctx.db.read() as conn:
        row = conn.execute(sa.select(policies).where(policies.c.owner_id == owner.id)).first()
    if row is None:
        raise NotFound("no instalment policy")
    return _public(row._asdict())


def delete_policy(ctx: Context, owner: Party) -> None:
    """Remove the owner's policy, if any (offers already made are then withdrawn)."""
    now = ctx.clock()

    def work(conn: Connection) -> None:
        conn.execute(sa.delete(policies).where(policies.c.owner_id == owner.id))
        audit_store.append(conn, now, [(owner.actor, "funding.policy_deleted", None, {})])

    ctx.db.run(work)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    categories = row["categories_json"]
    return {
        "source": row["source_id"],
        "min_amount": row["min_amount_minor"],
        "max_amount": row["max_amount_minor"],
        "counts": json.loads(row["counts_json"]),
        "interval_days": row["interval_days"],
        "keep_at_least": row["keep_at_least_minor"],
        "categories": None if categories is None else json.loads(categories),
        "auto_accept_up_to": row["auto_accept_up_to_minor"],
    }
