"""The event stream over a real HTTP server (uvicorn on loopback): Server-Sent Events with
`Last-Event-ID` resume, for owners, merchants and the console's session."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from gateway.console import sessions
from gateway.context import Context
from tests.events.helpers import events_of
from tests.events.sse import Stream, served
from tests.support.world import World, bearer


def test_an_owner_sees_events_as_they_happen_and_resumes(world: World, ctx: Context) -> None:
    car = world.device("car")
    with served(ctx) as (url, _):
        stream = Stream(url, car.owner)
        assert stream.subscribed() and stream.status == 200
        assert car.act("suspend").status_code == 200
        (first,) = stream.wait(1)
        stream.close()
        assert first["event"] == "device.status_changed"
        event = json.loads(first["data"])
        assert event["id"] == first["id"] and event["type"] == "device.status_changed"
        assert event["data"] == {"device_id": car.id, "from": "active", "to": "suspended"}
        assert car.act("resume").status_code == 200
        resumed = Stream(url, {**car.owner, "Last-Event-ID": first["id"]})
        (second,) = resumed.wait(1)
        assert json.loads(second["data"])["data"]["to"] == "active"
        time.sleep(0.6)
        assert len(resumed.events()) == 1  # nothing from before the resume point
        resumed.close()
        unknown = Stream(url, {**car.owner, "Last-Event-ID": "evt_forgotten"})
        replayed = unknown.wait(3)
        unknown.close()
    kept = [e["id"] for e in events_of(ctx, car_owner_id(ctx, car.id))]
    assert [e["id"] for e in replayed] == kept  # approve, suspend, resume: everything kept


@pytest.mark.parametrize(
    "last_event_id",
    ["evt_" + "f" * 200, "another owner's event"],
)
def test_any_unknown_last_event_id_replays_what_is_kept(
    world: World, ctx: Context, last_event_id: str
) -> None:
    """Of any length or form, an id that names none of the caller's events replays them all
    (an id over 64 characters was refused with 422, and an EventSource retried it forever)."""
    car, other = world.device("car"), world.device("other")
    assert car.act("suspend").status_code == 200
    assert other.act("suspend").status_code == 200
    theirs = events_of(ctx, car_owner_id(ctx, other.id))[-1]["id"]
    chosen = theirs if last_event_id == "another owner's event" else last_event_id
    with served(ctx) as (url, _):
        stream = Stream(url, {**car.owner, "Last-Event-ID": chosen})
        stream.wait(2)
        assert stream.status == 200
        time.sleep(0.6)  # and nothing of the other owner's
        replayed = stream.events()
        stream.close()
    kept = [e["id"] for e in events_of(ctx, car_owner_id(ctx, car.id))]
    assert [e["id"] for e in replayed] == kept


def car_owner_id(ctx: Context, device_id: str) -> str:
    from devices import store as device_store

    with ctx.db.read() as conn:
        device = device_store.get_device(conn, device_id)
    assert device is not None
    return device.owner_id


def test_a_merchant_gets_its_own_events_only(world: World, ctx: Context) -> None:
    shop, other = world.merchant(), world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    with served(ctx) as (url, _):
        mine = Stream(url, bearer(shop["api_key"]))
        theirs = Stream(url, bearer(other["api_key"]))
        assert mine.subscribed() and theirs.subscribed()
        assert car.pay(shop["id"], 700) == ("approved", None)
        (received,) = mine.wait(1)
        time.sleep(0.6)
        assert theirs.events() == []
        mine.close()
        theirs.close()
    data = json.loads(received["data"])["data"]
    assert received["event"] == "payment.received"
    assert data["payer_device_id"] == car.id and data["amount"] == 700


def test_the_console_session_opens_the_stream(world: World, ctx: Context) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    session_id = sessions.sign_in(ctx, owner["api_key"])
    assert session_id is not None
    with served(ctx) as (url, _):
        stream = Stream(url, {}, cookies={sessions.COOKIE: session_id})
        assert stream.subscribed() and stream.status == 200
        stream.close()
        refused = httpx.get(url + "/v1/events/stream", timeout=5)
        assert refused.status_code == 401
        admin = httpx.get(url + "/v1/events/stream", headers=bearer("wrong"), timeout=5)
        assert admin.status_code == 401


def test_the_stream_ends_when_the_server_stops(world: World, ctx: Context) -> None:
    car = world.device("car")
    with served(ctx) as (url, server):
        stream = Stream(url, car.owner)
        assert stream.subscribed()
        began = time.monotonic()
        server.should_exit = True
        assert stream.ended.wait(10)
        assert time.monotonic() - began < 10
        stream.close()


@pytest.mark.parametrize("kind", ["integrators"])
def test_parties_without_events_are_refused(world: World, ctx: Context, kind: str) -> None:
    party = world.party(kind, {"name": "x"})
    with served(ctx) as (url, _):
        response = httpx.get(url + "/v1/events/stream", headers=bearer(party["api_key"]), timeout=5)
    assert response.status_code == 403


def _key_id(world: World, api_key: str, listed_with: str) -> str:
    listed = world.api.get("/v1/keys", headers=bearer(listed_with)).json()["items"]
    return str(next(k["id"] for k in listed if api_key.startswith(k["prefix"])))


@pytest.mark.parametrize("withdrawn", ["key deleted", "session's key deleted", "signed out"])
def test_withdrawing_the_credential_ends_an_open_stream(
    world: World, ctx: Context, withdrawn: str
) -> None:
    car = world.device("car")
    old_key = car.owner["Authorization"].removeprefix("Bearer ")
    new_key = world.api.post("/v1/keys", headers=car.owner).json()["api_key"]
    if withdrawn == "key deleted":
        headers, cookies, session_id = car.owner, None, None
    else:
        session_id = sessions.sign_in(ctx, old_key)
        assert session_id is not None
        headers, cookies = {}, {sessions.COOKIE: session_id}
    with served(ctx) as (url, _):
        stream = Stream(url, headers, cookies)
        assert stream.subscribed() and stream.status == 200
        time.sleep(1.5)  # the stream has asked again meanwhile, and the credential still holds
        assert world.api.post(f"/v1/devices/{car.id}/suspend", headers=bearer(new_key)).is_success
        assert len(stream.wait(1)) == 1
        if withdrawn == "signed out":
            assert session_id is not None
            sessions.sign_out(ctx, session_id)
        else:
            key_id = _key_id(world, old_key, new_key)
            assert (
                world.api.delete(f"/v1/keys/{key_id}", headers=bearer(new_key)).status_code == 204
            )
        assert stream.ended.wait(5), "the stream outlived its credential"
        assert world.api.post(f"/v1/devices/{car.id}/resume", headers=bearer(new_key)).is_success
        time.sleep(1)
        stream.close()
    assert [e["event"] for e in stream.events()] == ["device.status_changed"]
