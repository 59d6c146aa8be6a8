"""Funding sources in SQL: their terms (`funding_sources`, migration 0012) joined with their
ledger balances (`wallet_accounts`, one account per source, named by the source's id)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.funding.plan import BALANCE, Source
from wallet.schema import accounts

metadata = sa.MetaData()
sources = sa.Table(
    "funding_sources",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("owner_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("floor_minor", sa.BigInteger, nullable=False),
    sa.Column("credit_limit_minor", sa.BigInteger, nullable=True),
    sa.Column("apr_bps", sa.Integer, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

_BALANCE = (accounts.c.credits_posted - accounts.c.debits_posted).label("balance_minor")
_SELECT = (
    sa.select(sources, sa.func.coalesce(_BALANCE, 0).label("balance_minor"))
    .select_from(sources.outerjoin(accounts, accounts.c.id == sources.c.id))
    .order_by(sources.c.priority, sources.c.seq)
)


def insert_source(conn: Connection, row: dict[str, Any], now: datetime) -> None:
    """Store a new source's terms (its ledger account is opened by the caller)."""
    conn.execute(sa.insert(sources).values(**row, created_at=now))


def owner_sources(conn: Connection, owner_id: str) -> list[Source]:
    """The owner's sources in draw order."""
    return [_source(row) for row in conn.execute(_SELECT.where(sources.c.owner_id == owner_id))]


def get_source(conn: Connection, source_id: str) -> Source | None:
    """One source, or None."""
    row = conn.execute(_SELECT.where(sources.c.id == source_id)).first()
    return None if row is None else _source(row)


def balance_sources(conn: Connection, owner_ids: Iterable[str]) -> dict[str, list[Source]]:
    """Each owner's balance sources in draw order (any currency), in one query."""
    ids = sorted(set(owner_ids))
    found: dict[str, list[Source]] = {owner_id: [] for owner_id in ids}
    if not ids:
        return found
    query = _SELECT.where(sources.c.owner_id.in_(ids), sources.c.kind == BALANCE)
    for row in conn.execute(query):
        found[row.owner_id].append(_source(row))
    return found


def all_sources(conn: Connection) -> list[Source]:
    """Every source (for `kym ledger check`)."""
    return [_source(row) for row in conn.execute(_SELECT)]


def _source(row: Any) -> Source:
    return Source(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        kind=row.kind,
        currency=row.currency,
        priority=row.priority,
        seq=row.seq,
        floor_minor=row.floor_minor,
        credit_limit_minor=row.credit_limit_minor,
        apr_bps=row.apr_bps,
        balance_minor=int(row.balance_minor),
    )
