"""SQL for events: the events outbox, webhooks, the attempts still due and the delivery log
(taking and logging attempts: `gateway.events.attempts`).

Functions take a Connection and never commit: events are written in the transaction of the
change that causes them (`record`: one multi-row insert), so none is lost on a crash and none
outlives a rollback.

An event is written already fanned out when its recipient has no webhook: only the others wait
for the delivery worker (`fan_out`), which marks each once it has made its attempts. Which
recipients have one is read in the event's transaction, after taking (on PostgreSQL) an
advisory lock that adding a webhook takes alone (`WEBHOOKS_LOCK`); adding one also gives back
to the fan-out its party's events made since it (`insert_webhook`). So an event a webhook
should get is never written fanned out for good: either its transaction saw the webhook, or
the webhook's came after it and found the event.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

from devices.store import UtcDateTime
from gateway.events.envelope import Draft, envelope, new_event_id
from wallet.prepared import Prepared, any_of, as_list, insert_many

_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")
metadata = sa.MetaData()
events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String),
    sa.Column("recipient", sa.String),
    sa.Column("type", sa.String),
    sa.Column("created_at", UtcDateTime),
    sa.Column("data_json", sa.Text),
    sa.Column("fanned_out", sa.Boolean),
)
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("party_kind", sa.String),
    sa.Column("party_id", sa.String),
    sa.Column("url", sa.Text),
    sa.Column("events_json", sa.Text),
    sa.Column("secret", sa.String),
    sa.Column("created_at", UtcDateTime),
)
tasks = sa.Table(
    "webhook_tasks",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.String),
    sa.Column("event_seq", _SEQ),
    sa.Column("attempts", sa.Integer),
    sa.Column("next_at", UtcDateTime),
    sa.Column("first_at", UtcDateTime),
)
deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.String),
    sa.Column("event_id", sa.String),
    sa.Column("type", sa.String),
    sa.Column("attempt", sa.Integer),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("at", UtcDateTime),
    sa.Column("delivered", sa.Boolean),
)


# --- events ----------------------------------------------------------------------------------


def record(
    conn: Connection, drafts: list[Draft], now: datetime, quiet: set[str] | None = None
) -> None:
    """Write events in one statement, in the caller's transaction. `quiet`: recipients known
    to have no webhook (`webhook_parties_later`, in this transaction), else they are read
    here; their events are written fanned out."""
    if not drafts:
        return
    if quiet is None:
        recipients = {d.recipient for d in drafts}
        quiet = recipients - webhook_parties_later(conn, recipients)()
    insert_many(
        conn,
        events,
        [
            {
                "id": new_event_id(),
                "recipient": d.recipient,
                "type": d.type,
                "created_at": now,
                "data_json": orjson.dumps(d.data, option=orjson.OPT_NON_STR_KEYS).decode(),
                "fanned_out": d.recipient in quiet,
            }
            for d in drafts
        ],
    )


WEBHOOKS_LOCK = 7403  # PostgreSQL: writers of events share it, adding a webhook takes it alone
_SHARE_WEBHOOKS = Prepared(
    {"postgresql": sa.text(f"SELECT pg_advisory_xact_lock_shared({WEBHOOKS_LOCK})")}
)
_WEBHOOK_PARTIES = Prepared(
    {
        dialect: sa.text(f"SELECT DISTINCT party_id FROM webhooks WHERE {where}")
        for dialect, where in any_of("party_id", "ids").items()
    }
)


def webhook_parties_later(conn: Connection, parties: set[str]) -> Callable[[], set[str]]:
    """Which of these parties have a webhook, read later (inside `pipelined`, once the block has
    ended); on PostgreSQL after taking WEBHOOKS_LOCK shared, held to the transaction's end."""
    if not parties:
        return set
    locked = _SHARE_WEBHOOKS.later(conn, {}) if conn.dialect.name == "postgresql" else list
    rows = _WEBHOOK_PARTIES.later(conn, {"ids": as_list(conn, sorted(parties))})

    def found() -> set[str]:
        locked()  # its cursor read and closed too
        return {party for (party,) in rows()}

    return found


def event_of(row: Any) -> dict[str, Any]:
    """The envelope of an events row."""
    return envelope(row.id, row.type, row.created_at, json.loads(row.data_json))


def events_after(conn: Connection, recipient: str, after_seq: int, limit: int) -> list[Any]:
    """The recipient's events after `after_seq`, oldest first."""
    query = (
        sa.select(events)
        .where(events.c.recipient == recipient, events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return list(conn.execute(query))


def latest_events(conn: Connection, recipient: str, limit: int) -> list[Any]:
    """The recipient's newest events still kept, newest first."""
    query = (
        sa.select(events)
        .where(events.c.recipient == recipient)
        .order_by(events.c.seq.desc())
        .limit(limit)
    )
    return list(conn.execute(query))


def seq_of(conn: Connection, recipient: str, event_id: str) -> int | None:
    """Where one of the recipient's events stands, if it is still kept."""
    query = sa.select(events.c.seq).where(events.c.id == event_id, events.c.recipient == recipient)
    return conn.execute(query).scalar()


def last_seq(conn: Connection) -> int:
    """The newest event's position (0 without events)."""
    return int(conn.execute(sa.select(sa.func.max(events.c.seq))).scalar() or 0)


def prune(conn: Connection, older_than: datetime) -> int:
    """Forget events older than this that no attempt still waits for, and the delivery log's
    attempts older than this (it grew by a row an attempt for as long as a webhook lived).

    The events are read through their primary key, up to the newest one made before
    `older_than` (`seq_before`); an older one found past it (two gateways' transactions can
    commit out of their times' order) goes at the next pruning."""
    conn.execute(stale_deliveries(older_than))
    upto = seq_before(conn, older_than)
    if upto is None:
        return 0
    return int(conn.execute(stale_events(upto, older_than)).rowcount or 0)


def stale_events(upto: int, older_than: datetime) -> sa.Delete:
    """The events up to position `upto` made before `older_than`, but those an attempt still
    waits for and the limits' marks of the last year."""
    return events.delete().where(
        events.c.seq <= upto,
        events.c.created_at < older_than,
        events.c.seq.not_in(sa.select(tasks.c.event_seq)),
        sa.or_(  # a limit's event is the mark that it went: kept while its year lasts
            events.c.type != "limit.nearly_reached",
            events.c.created_at < older_than - timedelta(days=367),
        ),
    )


def seq_before(conn: Connection, moment: datetime) -> int | None:
    """The position of the newest event made before `moment`, found by bisecting the events'
    positions (their times grow with them), a lookup by primary key a step; None if none is
    that old."""
    first = sa.select(events.c.seq, events.c.created_at).order_by(events.c.seq).limit(1)

    def at_or_after(seq: int) -> tuple[int, datetime] | None:
        row = conn.execute(first.where(events.c.seq >= seq)).first()
        return None if row is None else (int(row.seq), row.created_at)

    found = at_or_after(0)
    if found is None or found[1] >= moment:
        return None
    low, high = found[0], last_seq(conn)  # `low` was made before `moment`; none after `high`
    while low < high:
        middle = (low + high + 1) // 2
        next_one = at_or_after(middle)
        if next_one is not None and next_one[0] <= high and next_one[1] < moment:
            low = next_one[0]
        else:  # none from `middle` to `high` was made before `moment`
            high = middle - 1
    return low


def stale_deliveries(older_than: datetime) -> sa.Delete:
    """The delivery log's attempts older than this, found through `ix_webhook_deliveries_at`
    (migration 0022) rather than by reading the whole log."""
    return deliveries.delete().where(deliveries.c.at < older_than)


# --- webhooks --------------------------------------------------------------------------------


def lock_webhooks(conn: Connection) -> None:
    """Take WEBHOOKS_LOCK alone until the transaction ends (PostgreSQL; on SQLite the write
    transaction, BEGIN IMMEDIATE, already has the database to itself). Taken twice in one
    transaction it is simply held twice."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({WEBHOOKS_LOCK})"))


def count_webhooks(conn: Connection, party_id: str) -> int:
    """How many webhooks the party has (read under `lock_webhooks` to count toward a cap)."""
    query = sa.select(sa.func.count()).select_from(webhooks)
    return int(conn.execute(query.where(webhooks.c.party_id == party_id)).scalar() or 0)


def insert_webhook(conn: Connection, values: dict[str, Any]) -> None:
    """Add a webhook, and give its party's events made since it back to the fan-out: a
    transaction that wrote them fanned out had not seen the webhook (on PostgreSQL it held
    WEBHOOKS_LOCK shared, which this waits for, so they are committed by now)."""
    lock_webhooks(conn)
    conn.execute(webhooks.insert().values(**values))
    conn.execute(
        events.update()
        .where(
            events.c.created_at >= values["created_at"],
            events.c.recipient == values["party_id"],
            events.c.fanned_out.is_(True),
        )
        .values(fanned_out=False)
    )


def webhook_rows(
    conn: Connection, party_id: str, limit: int, after: tuple[Any, ...] | None
) -> list[Any]:
    """The party's webhooks, newest first, after a (created_at, id) key."""
    query = sa.select(webhooks).where(webhooks.c.party_id == party_id)
    if after is not None:
        at, webhook_id = after
        query = query.where(
            sa.or_(
                webhooks.c.created_at < at,
                sa.and_(webhooks.c.created_at == at, webhooks.c.id < webhook_id),
            )
        )
    order = (webhooks.c.created_at.desc(), webhooks.c.id.desc())
    return list(conn.execute(query.order_by(*order).limit(limit)))


def get_webhook(conn: Connection, webhook_id: str) -> Any | None:
    return conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id)).first()


def delete_webhook(conn: Connection, webhook_id: str) -> None:
    """The webhook and the attempts still waiting for it (its log goes with it)."""
    conn.execute(tasks.delete().where(tasks.c.webhook_id == webhook_id))
    conn.execute(deliveries.delete().where(deliveries.c.webhook_id == webhook_id))
    conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))


def delivery_rows(conn: Connection, webhook_id: str, limit: int, after: int | None) -> list[Any]:
    """A webhook's attempts, newest first."""
    query = sa.select(deliveries).where(deliveries.c.webhook_id == webhook_id)
    if after is not None:
        query = query.where(deliveries.c.seq < after)
    return list(conn.execute(query.order_by(deliveries.c.seq.desc()).limit(limit)))


# --- the delivery worker ---------------------------------------------------------------------


def to_fan_out(limit: int) -> sa.Select[Any]:
    """The oldest events not fanned out yet, through the partial index of migration 0017 (the
    condition written as the index's, for both databases' planners to match it)."""
    return (
        sa.select(events.c.seq, events.c.recipient, events.c.type, events.c.created_at)
        .where(events.c.fanned_out == False)  # noqa: E712
        .order_by(events.c.seq)
        .limit(limit)
    )


def fan_out(conn: Connection, now: datetime, limit: int, skip_locked: bool) -> int:
    """Make an attempt row per matching webhook for events not fanned out yet; how many events."""
    query = to_fan_out(limit)
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    rows = list(conn.execute(query))
    if not rows:
        return 0
    hooks = _hooks_of(conn, {r.recipient for r in rows})
    new_tasks = [
        {"webhook_id": hook_id, "event_seq": r.seq, "attempts": 0, "next_at": now}
        for r in rows
        for hook_id, types, since in hooks.get(r.recipient, [])
        if r.type in types and since <= r.created_at  # a webhook gets the events after it
    ]
    if new_tasks:
        conn.execute(tasks.insert(), new_tasks)
    seqs = [r.seq for r in rows]
    conn.execute(events.update().where(events.c.seq.in_(seqs)).values(fanned_out=True))
    return len(rows)


Hooks = dict[str, list[tuple[str, set[str], datetime]]]


def _hooks_of(conn: Connection, parties: Iterable[str]) -> Hooks:
    found: Hooks = {}
    query = sa.select(
        webhooks.c.id, webhooks.c.party_id, webhooks.c.events_json, webhooks.c.created_at
    )
    for hook_id, party_id, types, since in conn.execute(
        query.where(webhooks.c.party_id.in_(parties))
    ):
        found.setdefault(party_id, []).append((hook_id, set(json.loads(types)), since))
    return found


def unfanned(conn: Connection) -> int:
    """Events no webhook attempt was made for yet (for the metrics)."""
    query = sa.select(sa.func.count()).select_from(events)
    query = query.where(events.c.fanned_out == False)  # noqa: E712 - the partial index's
    return int(conn.execute(query).scalar() or 0)
