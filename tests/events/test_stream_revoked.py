"""A stream whose credential is withdrawn ends within a second or so even while it is still
sending a backlog: a client with a key it should lose (a leaked one, say) could otherwise
resume with an unknown Last-Event-ID, replay 48 hours of events slowly, and go on reading the
owner's new events for as long as it kept the backlog from running out."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial

import anyio

from gateway.context import Context
from gateway.events import store as event_store
from gateway.events import stream
from gateway.events.envelope import Draft


def test_withdrawing_the_key_ends_a_stream_in_the_middle_of_its_backlog(ctx: Context) -> None:
    owner, at = "own_backlog", ctx.clock() - timedelta(hours=1)
    drafts = [Draft(owner, "device.status_changed", {"n": n}) for n in range(stream.PAGE * 3)]
    ctx.db.run(partial(event_store.record, drafts=drafts, now=at))
    allowed = [True]

    async def read() -> tuple[int, int]:
        events = stream.events_of(ctx, owner, "evt_unknown", None, lambda: allowed[0])
        before = after = 0
        async for message in events:
            if message.comment:
                continue
            before += 1
            if before == 10:
                break
        allowed[0] = False  # the key is deleted while the client takes its time
        await anyio.sleep(stream.RECHECK_S + 0.1)
        async for _ in events:
            after += 1
        return before, after

    began = time.monotonic()
    before, after = anyio.run(read)
    assert before == 10
    assert after == 0, f"{after} events were sent after the key was deleted"
    assert time.monotonic() - began < 10
