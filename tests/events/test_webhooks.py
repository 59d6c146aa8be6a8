"""Webhooks received by a real HTTP server on loopback, signed under the Standard Webhooks
specification and checked with the `standardwebhooks` package's own verifier."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.context import Context
from gateway.events import store as event_store
from gateway.events.delivery import FAN_OUT_CHUNK, KEEP_EVENTS, RETRY_DELAYS_S, DeliveryWorker
from gateway.events.envelope import Draft
from tests.events.helpers import add_webhook, body_json, deliveries, eventually, run_rounds
from tests.events.receiver import receiver
from tests.support.world import ADMIN, Clock, World, bearer


def test_a_payment_reaches_the_owner_and_the_merchant_signed(world: World, ctx: Context) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    with receiver() as owner_hook, receiver() as shop_hook:
        mine = add_webhook(world.api, car.owner, owner_hook.url, ["payment.approved"])
        theirs = add_webhook(world.api, bearer(shop["api_key"]), shop_hook.url)
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", mine["secret"])
        assert mine["events"] == ["payment.approved"] and "secret" in theirs
        assert car.pay(shop["id"], 1250) == ("approved", None)
        run_rounds(DeliveryWorker(ctx))
        (got,) = owner_hook.wait_for(1)
        (paid,) = shop_hook.wait_for(1)
    event = Webhook(mine["secret"]).verify(got.body, got.headers)
    assert event["type"] == "payment.approved" and got.headers["webhook-id"] == event["id"]
    assert event["data"] | {"order_id": None, "payment_id": None} == {
        "device_id": car.id,
        "order_id": None,
        "payment_id": None,
        "amount": 1250,
        "currency": "EUR",
        "payee": shop["id"],
        "reason": None,
    }
    received = Webhook(theirs["secret"]).verify(paid.body, paid.headers)
    assert received["type"] == "payment.received"
    assert received["data"]["payer_device_id"] == car.id
    assert received["data"]["payment_id"] == event["data"]["payment_id"]
    with pytest.raises(WebhookVerificationError):  # the other webhook's secret does not verify
        Webhook(theirs["secret"]).verify(got.body, got.headers)
    (attempt,) = deliveries(world.api, car.owner, mine["id"])
    assert attempt | {"at": None} == {
        "event_id": event["id"],
        "type": "payment.approved",
        "attempt": 1,
        "status_code": 204,
        "error": None,
        "at": None,
        "delivered": True,
    }


def test_a_failing_endpoint_is_tried_again_with_growing_delays(world: World, ctx: Context) -> None:
    car = world.device("car")
    answers: list[tuple[int, dict[str, str]]] = [(500, {}), (503, {}), (200, {})]
    with receiver(answers=answers) as hook:
        webhook = add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        worker = DeliveryWorker(ctx, interval_s=0.05, retry_delays_s=(0.3, 0.9, 5))
        worker.start()
        try:
            attempts = eventually(lambda: logged(world, car.owner, webhook["id"], 3))
        finally:
            worker.stop()
            worker.join(5)
    got = hook.received
    assert len(got) == 3
    assert len({g.headers["webhook-id"] for g in got}) == 1  # the same event id every time
    for g in got:
        assert Webhook(webhook["secret"]).verify(g.body, g.headers)["data"]["to"] == "suspended"
    gaps = [b - a for a, b in zip(hook.times, hook.times[1:], strict=False)]
    assert 0.3 <= gaps[0] < gaps[1] and gaps[1] >= 0.9  # growing delays
    assert [(a["attempt"], a["status_code"], a["delivered"]) for a in reversed(attempts)] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


def logged(world: World, headers: dict[str, str], webhook_id: str, count: int) -> Any:
    """The webhook's attempts once there are `count` of them, else None."""
    attempts = deliveries(world.api, headers, webhook_id)
    return attempts if len(attempts) >= count else None


def test_attempts_stop_when_they_are_used_up(world: World, ctx: Context) -> None:
    car = world.device("car")
    with receiver(answers=[(500, {})]) as hook:
        webhook = add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        worker = DeliveryWorker(ctx, interval_s=0.02, retry_delays_s=(0.05,) * 5)
        worker.start()
        try:
            eventually(lambda: logged(world, car.owner, webhook["id"], 6))
            time.sleep(0.5)
        finally:
            worker.stop()
            worker.join(5)
        assert len(hook.received) == 6
    attempts = deliveries(world.api, car.owner, webhook["id"])
    assert [a["attempt"] for a in attempts] == [6, 5, 4, 3, 2, 1]


def test_the_default_schedule_meets_the_contract() -> None:
    assert RETRY_DELAYS_S[0] + 0.5 <= 10  # the first retry within 10 s (plus one round)
    assert len(RETRY_DELAYS_S) + 1 >= 6
    assert sum(RETRY_DELAYS_S) >= 3600
    assert list(RETRY_DELAYS_S) == sorted(RETRY_DELAYS_S)


def test_a_redirect_is_not_followed(world: World, ctx: Context) -> None:
    car = world.device("car")
    with receiver() as inside:
        moved = [(307, {"location": inside.url})]
        with receiver(answers=moved) as hook:
            webhook = add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
            assert car.act("suspend").status_code == 200
            run_rounds(DeliveryWorker(ctx))
            assert len(hook.received) == 1
        assert inside.received == []
    (attempt,) = deliveries(world.api, car.owner, webhook["id"])
    assert attempt["status_code"] == 307 and not attempt["delivered"]
    assert "redirect" in attempt["error"]


def test_webhooks_are_listed_paged_and_deleted(world: World, api: TestClient) -> None:
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    headers = bearer(owner["api_key"])
    made = [add_webhook(api, headers, f"http://127.0.0.1:9/h{n}")["id"] for n in range(3)]
    first = api.get("/v1/webhooks?limit=2", headers=headers).json()
    assert [w["id"] for w in first["items"]] == made[::-1][:2] and "secret" not in str(first)
    rest = api.get(f"/v1/webhooks?limit=2&cursor={first['next_cursor']}", headers=headers).json()
    assert [w["id"] for w in rest["items"]] == [made[0]] and rest["next_cursor"] is None
    other = bearer(world.party("owners", {"name": "p", "timezone": "UTC"})["api_key"])
    assert api.delete(f"/v1/webhooks/{made[0]}", headers=other).status_code == 404
    assert api.get(f"/v1/webhooks/{made[0]}/deliveries", headers=other).status_code == 404
    for query in ("limit=0", "limit=x", "cursor=garbage"):  # 404 comes before 422 (section 2)
        url = f"/v1/webhooks/{made[0]}/deliveries?{query}"
        assert api.get(url, headers=other).status_code == 404, query
        assert api.get(url, headers=headers).status_code == 422, query
    assert api.delete(f"/v1/webhooks/{made[0]}", headers=headers).status_code == 204
    assert api.delete(f"/v1/webhooks/{made[0]}", headers=headers).status_code == 404
    assert api.post("/v1/webhooks", json={"url": "http://x"}, headers=ADMIN).status_code == 403


@pytest.mark.parametrize(
    ("events", "kind"),
    [([], "owners"), (["payment.teleported"], "owners"), (["approval.pending"], "merchants")],
)
def test_event_types_a_party_never_gets_are_refused(
    world: World, api: TestClient, events: list[str], kind: str
) -> None:
    party = (
        world.merchant()
        if kind == "merchants"
        else world.party(kind, {"name": "o", "timezone": "UTC"})
    )
    response = api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/", "events": events},
        headers=bearer(party["api_key"]),
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_deleting_a_webhook_drops_its_waiting_attempts(world: World, ctx: Context) -> None:
    car = world.device("car")
    with receiver(answers=[(500, {})]) as hook:
        webhook = add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        worker = DeliveryWorker(ctx, retry_delays_s=(0.05,) * 8)
        run_rounds(worker, 1)
        assert (
            world.api.delete(f"/v1/webhooks/{webhook['id']}", headers=car.owner).status_code == 204
        )
        time.sleep(0.1)
        run_rounds(worker, 3)
        assert len(hook.received) == 1


def test_a_webhook_url_is_checked_again_at_delivery(world: World, ctx: Context) -> None:
    car = world.device("car")
    with receiver() as hook:
        webhook = add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        strict = replace(
            ctx, settings=ctx.settings.model_copy(update={"webhook_allow_private": False})
        )
        run_rounds(DeliveryWorker(strict))
        assert hook.received == []
    (attempt,) = deliveries(world.api, car.owner, webhook["id"])
    assert attempt["status_code"] is None and not attempt["delivered"]
    assert "not a public address" in attempt["error"]


def test_a_round_fans_out_every_new_event_not_one_chunk(world: World, ctx: Context) -> None:
    """2,000 payments a second make 4,000 events; one chunk of 500 a round (every 0.5 s) fell
    further behind every round, and attempts started later than 5 seconds after their event."""
    shop = world.merchant()
    with receiver() as shop_hook:
        add_webhook(world.api, bearer(shop["api_key"]), shop_hook.url, ["payment.received"])
        made = 3 * FAN_OUT_CHUNK + 17
        now = ctx.clock()
        drafts = [Draft(shop["id"], "payment.received", {"n": n}) for n in range(made)]
        ctx.db.run(lambda conn: event_store.record(conn, drafts, now))
        worker = DeliveryWorker(ctx)
        try:
            assert worker.fan_out(now, skip_locked=not ctx.db.is_sqlite) == made
            with ctx.db.read() as conn:
                assert event_store.unfanned(conn) == 0
                due = conn.execute(sa.select(sa.func.count()).select_from(event_store.tasks))
                assert due.scalar() == made  # an attempt for each, due now
        finally:
            worker.stop()


def unfanned_of(ctx: Context, recipient: str) -> int:
    with ctx.db.read() as conn:
        query = sa.select(sa.func.count()).select_from(event_store.events)
        where = (event_store.events.c.recipient == recipient) & ~event_store.events.c.fanned_out
        return int(conn.execute(query.where(where)).scalar() or 0)


def test_events_wait_for_the_fan_out_only_when_their_recipient_has_a_webhook(
    world: World, ctx: Context
) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    with receiver() as shop_hook:
        add_webhook(world.api, bearer(shop["api_key"]), shop_hook.url)
        assert car.pay(shop["id"], 1250) == ("approved", None)
        assert unfanned_of(ctx, shop["id"]) == 1  # payment.received, for the delivery worker
        with ctx.db.read() as conn:  # the owner's payment.approved: written fanned out
            assert event_store.unfanned(conn) == 1
        run_rounds(DeliveryWorker(ctx))
        (got,) = shop_hook.wait_for(1)
    assert got.headers["webhook-id"].startswith("evt_")
    assert unfanned_of(ctx, shop["id"]) == 0


def test_adding_a_webhook_gives_back_its_partys_events_made_since_to_the_fan_out(
    world: World, ctx: Context
) -> None:
    """An event a transaction wrote fanned out, not having seen the webhook, yet made at or
    after the webhook's creation (its batch began after the request that added it)."""
    shop = world.merchant()
    before, since = ctx.clock(), ctx.clock() + timedelta(seconds=1)
    for at in (before, since):
        draft = Draft(shop["id"], "payment.received", {"at": at.isoformat()})
        ctx.db.run(partial(event_store.record, drafts=[draft], now=at))
    assert unfanned_of(ctx, shop["id"]) == 0  # no webhook yet
    with receiver() as shop_hook:
        add_webhook(world.api, bearer(shop["api_key"]), shop_hook.url)
        assert unfanned_of(ctx, shop["id"]) == 1  # the one made since
        run_rounds(DeliveryWorker(ctx))
        got = shop_hook.wait_for(1)
    assert [body_json(g.body)["data"]["at"] for g in got] == [since.isoformat()]


def test_adding_a_webhook_waits_for_a_transaction_writing_its_partys_events(
    world: World, ctx: Context
) -> None:
    """On PostgreSQL (READ COMMITTED) the event's transaction holds the webhooks lock shared
    from reading which recipients have one until it commits, and adding a webhook takes it
    alone; SQLite runs one write transaction at a time."""
    shop = world.merchant()
    wrote, added = threading.Event(), threading.Event()
    draft = Draft(shop["id"], "payment.received", {"n": 1})

    def slow_writer(conn: Connection) -> None:
        event_store.record(conn, [draft], ctx.clock() + timedelta(seconds=5))  # fanned out
        wrote.set()
        assert not added.wait(0.5)  # the webhook waits for this transaction

    writer = threading.Thread(target=lambda: ctx.db.run(slow_writer))
    writer.start()
    assert wrote.wait(10)
    with receiver() as shop_hook:
        add_webhook(world.api, bearer(shop["api_key"]), shop_hook.url)
        added.set()
        writer.join(10)
        assert unfanned_of(ctx, shop["id"]) == 1  # found, committed, by the webhook's reset


def test_the_fan_out_reads_the_partial_index_of_events_still_to_fan_out(ctx: Context) -> None:
    """Most events are written fanned out; the index holds the others only (migration 0017),
    and the delivery worker's query must find them through it, not by scanning every event."""
    with ctx.db.read() as conn:
        sql = str(event_store.to_fan_out(500).compile(conn, compile_kwargs={"literal_binds": True}))
        if ctx.db.is_sqlite:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        else:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: say it all
            plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
    assert "ix_events_to_fan_out" in plan, plan


def test_the_delivery_log_forgets_attempts_as_old_as_the_events_it_forgets(
    world: World, ctx: Context, clock: Clock
) -> None:
    car = world.device("car")
    with receiver() as hook:
        webhook = add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        run_rounds(DeliveryWorker(ctx), rounds=1)
        clock.advance(KEEP_EVENTS.total_seconds() + 60)
        assert car.act("resume").status_code == 200
        run_rounds(DeliveryWorker(ctx), rounds=1)  # a new worker prunes in its first round
    (kept,) = deliveries(world.api, car.owner, webhook["id"])
    assert kept["attempt"] == 1 and kept["delivered"]
    assert body_json(hook.received[1].body)["id"] == kept["event_id"]
