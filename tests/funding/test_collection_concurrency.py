"""Instalment collections and payments of several devices of one owner draw on one balance
source at the same time, each in its own transaction on PostgreSQL (READ COMMITTED), with two
housekeepers collecting at once: the source never goes below its floor, no instalment is
collected twice, and every cent is accounted for."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devices import wire
from gateway.context import Context
from gateway.funding.collect import collect_due
from gateway.orders.decide import decide_messages
from gateway.orders.intake import KeyRing
from tests.funding.plans_support import advance_days, books, instalment_rows, owner_with_line
from tests.funding.plans_support import top_up as fund_source
from tests.support.funding import migrated_postgres_url, sibling
from tests.support.world import World
from wallet.schema import transfers

pytestmark = [pytest.mark.postgres]
AUTO = {"currency": "EUR", "auto_top_up": {"below": 1_000, "to": 5_000}}
DEVICES, COLLECTORS, PLANS = 5, 2, 4
FLOOR = 1_000


@pytest.fixture
def database_url(postgres_database: str) -> str:
    """PostgreSQL only: SQLite serialises writers, so there is no race to test there."""
    return migrated_postgres_url(postgres_database)


def test_collections_and_payments_never_take_a_source_below_its_floor(
    world: World, ctx: Context
) -> None:
    owner = owner_with_line(world, apr_bps=0, floor=FLOOR)
    plans = [owner.open(2_000, count=2, apr_bps=0, interval_days=7) for _ in range(PLANS)]
    owner.car.put_rules(AUTO)
    fleet = [owner.car] + [sibling(world, owner.car, f"van{i}", rules=AUTO) for i in range(4)]
    assert len(fleet) == DEVICES
    # Two whole top-ups of 6,000 and two instalments of 1,000, or any mix the races give.
    everyday = owner.everyday["id"]
    start_balance = FLOOR + 2 * 6_000 + 2 * 1_000 + 500
    fund_source(owner, everyday, start_balance, "k")
    advance_days(world, 7)
    orders = [
        (d.topic, d.sign(d.order(type="pay", payee=owner.shop["id"], amount=1_000, currency="EUR")))
        for d in fleet
    ]
    start = threading.Barrier(DEVICES + COLLECTORS)

    def decide(message: tuple[str, bytes]) -> Callable[[], Any]:
        def run() -> Any:
            start.wait()
            entries = decide_messages(ctx, KeyRing(), [message], ctx.clock())
            payloads = [wire.decode(token)[1] for _id, _topic, token in entries]
            return next(p for p in payloads if "status" in p)

        return run

    def collector() -> Any:
        start.wait()
        return collect_due(ctx)

    jobs = [decide(m) for m in orders] + [collector] * COLLECTORS
    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = [f.result() for f in [pool.submit(job) for job in jobs]]
    results, tried = outcomes[:DEVICES], outcomes[DEVICES:]
    assert sum(tried) == PLANS  # each due instalment tried once, by one of the two
    drawn = sum(e["amount"] for r in results if r["status"] == "approved" for e in r["funded_by"])
    assert {r["reason"] for r in results if r["status"] == "declined"} <= {"insufficient_funds"}
    firsts = [instalment_rows(world, plan_id)[0] for plan_id in plans]
    paid = [row for row in firsts if row["status"] == "paid"]
    assert all(row["status"] in ("paid", "overdue") for row in firsts)
    balance = owner.source(everyday)["balance"]
    assert balance >= FLOOR
    assert start_balance - balance == drawn + 1_000 * len(paid)  # every cent accounted for
    with ctx.db.read() as conn:
        keys = [
            row.idempotency_key
            for row in conn.execute(transfers.select().where(transfers.c.kind == "collect"))
        ]
    assert sorted(keys) == sorted(row["collection_id"] for row in paid)  # once each
    assert books(world) == []


def test_repaying_while_housekeepers_collect_never_collects_an_instalment_twice(
    world: World, ctx: Context
) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_ids = [owner.open(3_000, count=3, apr_bps=0, interval_days=7) for _ in range(3)]
    fund_source(owner, owner.everyday["id"], 9_000, "k")  # exactly what the plans owe
    advance_days(world, 14)  # two of each plan's three instalments are due
    start = threading.Barrier(len(plan_ids) + COLLECTORS)

    def repay(plan_id: str) -> Callable[[], Any]:
        def run() -> Any:
            start.wait()
            return owner.repay(plan_id).status_code

        return run

    def collector() -> Any:
        start.wait()
        return collect_due(ctx)

    jobs = [repay(p) for p in plan_ids] + [collector] * COLLECTORS
    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = [f.result() for f in [pool.submit(job) for job in jobs]]
    assert outcomes[: len(plan_ids)] == [200] * len(plan_ids)
    assert all(p["status"] == "repaid" for p in owner.plans())
    with ctx.db.read() as conn:
        moved = [
            row.amount_minor
            for row in conn.execute(transfers.select().where(transfers.c.kind == "collect"))
        ]
    assert sum(moved) == 9_000  # each instalment once, by a housekeeper or by the repayment
    assert owner.source(owner.everyday["id"])["balance"] == 0
    assert books(world) == []
