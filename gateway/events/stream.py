"""The Server-Sent Events stream of a party's events (`GET /v1/events/stream`), with sse-starlette.

It reads the events table, not an in-process bus, so it sees the events of every worker and
every `kym serve` process sharing the database: every `POLL_S` it asks for the party's events
after the last one it saw. On PostgreSQL a transaction may commit an event with a lower
position after one with a higher position was seen; the stream therefore looks back over what it
saw in the last `OVERLAP_S` seconds and sends what it had not sent (receivers deduplicate on
`id` anyway). A `Last-Event-ID` resumes after that event; one that is unknown or no longer kept
replays every event still kept.

Withdrawing the credential ends the stream: every `RECHECK_S` it asks whether the key or the
console session that opened it still exists, and closes when it does not (a stream opened
before a key was deleted, or before sign-out, must not go on reading the owner's events).

A stream holds one of its party's slots (`gateway.events.slots`, the cap on open streams)
until its response ends, however it ends (`HeldStream`).
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from gateway.context import Context
from gateway.db_faults import database_fault, one_line
from gateway.events import store as event_store
from gateway.events.envelope import body_of

log = logging.getLogger("kym.events")
POLL_S = 0.5
PING_S = 10
OVERLAP_S = 5.0
PAGE = 500
RECHECK_S = 1.0
EVENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the contract's ids


class Cursor:
    """Which of a party's events the stream has sent (see the module's note on overlap)."""

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.sent: dict[int, float] = {}  # position -> when it was sent (monotonic)

    def fresh(self, rows: list[Any], now: float) -> list[Any]:
        """The rows not sent yet; remembers them, and forgets what is older than the overlap."""
        new = [row for row in rows if row.seq not in self.sent and row.seq > self.floor]
        for row in new:
            self.sent[row.seq] = now
        settled = [seq for seq, at in self.sent.items() if now - at > OVERLAP_S]
        if settled:
            self.floor = max(self.floor, max(settled))
            self.sent = {s: at for s, at in self.sent.items() if s > self.floor}
        return new


def start_position(ctx: Context, recipient: str, last_event_id: str | None) -> int:
    """Where the stream starts: after `Last-Event-ID` if kept, at the start if not (an id
    that no event could have, of any length, included: the contract's unknown id), else now."""
    with ctx.db.read() as conn:
        if not last_event_id:
            return event_store.last_seq(conn)
        if not EVENT_ID.fullmatch(last_event_id):
            return 0
        return event_store.seq_of(conn, recipient, last_event_id) or 0


def read_after(ctx: Context, recipient: str, after: int) -> list[Any]:
    with ctx.db.read() as conn:
        return event_store.events_after(conn, recipient, after, PAGE)


class Permission:
    """Whether the credential that opened a stream still exists: `still_allowed` asked (in a
    thread) at most every RECHECK_S, before every page read and every event sent, so that a
    backlog (a replay of 48 hours, paced by a client that reads slowly) is no way around it."""

    def __init__(self, still_allowed: Callable[[], bool] | None) -> None:
        self.still_allowed = still_allowed
        self.checked = time.monotonic()

    async def holds(self) -> bool:
        if self.still_allowed is None or time.monotonic() - self.checked < RECHECK_S:
            return True
        if not await run_in_threadpool(self.still_allowed):
            return False
        self.checked = time.monotonic()
        return True


async def events_of(
    ctx: Context,
    recipient: str,
    last_event_id: str | None,
    stopping: anyio.Event | None = None,
    still_allowed: Callable[[], bool] | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """The stream's messages: a comment once subscribed, then each event as it is recorded;
    it ends once `still_allowed` says no (`Permission`), or when the database fails it
    (`database_fault`), without a traceback: a PostgreSQL that PANICs on a full disk ended
    every open stream with one."""
    cursor = Cursor(await run_in_threadpool(start_position, ctx, recipient, last_event_id))
    yield ServerSentEvent(comment="subscribed")
    permission = Permission(still_allowed)
    try:
        while stopping is None or not stopping.is_set():
            position, full = cursor.floor, True
            while full:  # page on through a backlog before pausing
                if not await permission.holds():
                    return  # the key or session is gone: the response ends here
                rows = await run_in_threadpool(read_after, ctx, recipient, position)
                full, position = len(rows) == PAGE, rows[-1].seq if rows else position
                for row in cursor.fresh(rows, time.monotonic()):
                    if not await permission.holds():
                        return
                    event = event_store.event_of(row)
                    yield ServerSentEvent(data=body_of(event), event=event["type"], id=event["id"])
            await anyio.sleep(POLL_S)
    except Exception as exc:
        if not database_fault(exc):
            raise
        # down, restarting, out of room: the client resumes with Last-Event-ID (503 meanwhile)
        log.warning("an event stream ends: the database fails (%s)", one_line(exc))


class HeldStream(EventSourceResponse):
    """An SSE response that calls `release` once it has ended: the client went away, the
    stream ended, or the server stopped and cancelled it (and, should the response never be
    sent at all, when it is collected)."""

    def __init__(
        self, content: AsyncIterator[ServerSentEvent], release: Callable[[], None], **options: Any
    ) -> None:
        super().__init__(content, **options)
        self.release = release
        weakref.finalize(self, release)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def event_stream(
    ctx: Context,
    recipient: str,
    last_event_id: str | None,
    still_allowed: Callable[[], bool] | None = None,
    release: Callable[[], None] = lambda: None,
) -> EventSourceResponse:
    """The SSE response for one owner's or merchant's events (the console may call this too);
    `still_allowed`: whether the credential that opened it still exists (see the module);
    `release`: called when the response has ended, maybe more than once (`slots.Slot.release`
    gives the stream's slot back once)."""
    stopping = anyio.Event()
    return HeldStream(
        events_of(ctx, recipient, last_event_id, stopping, still_allowed),
        release,
        ping=PING_S,
        shutdown_event=stopping,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
