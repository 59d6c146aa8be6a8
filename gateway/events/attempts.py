"""SQL for the delivery worker's attempts: taking the due ones (each party's in turn, under a
lease), and writing down how each went. Functions take a Connection and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.events.store import deliveries, event_of, events, get_webhook, tasks, webhooks


def claim_due(
    conn: Connection,
    now: datetime,
    lease_until: datetime,
    limit: int,
    skip_locked: bool,
    in_flight: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Take up to `limit` due attempts (nobody else takes them until `lease_until`), with
    their webhook and event: each party's in turn (`due_in_turn`), so that one party's backlog
    at a slow receiver never keeps the others' attempts waiting for the worker's slots."""
    picked = due_in_turn(now, limit, in_flight or {})
    query = (
        sa.select(tasks.c.seq, tasks.c.attempts, tasks.c.first_at, tasks.c.webhook_id)
        .where(tasks.c.seq.in_(sa.select(picked.c.seq)))
        .order_by(tasks.c.next_at)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    due = list(conn.execute(query))
    if not due:
        return []
    conn.execute(
        tasks.update().where(tasks.c.seq.in_([t.seq for t in due])).values(next_at=lease_until)
    )
    joined = (
        sa.select(
            tasks.c.seq.label("task_seq"),
            webhooks.c.party_id,
            webhooks.c.url,
            webhooks.c.secret,
            events.c.id,
            events.c.type,
            events.c.created_at,
            events.c.data_json,
        )
        .join(webhooks, webhooks.c.id == tasks.c.webhook_id)
        .join(events, events.c.seq == tasks.c.event_seq)
        .where(tasks.c.seq.in_([t.seq for t in due]))
    )
    details = {row.task_seq: row for row in conn.execute(joined)}
    claimed = []
    for task in due:
        row = details.get(task.seq)
        if row is None:
            conn.execute(tasks.delete().where(tasks.c.seq == task.seq))  # webhook or event gone
            continue
        claimed.append(
            {
                "task_seq": task.seq,
                "attempt": task.attempts + 1,
                "first_at": task.first_at,
                "webhook_id": task.webhook_id,
                "party_id": row.party_id,
                "url": row.url,
                "secret": row.secret,
                "event": event_of(row),
            }
        )
    return claimed


def due_in_turn(now: datetime, limit: int, in_flight: dict[str, int]) -> sa.Subquery:
    """The `limit` due attempts to start next, as a fair queue of the parties: a party's k-th
    oldest due attempt, with n of its attempts already in flight (in this process), comes in
    turn k + n, and within a turn the oldest first."""
    turn: sa.ColumnElement[Any] = sa.func.row_number().over(
        partition_by=webhooks.c.party_id, order_by=(tasks.c.next_at, tasks.c.seq)
    )
    if in_flight:
        turn = turn + sa.case(in_flight, value=webhooks.c.party_id, else_=0)
    ranked = (
        sa.select(tasks.c.seq, tasks.c.next_at, turn.label("turn"))
        .join(webhooks, webhooks.c.id == tasks.c.webhook_id)
        .where(tasks.c.next_at <= now)
        .subquery()
    )
    picked = sa.select(ranked.c.seq).order_by(ranked.c.turn, ranked.c.next_at, ranked.c.seq)
    return picked.limit(limit).subquery()


def log_attempt(conn: Connection, claim: dict[str, Any], outcome: dict[str, Any]) -> None:
    """Write one attempt to the log (if its webhook still exists)."""
    if get_webhook(conn, claim["webhook_id"]) is None:
        return
    event = claim["event"]
    conn.execute(
        deliveries.insert().values(
            webhook_id=claim["webhook_id"],
            event_id=event["id"],
            type=event["type"],
            attempt=claim["attempt"],
            **outcome,
        )
    )


def finish_task(conn: Connection, task_seq: int) -> None:
    conn.execute(tasks.delete().where(tasks.c.seq == task_seq))


def retry_task(
    conn: Connection, task_seq: int, attempts: int, first_at: datetime, next_at: datetime
) -> None:
    conn.execute(
        tasks.update()
        .where(tasks.c.seq == task_seq)
        .values(attempts=attempts, first_at=first_at, next_at=next_at)
    )
