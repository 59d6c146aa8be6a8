"""The webhook fan-out's cursor (migration 0017): it never passes an event that is not yet
committed, even when a later one is (PostgreSQL, where seqs are taken before commit), and
pruning never takes the newest event, whose seq the next one follows on SQLite."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.context import Context
from gateway.events import store as event_store
from gateway.events.delivery import DeliveryWorker
from gateway.events.envelope import Draft
from tests.events.helpers import add_webhook, run_rounds
from tests.events.receiver import receiver
from tests.support.world import World


def cursor(ctx: Context) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(event_store.fan_out_cursor.c.seq)).scalar_one())


def test_an_event_committed_late_is_not_passed_over(ctx: Context, world: World) -> None:
    if ctx.db.is_sqlite:
        pytest.skip("SQLite's writers take turns: a seq is never committed out of order")
    car = world.device("car")
    with receiver() as hook:
        add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
        owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
        data = {"device_id": car.id, "from": "active", "to": "suspended"}
        draft = Draft(owner_id, "device.status_changed", data)
        # An event written first (its seq the smaller) and committed last.
        slow = ctx.db.engine.connect()
        slow_tx = slow.begin()
        event_store.record(slow, [draft], ctx.clock())
        ctx.db.run(lambda conn: event_store.record(conn, [draft], ctx.clock()))
        worker = DeliveryWorker(ctx)
        fanning = threading.Thread(target=worker.tick)
        fanning.start()
        time.sleep(0.5)
        assert fanning.is_alive(), "the fan-out went ahead of an uncommitted event"
        slow_tx.commit()
        slow.close()
        fanning.join(10)
        worker.wait_idle()
        assert len(hook.wait_for(2)) == 2  # both events, the one committed late too


def test_the_cursor_moves_past_events_without_a_webhook(ctx: Context, world: World) -> None:
    car = world.device("car")
    before = cursor(ctx)
    assert car.act("suspend").status_code == 200  # an event for the owner, who has no webhook
    run_rounds(DeliveryWorker(ctx), 1)
    with ctx.db.read() as conn:
        assert cursor(ctx) == event_store.last_seq(conn) > before
        assert event_store.unfanned(conn) == 0


def test_pruning_keeps_the_newest_event_and_those_not_fanned_out(
    ctx: Context, world: World
) -> None:
    car = world.device("car")
    for action in ("suspend", "resume", "suspend"):
        assert car.act(action).status_code == 200
    run_rounds(DeliveryWorker(ctx), 1)
    assert car.act("resume").status_code == 200
    assert car.act("suspend").status_code == 200  # these two not fanned out yet
    fanned = cursor(ctx)
    later = ctx.clock() + timedelta(days=30)
    assert kept_after_pruning(ctx, later) == [fanned + 1, fanned + 2]
    run_rounds(DeliveryWorker(ctx), 1)
    assert kept_after_pruning(ctx, later) == [fanned + 2]  # the newest, whatever its age


def kept_after_pruning(ctx: Context, older_than: datetime) -> list[int]:
    ctx.db.run(lambda conn: event_store.prune(conn, older_than))
    with ctx.db.read() as conn:
        return sorted(conn.execute(sa.select(event_store.events.c.seq)).scalars())
