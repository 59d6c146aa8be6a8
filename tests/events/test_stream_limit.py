"""A party holds at most MAX_STREAMS_PER_PARTY event streams open (in this process): one more
is 409 `too_many_streams`, after 401 and 403, and every stream gives its slot back when it
ends, whether the client goes, the key is withdrawn or the server stops."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from gateway.console import sessions
from gateway.context import Context
from gateway.errors import Conflict
from gateway.events.slots import MAX_STREAMS_PER_PARTY, StreamSlots
from gateway.http.app import create_app
from gateway.parties import Party
from tests.events.helpers import eventually
from tests.events.sse import Stream, served
from tests.support.world import World, bearer


def open_streams(url: str, headers: dict[str, str], count: int) -> list[Stream]:
    streams = [Stream(url, headers) for _ in range(count)]
    assert all(s.subscribed() and s.status == 200 for s in streams)
    return streams


def close_all(streams: list[Stream]) -> None:
    for stream in streams:
        stream.disconnect()
        stream.close()


def refused(url: str, headers: dict[str, str], **options: Any) -> httpx.Response:
    return httpx.get(url + "/v1/events/stream", headers=headers, timeout=5, **options)


def test_one_stream_past_the_cap_is_409_until_one_is_closed(world: World, ctx: Context) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    headers, app = bearer(owner["api_key"]), create_app(ctx)
    slots: StreamSlots = app.state.stream_slots
    with served(ctx, app) as (url, _):
        streams = open_streams(url, headers, MAX_STREAMS_PER_PARTY)
        assert slots.open_for(owner["id"]) == MAX_STREAMS_PER_PARTY
        extra = refused(url, headers)
        assert extra.status_code == 409, extra.text
        assert extra.json()["error"]["code"] == "too_many_streams"
        assert f"at most {MAX_STREAMS_PER_PARTY} event streams" in extra.json()["error"]["message"]
        session_id = sessions.sign_in(ctx, owner["api_key"])  # the console's count the same
        assert session_id is not None
        by_console = refused(url, {}, cookies={sessions.COOKIE: session_id})
        assert by_console.status_code == 409
        shop = world.merchant()  # another party's streams are its own
        (theirs,) = open_streams(url, bearer(shop["api_key"]), 1)
        streams[0].disconnect()  # the client goes away: its slot comes back
        assert streams[0].ended.wait(5)
        assert eventually(lambda: slots.open_for(owner["id"]) == MAX_STREAMS_PER_PARTY - 1)
        (again,) = open_streams(url, headers, 1)
        close_all([*streams[1:], again, theirs])
        assert eventually(lambda: slots.open_for(owner["id"]) == 0)
        assert eventually(lambda: slots.open_for(shop["id"]) == 0)  # each ends on its own thread
        streams[0].close()


def test_at_the_cap_401_and_403_come_first(world: World, ctx: Context) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    integrator = world.party("integrators", {"name": "i"})
    with served(ctx) as (url, _):
        streams = open_streams(url, bearer(owner["api_key"]), MAX_STREAMS_PER_PARTY)
        assert refused(url, bearer("kym_wrong")).status_code == 401
        assert refused(url, {}).status_code == 401
        assert refused(url, bearer(integrator["api_key"])).status_code == 403
        close_all(streams)


def test_stopping_the_server_gives_back_every_slot(world: World, ctx: Context) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    app = create_app(ctx)
    slots: StreamSlots = app.state.stream_slots
    with served(ctx, app) as (url, server):
        streams = open_streams(url, bearer(owner["api_key"]), MAX_STREAMS_PER_PARTY)
        began = time.monotonic()
        server.should_exit = True
        assert all(stream.ended.wait(10) for stream in streams)
        assert time.monotonic() - began < 10
        assert eventually(lambda: slots.open_for(owner["id"]) == 0, timeout_s=5)
        for stream in streams:
            stream.close()


def test_a_stream_whose_key_is_deleted_gives_back_its_slot(world: World, ctx: Context) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    other_key = world.api.post("/v1/keys", headers=bearer(owner["api_key"])).json()["api_key"]
    app = create_app(ctx)
    slots: StreamSlots = app.state.stream_slots
    with served(ctx, app) as (url, _):
        (stream,) = open_streams(url, bearer(owner["api_key"]), 1)
        keys = world.api.get("/v1/keys", headers=bearer(other_key)).json()["items"]
        key_id = next(k["id"] for k in keys if owner["api_key"].startswith(k["prefix"]))
        assert world.api.delete(f"/v1/keys/{key_id}", headers=bearer(other_key)).status_code == 204
        assert stream.ended.wait(5), "the stream outlived its key"
        assert eventually(lambda: slots.open_for(owner["id"]) == 0, timeout_s=5)
        stream.close()


def test_a_slot_is_given_back_once_however_often_it_is_released() -> None:
    slots, owner, shop = StreamSlots(cap=2), Party("owner", "own_a"), Party("merchant", "mer_b")
    first, _second = slots.take(owner), slots.take(owner)
    with pytest.raises(Conflict) as full:
        slots.take(owner)
    assert full.value.reason == "too_many_streams"
    slots.take(shop)  # each party has its own
    first.release()
    first.release()  # released again (the response ended, then was collected): counted once
    assert slots.open_for(owner.id) == 1
    slots.take(owner)
    with pytest.raises(Conflict):
        slots.take(owner)
