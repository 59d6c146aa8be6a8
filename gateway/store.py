"""SQL adapter for parties and API keys; functions never commit (the audit log's are in
`gateway.audit.store`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices.store import UtcDateTime, devices
from gateway.parties import KEY_PREFIX_CHARS, Party, hash_api_key, new_key_id

metadata = sa.MetaData()
owners = sa.Table(
    "owners",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String),
    sa.Column("timezone", sa.String),
    sa.Column("created_at", UtcDateTime),
    sa.Column("frozen", sa.Boolean),  # contract section 7: no pay or hold while set
)
integrators = sa.Table(
    "integrators",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String),
    sa.Column("created_at", UtcDateTime),
    *[sa.Column(name, sa.String) for name in ("legal_name", "support_email", "support_url")],
)
merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String),
    sa.Column("category", sa.String),
    sa.Column("currency", sa.String),
    sa.Column("created_at", UtcDateTime),
    *[sa.Column(name, sa.String) for name in ("legal_name", "support_email", "support_url")],
)
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_hash", sa.String, primary_key=True),
    sa.Column("id", sa.String),
    sa.Column("prefix", sa.String),
    sa.Column("party_kind", sa.String),
    sa.Column("party_id", sa.String),
    sa.Column("created_at", UtcDateTime),
    sa.Column("last_used_at", UtcDateTime),
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


def insert_api_key(conn: Connection, api_key: str, party: Party, now: datetime) -> str:
    """Remember an API key by its hash and its first 12 characters; returns the key's id."""
    key_id = new_key_id()
    conn.execute(
        api_keys.insert().values(
            key_hash=hash_api_key(api_key),
            id=key_id,
            prefix=api_key[:KEY_PREFIX_CHARS],
            party_kind=party.kind,
            party_id=party.id,
            created_at=now,
        )
    )
    return key_id


def party_for_key_hash(conn: Connection, key_hash: str) -> tuple[Party, str] | None:
    """The party an API key acts for and the key's id, if the key is known."""
    query = sa.select(api_keys.c.party_kind, api_keys.c.party_id, api_keys.c.id).where(
        api_keys.c.key_hash == key_hash
    )
    row = conn.execute(query).first()
    return (Party(kind=row[0], id=row[1]), row[2]) if row else None


def merchants_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Merchant rows by id, for those of `ids` that are merchants."""
    ids = list(ids)
    if not ids:
        return {}
    rows = conn.execute(_MERCHANTS_IN, {"ids": ids}).mappings()
    return {row["id"]: dict(row) for row in rows}


# Built once (every order batch runs it; building costs more than running it on SQLite).
_MERCHANTS_IN = merchants.select().where(merchants.c.id.in_(sa.bindparam("ids", expanding=True)))


def payees_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """The `name` and `category` of these payees that exist: a merchant's own, or for a device
    "<integrator name> <model>" and its category (`other` when it declared none)."""
    ids = list(ids)
    found = {
        m["id"]: {"name": m["name"], "category": m["category"]}
        for m in merchants_by_id(conn, ids).values()
    }
    query = (
        sa.select(devices.c.id, devices.c.model, devices.c.category, integrators.c.name)
        .select_from(devices.join(integrators, integrators.c.id == devices.c.integrator_id))
        .where(devices.c.id.in_([i for i in ids if i not in found]))
    )
    for device_id, model, category, integrator in conn.execute(query):
        found[device_id] = {"name": f"{integrator} {model}", "category": category or "other"}
    return found


def owner_settings(conn: Connection, ids: Iterable[str]) -> dict[str, tuple[str, bool]]:
    """Each owner's IANA timezone and whether they froze their devices' payments."""
    query = sa.select(owners.c.id, owners.c.timezone, owners.c.frozen).where(
        owners.c.id.in_(list(ids))
    )
    return {owner_id: (tz, bool(frozen)) for owner_id, tz, frozen in conn.execute(query)}


def set_frozen(conn: Connection, owner_id: str, frozen: bool) -> None:
    """Freeze or unfreeze an owner's devices' payments."""
    conn.execute(owners.update().where(owners.c.id == owner_id).values(frozen=frozen))


def api_key_rows(
    conn: Connection, party: Party, limit: int, after: Sequence[Any] | None
) -> list[dict[str, Any]]:
    """The party's keys, newest first, starting after the (created_at, id) of a previous page."""
    query = (
        sa.select(api_keys.c.id, api_keys.c.prefix, api_keys.c.created_at, api_keys.c.last_used_at)
        .where(api_keys.c.party_id == party.id, api_keys.c.party_kind == party.kind)
        .order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(before((api_keys.c.created_at, api_keys.c.id), after))
    return [dict(row) for row in conn.execute(query).mappings()]


def before(columns: Sequence[Any], key: Sequence[Any]) -> sa.ColumnElement[bool]:
    """The rows after `key` when sorting by `columns` descending: a keyset page's condition
    (spelt out rather than a row-value comparison, so each value binds with its column's type)."""
    first, *rest = columns
    head, *tail = key
    if not rest:
        return sa.and_(first < head)
    return sa.or_(first < head, sa.and_(first == head, before(rest, tail)))


def lock_api_keys(conn: Connection, party: Party) -> list[str]:
    """The ids of the party's keys, locked until the transaction ends (PostgreSQL)."""
    query = (
        sa.select(api_keys.c.id)
        .where(api_keys.c.party_id == party.id, api_keys.c.party_kind == party.kind)
        .with_for_update()
    )
    return [row[0] for row in conn.execute(query)]


def delete_api_key(conn: Connection, key_id: str) -> None:
    """Forget a key: from the commit on, it authenticates nobody."""
    conn.execute(api_keys.delete().where(api_keys.c.id == key_id))


def touch_api_key(conn: Connection, key_id: str, now: datetime) -> None:
    """Record that the key was used."""
    conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now))
