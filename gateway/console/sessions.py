"""Console sessions, kept in the database so that every worker knows every session.

The cookie holds a random id (256 bits) and nothing else: not the API key, nothing derived from
it. The row is keyed by the id's SHA-256 (a leaked table opens no session) and names the API
key that opened it; a lookup joins that key, so deleting the key ends the session at once in
every worker, and the foreign key's ON DELETE CASCADE clears the row.

A sign-in link (for `kym demo`, which prints the console's URL with a ready session) is a row
of the same table with purpose "link": it lives ten minutes and is used once, when it is
exchanged for a session of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from devices.store import UtcDateTime
from gateway import store
from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.parties import Party, hash_api_key

LIFETIME = timedelta(hours=12)
LINK_LIFETIME = timedelta(minutes=10)
COOKIE = "kym_console"

metadata = sa.MetaData()
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String, primary_key=True),
    sa.Column("key_id", sa.String),
    sa.Column("owner_id", sa.String),
    sa.Column("purpose", sa.String),
    sa.Column("csrf_token", sa.String),
    sa.Column("created_at", UtcDateTime),
    sa.Column("expires_at", UtcDateTime),
)


@dataclass(frozen=True)
class Session:
    """A signed-in owner: who, which key opened the session, and the session's CSRF token."""

    owner: Party
    key_id: str
    csrf_token: str

    def csrf_ok(self, token: str | None) -> bool:
        """Whether a request's CSRF token is this session's."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf_token.encode())


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _open(conn: Connection, key_id: str, owner_id: str, purpose: str, now: datetime) -> str:
    session_id = secrets.token_urlsafe(32)
    lifetime = LIFETIME if purpose == "session" else LINK_LIFETIME
    conn.execute(
        console_sessions.insert().values(
            id_hash=_id_hash(session_id),
            key_id=key_id,
            owner_id=owner_id,
            purpose=purpose,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    conn.execute(console_sessions.delete().where(console_sessions.c.expires_at < now))
    return session_id


def sign_in(ctx: Context, api_key: str, purpose: str = "session") -> str | None:
    """A new session id (or link token) for an owner's API key; None for any other key."""
    now = ctx.clock()

    def work(conn: Connection) -> str | None:
        found = store.party_for_key_hash(conn, hash_api_key(api_key))
        if found is None or found[0].kind != "owner":
            return None
        party, key_id = found
        session_id = _open(conn, key_id, party.id, purpose, now)
        record = (party.actor, f"console.{purpose}_opened", None, {"key": key_id})
        audit_store.append(conn, now, [record])
        return session_id

    return ctx.db.run(work)


def redeem_link(ctx: Context, token: str) -> str | None:
    """Exchange a sign-in link for a new session id, once; None when it is unknown or spent."""
    now = ctx.clock()
    links = console_sessions.c

    def work(conn: Connection) -> str | None:
        used = conn.execute(
            console_sessions.delete()
            .where(
                links.id_hash == _id_hash(token), links.purpose == "link", links.expires_at > now
            )
            .returning(links.key_id, links.owner_id)
        ).first()
        if used is None or not _key_exists(conn, used.key_id):
            return None
        return _open(conn, used.key_id, used.owner_id, "session", now)

    return ctx.db.run(work)


def _key_exists(conn: Connection, key_id: str) -> bool:
    keys = store.api_keys
    return conn.execute(sa.select(keys.c.id).where(keys.c.id == key_id)).first() is not None


def session_of(ctx: Context, session_id: str | None) -> Session | None:
    """The live session with this id, if its key still exists and it has not expired."""
    if not session_id:
        return None
    keys = store.api_keys
    query = (
        sa.select(console_sessions.c.key_id, console_sessions.c.csrf_token, keys.c.party_id)
        .join(keys, keys.c.id == console_sessions.c.key_id)
        .where(
            console_sessions.c.id_hash == _id_hash(session_id),
            console_sessions.c.purpose == "session",
            console_sessions.c.expires_at > ctx.clock(),
            keys.c.party_kind == "owner",
        )
    )
    with ctx.db.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Session(owner=Party("owner", row.party_id), key_id=row.key_id, csrf_token=row.csrf_token)


def sign_out(ctx: Context, session_id: str) -> None:
    """End the session now."""
    ctx.db.run(
        lambda conn: conn.execute(
            console_sessions.delete().where(console_sessions.c.id_hash == _id_hash(session_id))
        )
    )
