"""The event stream (contract section 7): an owner's or a merchant's events as Server-Sent
Events. The console's session cookie stands in for the key here (and nowhere else in `/v1`).
A party holds at most `slots.MAX_STREAMS_PER_PARTY` streams open in this process; one more is
409 `too_many_streams` (why 409, and why per process: `gateway.events.slots`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from gateway import keys
from gateway.console import sessions
from gateway.console.auth import current_session
from gateway.errors import Forbidden, Unauthorized
from gateway.events.slots import StreamSlots
from gateway.events.stream import event_stream
from gateway.http.deps import Ctx, bearer, caller
from gateway.parties import Party

router = APIRouter(tags=["events"])
STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `id:` the event id, `event:` its type, `data:` the "
        "event `{id, type, created_at, data}` as one line of JSON",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@dataclass(frozen=True)
class StreamCaller:
    """Who opened the stream, and whether the key or session they opened it with still exists
    (the stream ends when it does not)."""

    party: Party
    still_allowed: Callable[[], bool]


async def stream_caller(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> StreamCaller:
    """The key's party, or without a key the owner signed in to the console (its cookie)."""
    if credentials is None:
        session = await run_in_threadpool(current_session, request)
        if session is None:
            raise Unauthorized("send Authorization: Bearer <api_key>")
        party, cookie = session.owner, request.cookies.get(sessions.COOKIE)
        still_allowed = lambda: sessions.session_of(ctx, cookie) is not None  # noqa: E731
    else:
        party, api_key = await run_in_threadpool(caller, ctx, credentials), credentials.credentials
        still_allowed = lambda: keys.authenticate(ctx, api_key) == party  # noqa: E731
    if party.kind not in ("owner", "merchant"):
        raise Forbidden(f"{party.described} gets no events")
    return StreamCaller(party, still_allowed)


def stream_slots(request: Request) -> StreamSlots:
    """The open streams of each party in this process (made with the app)."""
    slots: StreamSlots = request.app.state.stream_slots
    return slots


@router.get("/v1/events/stream", response_class=EventSourceResponse, responses=STREAM)
def stream_events(
    ctx: Ctx,
    opened: Annotated[StreamCaller, Depends(stream_caller)],
    slots: Annotated[StreamSlots, Depends(stream_slots)],
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """The caller's events as they happen, until the key or session is withdrawn;
    `Last-Event-ID` resumes after that event."""
    slot = slots.take(opened.party)  # after 401 and 403, which `stream_caller` answers
    try:
        return event_stream(ctx, opened.party.id, last_event_id, opened.still_allowed, slot.release)
    except BaseException:
        slot.release()
        raise
