"""The event stream (contract section 7): an owner's or a merchant's events as Server-Sent
Events. The console's session cookie stands in for the key here (and nowhere else in `/v1`)."""

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


@router.get("/v1/events/stream", response_class=EventSourceResponse, responses=STREAM)
def stream_events(
    ctx: Ctx,
    opened: Annotated[StreamCaller, Depends(stream_caller)],
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """The caller's events as they happen, until the key or session is withdrawn;
    `Last-Event-ID` resumes after that event."""
    return event_stream(ctx, opened.party.id, last_event_id, opened.still_allowed)
