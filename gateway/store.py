"""SQL adapter for parties, API keys and the audit chain; functions never commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices.store import UtcDateTime
from gateway import audit
from gateway.parties import Party

metadata = sa.MetaData()
owners = sa.Table(
    "owners",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String),
    sa.Column("timezone", sa.String),
    sa.Column("created_at", UtcDateTime),
)
integrators = sa.Table(
    "integrators",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String),
    sa.Column("created_at", UtcDateTime),
)
merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String),
    sa.Column("category", sa.String),
    sa.Column("currency", sa.String),
    sa.Column("created_at", UtcDateTime),
)
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_hash", sa.String, primary_key=True),
    sa.Column("party_kind", sa.String),
    sa.Column("party_id", sa.String),
    sa.Column("created_at", UtcDateTime),
)
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("at", UtcDateTime),
    sa.Column("actor", sa.String),
    sa.Column("action", sa.String),
    sa.Column("device_id", sa.String),
    sa.Column("data", sa.Text),
    sa.Column("prev_hash", sa.String),
    sa.Column("hash", sa.String),
)
chain_head = sa.Table(
    "chain_head",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("seq", sa.BigInteger),
    sa.Column("hash", sa.String),
)
PARTY_TABLES = {"owner": owners, "integrator": integrators, "merchant": merchants}


def insert_party(conn: Connection, kind: str, values: dict[str, Any]) -> None:
    """Record an owner, integrator or merchant."""
    conn.execute(PARTY_TABLES[kind].insert().values(**values))


def get_party_row(conn: Connection, kind: str, party_id: str) -> dict[str, Any] | None:
    """The owner, integrator or merchant row with this id, if any."""
    table = PARTY_TABLES[kind]
    row = conn.execute(table.select().where(table.c.id == party_id)).mappings().first()
    return dict(row) if row else None


def insert_api_key(conn: Connection, key_hash: str, party: Party, now: datetime) -> None:
    """Remember an API key by its hash only."""
    conn.execute(
        api_keys.insert().values(
            key_hash=key_hash, party_kind=party.kind, party_id=party.id, created_at=now
        )
    )


def party_for_key_hash(conn: Connection, key_hash: str) -> Party | None:
    """The party an API key acts for, if the key is known."""
    query = sa.select(api_keys.c.party_kind, api_keys.c.party_id).where(
        api_keys.c.key_hash == key_hash
    )
    row = conn.execute(query).first()
    return Party(kind=row[0], id=row[1]) if row else None


def append_audit(
    conn: Connection, at: datetime, items: Iterable[tuple[str, str, str | None, Any]]
) -> list[audit.AuditEntry]:
    """Append (actor, action, device_id, data) items to the chain, in this transaction."""
    head = conn.execute(
        sa.select(chain_head.c.seq, chain_head.c.hash)
        .where(chain_head.c.name == "audit")
        .with_for_update()
    ).one()
    entries = audit.chain(head.seq, head.hash, at, items)
    if not entries:
        return entries
    conn.execute(audit_log.insert(), [e.__dict__ for e in entries])
    conn.execute(
        chain_head.update()
        .where(chain_head.c.name == "audit")
        .values(seq=entries[-1].seq, hash=entries[-1].hash)
    )
    return entries


def iter_audit(conn: Connection, device_id: str | None = None) -> Iterator[audit.AuditEntry]:
    """Audit entries in chain order, all of them or one device's."""
    query = audit_log.select().order_by(audit_log.c.seq)
    if device_id is not None:
        query = query.where(audit_log.c.device_id == device_id)
    for row in conn.execute(query).mappings():
        yield audit.AuditEntry(**row)


def audit_anchor(conn: Connection) -> tuple[int, str]:
    """The (seq, hash) the chain's head must match."""
    row = conn.execute(
        sa.select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.name == "audit")
    ).one()
    return int(row.seq), str(row.hash)


def merchants_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Merchant rows by id, for those of `ids` that are merchants."""
    ids = list(ids)
    if not ids:
        return {}
    rows = conn.execute(merchants.select().where(merchants.c.id.in_(ids))).mappings()
    return {row["id"]: dict(row) for row in rows}


def owner_timezones(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    """Each owner's IANA timezone."""
    query = sa.select(owners.c.id, owners.c.timezone).where(owners.c.id.in_(list(ids)))
    return {owner_id: tz for owner_id, tz in conn.execute(query)}
