"""Contract section 8: instalments collected on their due dates by the housekeeper, with an
injected clock (no sleeping), on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.funding.collect import collect_due
from gateway.mqtt.housekeeper import Housekeeper
from tests.funding.plans_support import (
    advance_days,
    balance_of,
    events_of,
    fees_of,
    instalment_rows,
    owner_with_line,
    top_up,
)
from tests.support.funding import source
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("books_balance")


def statuses(plan: dict[str, Any]) -> list[str]:
    return [i["status"] for i in plan["instalments"]]


def test_each_instalment_is_collected_on_its_due_date_and_the_last_repays_the_plan(
    world: World,
) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(1_000, count=3, apr_bps=0, interval_days=30)
    top_up(owner, owner.everyday["id"], 5_000, "a")
    advance_days(world, 29.9)
    assert collect_due(world.ctx) == 0  # not due yet
    advance_days(world, 0.1)
    assert collect_due(world.ctx) == 1
    assert collect_due(world.ctx) == 0  # once
    plan = owner.plan(plan_id)
    assert statuses(plan) == ["paid", "scheduled", "scheduled"] and plan["status"] == "active"
    assert owner.source(owner.everyday["id"])["balance"] == 5_000 - 333
    assert balance_of(world, owner.line["id"]) == -(1_000 - 333)
    (paid,) = events_of(world, owner, "instalment.paid")
    assert (paid["plan_id"], paid["n"], paid["amount"], paid["status"]) == (plan_id, 1, 333, "paid")
    advance_days(world, 60)  # the two others fall due: both collected in one round
    assert collect_due(world.ctx) == 2
    plan = owner.plan(plan_id)
    assert plan["status"] == "repaid" and statuses(plan) == ["paid"] * 3
    assert owner.source(owner.everyday["id"])["balance"] == 4_000  # 333 + 333 + 334
    assert balance_of(world, owner.line["id"]) == 0
    assert len(events_of(world, owner, "instalment.paid")) == 3


def test_the_housekeeper_collects_in_its_round(world: World) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(2_000, count=2, apr_bps=0, interval_days=7)
    top_up(owner, owner.everyday["id"], 1_000, "a")
    advance_days(world, 7)
    Housekeeper(world.ctx, []).tick()
    assert statuses(owner.plan(plan_id)) == ["paid", "scheduled"]


def test_sources_pay_in_priority_order_down_to_their_floors_exactly(world: World) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(1_000, count=2, apr_bps=0, interval_days=7)  # 500 each
    first = source(world, owner.car.owner, name="first", priority=1, floor=100)
    top_up(owner, first["id"], 400, "f")  # 300 above its floor
    top_up(owner, owner.everyday["id"], 150, "e")  # priority 10
    last = source(world, owner.car.owner, name="last", priority=99)
    top_up(owner, last["id"], 1_000, "l")
    advance_days(world, 7)
    assert collect_due(world.ctx) == 1
    assert owner.source(first["id"])["balance"] == 100  # its floor, exactly
    assert owner.source(owner.everyday["id"])["balance"] == 0
    assert owner.source(last["id"])["balance"] == 950  # the 50 left
    assert statuses(owner.plan(plan_id)) == ["paid", "scheduled"]


def test_an_instalment_that_cannot_be_collected_is_overdue_and_tried_daily(
    world: World,
) -> None:
    owner = owner_with_line(world, apr_bps=0, wallet=10_000)
    plan_id = owner.open(1_000, count=2, apr_bps=0, interval_days=7)
    top_up(owner, owner.everyday["id"], 499, "a")  # one short: nothing is taken
    advance_days(world, 7)
    assert collect_due(world.ctx) == 1
    plan = owner.plan(plan_id)
    assert plan["status"] == "overdue" and statuses(plan) == ["overdue", "scheduled"]
    assert owner.source(owner.everyday["id"])["balance"] == 499
    assert owner.car.wallet()["balance"] == 10_000  # never a device's wallet
    (overdue,) = events_of(world, owner, "instalment.overdue")
    assert (overdue["n"], overdue["amount"], overdue["status"]) == (1, 500, "overdue")
    first = instalment_rows(world, plan_id)[0]
    assert (first["next_try_at"] - first["due_at"]).total_seconds() == 86_400
    assert collect_due(world.ctx) == 0  # not again before a day has passed
    advance_days(world, 1)
    assert collect_due(world.ctx) == 1  # tried again, still short: no second event
    assert len(events_of(world, owner, "instalment.overdue")) == 1
    top_up(owner, owner.everyday["id"], 1, "b")
    advance_days(world, 1)
    assert collect_due(world.ctx) == 1
    plan = owner.plan(plan_id)
    assert plan["status"] == "active" and statuses(plan) == ["paid", "scheduled"]
    assert owner.source(owner.everyday["id"])["balance"] == 0


def test_a_frozen_owner_still_pays_instalments(world: World) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(1_000, count=2, apr_bps=0, interval_days=7)
    top_up(owner, owner.everyday["id"], 500, "a")
    frozen = world.api.post("/v1/owners/me/freeze", headers=owner.car.owner)
    assert frozen.json() == {"frozen": True}
    advance_days(world, 7)
    assert collect_due(world.ctx) == 1
    assert statuses(owner.plan(plan_id)) == ["paid", "scheduled"]


def test_a_late_collector_catches_up_without_trying_in_a_loop(world: World) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(900, count=3, apr_bps=0, interval_days=7)  # 300 each
    top_up(owner, owner.everyday["id"], 300, "a")
    advance_days(world, 21.5)  # the housekeeper was down for three weeks
    assert collect_due(world.ctx) == 3  # the first is paid, the two others overdue
    plan = owner.plan(plan_id)
    assert statuses(plan) == ["paid", "overdue", "overdue"] and plan["status"] == "overdue"
    assert collect_due(world.ctx) == 0  # next tries are in the future, not in a loop
    rows = instalment_rows(world, plan_id)
    assert all(r["next_try_at"] > world.ctx.clock() for r in rows[1:])
    assert fees_of(world) == 0
