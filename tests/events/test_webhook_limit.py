"""A party registers at most MAX_WEBHOOKS webhooks: one more is 409 `too_many_webhooks`, says
to delete one, and stores nothing; the refusal comes after 401, 403 and 422."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.context import Context
from gateway.errors import Conflict
from gateway.events import store as event_store
from gateway.events import webhooks
from gateway.events.webhooks import MAX_WEBHOOKS
from gateway.parties import Party
from tests.events.helpers import add_webhook
from tests.support.world import World, bearer


def url(n: int) -> str:
    return f"http://127.0.0.1:9/hook-{n}"


def stored(ctx: Context, party_id: str) -> list[Any]:
    """The party's webhooks as the database holds them."""
    with ctx.db.read() as conn:
        rows = conn.execute(
            sa.select(event_store.webhooks.c.id, event_store.webhooks.c.url).where(
                event_store.webhooks.c.party_id == party_id
            )
        )
        return sorted(tuple(row) for row in rows)


def listed(world: World, headers: dict[str, str]) -> list[str]:
    response = world.api.get("/v1/webhooks", headers=headers)
    assert response.status_code == 200, response.text
    return sorted(item["id"] for item in response.json()["items"])


def test_one_webhook_past_the_cap_is_refused_and_nothing_is_stored(world: World) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    headers = bearer(owner["api_key"])
    added = [add_webhook(world.api, headers, url(n))["id"] for n in range(MAX_WEBHOOKS)]
    before = stored(world.ctx, owner["id"])
    refused = world.api.post("/v1/webhooks", json={"url": url(99)}, headers=headers)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "too_many_webhooks"
    assert f"at most {MAX_WEBHOOKS} webhooks" in error["message"]
    assert "DELETE /v1/webhooks/{id}" in error["message"]
    assert stored(world.ctx, owner["id"]) == before and len(before) == MAX_WEBHOOKS
    assert listed(world, headers) == sorted(added)
    assert world.api.delete(f"/v1/webhooks/{added[0]}", headers=headers).status_code == 204
    again = add_webhook(world.api, headers, url(99))  # deleting one makes room for one
    assert listed(world, headers) == sorted([*added[1:], again["id"]])
    shop = world.merchant()  # the cap is each party's own
    assert add_webhook(world.api, bearer(shop["api_key"]), url(0))["id"]


def test_at_the_cap_the_contracts_earlier_refusals_come_first(world: World) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    integrator = world.party("integrators", {"name": "i"})
    headers = bearer(owner["api_key"])
    for n in range(MAX_WEBHOOKS):
        add_webhook(world.api, headers, url(n))
    answers = {
        401: world.api.post("/v1/webhooks", json={"url": url(99)}, headers=bearer("kym_wrong")),
        403: world.api.post(
            "/v1/webhooks", json={"url": url(99)}, headers=bearer(integrator["api_key"])
        ),
        422: world.api.post("/v1/webhooks", json={"url": "ftp://example.com/"}, headers=headers),
    }
    got = {status: (a.status_code, a.json()["error"]["code"]) for status, a in answers.items()}
    assert got == {
        401: (401, "unauthorized"),
        403: (403, "forbidden"),
        422: (422, "webhook_url_not_allowed"),
    }
    unknown_type = {"url": url(99), "events": ["no.such_event"]}
    assert world.api.post("/v1/webhooks", json=unknown_type, headers=headers).status_code == 422
    assert len(stored(world.ctx, owner["id"])) == MAX_WEBHOOKS


def test_webhooks_added_at_once_never_pass_the_cap(world: World, ctx: Context) -> None:
    """Counted under the lock that adding a webhook takes alone (BEGIN IMMEDIATE on SQLite):
    of several added at once for the last place, one gets it."""
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    for n in range(MAX_WEBHOOKS - 1):
        add_webhook(world.api, bearer(owner["api_key"]), url(n))
    party, racers = Party("owner", owner["id"]), 6
    start, outcomes = threading.Barrier(racers), []

    def add(n: int) -> None:
        start.wait(10)
        try:
            webhooks.create_webhook(ctx, party, url(100 + n), None)
            outcomes.append("added")
        except Conflict as refused:
            outcomes.append(refused.reason)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["added", *["too_many_webhooks"] * (racers - 1)]
    assert len(stored(ctx, owner["id"])) == MAX_WEBHOOKS


@pytest.mark.parametrize(
    ("path", "method"), [("/v1/webhooks", "post"), ("/v1/events/stream", "get")]
)
def test_the_openapi_document_names_the_409(world: World, path: str, method: str) -> None:
    document = world.api.get("/openapi.json").json()
    conflict = document["paths"][path][method]["responses"]["409"]
    schema = conflict["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
