"""API keys: authenticate a request, and let a party add, list and delete its own keys.

Only a key's SHA-256 is stored. Authentication reads the database on every request (no cache),
so a deleted key fails in every worker from the moment the deletion commits. `last_used_at` is
written at most once a minute per key and worker, as the contract allows it to lag.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from gateway import paging, store
from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.errors import Conflict, NotFound
from gateway.parties import Party, hash_api_key, new_api_key

TOUCH_EVERY = timedelta(seconds=60)
_touched: dict[str, datetime] = {}  # key id -> when this worker last wrote last_used_at


def authenticate(ctx: Context, api_key: str) -> Party | None:
    """The party this key acts for, if the key exists now."""
    with ctx.db.read() as conn:
        found = store.party_for_key_hash(conn, hash_api_key(api_key))
    if found is None:
        return None
    party, key_id = found
    now = ctx.clock()
    last = _touched.get(key_id)
    if last is None or now - last >= TOUCH_EVERY:
        _touched[key_id] = now
        ctx.db.run(lambda conn: store.touch_api_key(conn, key_id, now))
    return party


def create_key(ctx: Context, party: Party) -> tuple[str, str]:
    """Another key for the party; returns (id, api_key), the key shown only this once."""
    api_key, now = new_api_key(), ctx.clock()

    def work(conn: Connection) -> str:
        key_id = store.insert_api_key(conn, api_key, party, now)
        audit_store.append(conn, now, [(party.actor, "api_key.created", None, {"id": key_id})])
        return key_id

    return ctx.db.run(work), api_key


def list_keys(
    ctx: Context, party: Party, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the party's keys, newest first, and the cursor of the next page."""
    start = paging.after("keys", cursor, paging.TIME_THEN_ID)
    with ctx.db.read() as conn:
        rows = store.api_key_rows(conn, party, limit + 1, start)
    page, next_cursor = paging.page_of(rows, limit, "keys", lambda r: (r["created_at"], r["id"]))
    items = [
        {
            "id": row["id"],
            "prefix": row["prefix"],
            "created_at": row["created_at"].isoformat(),
            "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
        }
        for row in page
    ]
    return items, next_cursor


def delete_key(ctx: Context, party: Party, key_id: str) -> None:
    """Delete one of the party's keys; never its last one."""
    now = ctx.clock()

    def work(conn: Connection) -> None:
        ids = store.lock_api_keys(conn, party)
        if key_id not in ids:
            raise NotFound("no such key")
        if len(ids) == 1:
            raise Conflict(
                "this is your last key: add another before deleting it", reason="last_key"
            )
        store.delete_api_key(conn, key_id)
        audit_store.append(conn, now, [(party.actor, "api_key.deleted", None, {"id": key_id})])

    ctx.db.run(work)
    _touched.pop(key_id, None)
