"""Several devices of one owner draw on one source at once, each in its own transaction on
PostgreSQL (READ COMMITTED): the source never goes below its floor and no cent is lost."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devices import wire
from gateway.context import Context
from gateway.funding.check import check_sources
from gateway.orders.decide import decide_messages
from gateway.orders.intake import KeyRing
from tests.support.funding import fund, migrated_postgres_url, sibling, source
from tests.support.world import World
from wallet.check import check

pytestmark = [pytest.mark.postgres]
AUTO = {"currency": "EUR", "auto_top_up": {"below": 1_000, "to": 5_000}}
DEVICES = 6


@pytest.fixture
def database_url(postgres_database: str) -> str:
    """PostgreSQL only: SQLite serialises writers, so there is no race to test there."""
    return migrated_postgres_url(postgres_database)


def test_devices_of_one_owner_never_draw_a_source_below_its_floor(
    world: World, ctx: Context
) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules=AUTO)
    fleet = [car] + [sibling(world, car, f"van{i}", rules=AUTO) for i in range(DEVICES - 1)]
    account = source(world, car.owner, floor=1_000)
    # Three whole top-ups of 6,000 (to 5,000 after a 1,000 pay) and 500 more: never a fourth.
    assert fund(world, car.owner, account["id"], 1_000 + 3 * 6_000 + 500, "k").status_code == 201
    orders = [
        (d.topic, d.sign(d.order(type="pay", payee=shop["id"], amount=1_000, currency="EUR")))
        for d in fleet
    ]
    start = threading.Barrier(DEVICES)

    def decide(message: tuple[str, bytes]) -> dict[str, Any]:
        start.wait()
        entries = decide_messages(ctx, KeyRing(), [message], ctx.clock())
        payloads = [wire.decode(token)[1] for _id, _topic, token in entries]
        return next(p for p in payloads if "status" in p)

    with ThreadPoolExecutor(DEVICES) as pool:
        results = list(pool.map(decide, orders))
    approved = [r for r in results if r["status"] == "approved"]
    declined = [r for r in results if r["status"] == "declined"]
    assert len(approved) == 3 and len(declined) == DEVICES - 3, results
    assert {r["reason"] for r in declined} == {"insufficient_funds"}
    assert all(r["funded_by"] == [{"source": account["id"], "amount": 6_000}] for r in approved)
    listed = world.api.get("/v1/owners/me/funding-sources", headers=car.owner).json()["items"]
    assert (listed[0]["balance"], listed[0]["available"]) == (1_500, 500)
    with ctx.db.read() as conn:
        assert check(conn) == [] and check_sources(conn) == []
