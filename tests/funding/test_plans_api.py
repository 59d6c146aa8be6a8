"""Contract section 8 over HTTP: `GET /v1/owners/me/instalment-plans` (paged, newest first) and
`POST /v1/instalment-plans/{id}/repay`, on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.funding.plans_support import (
    balance_of,
    events_of,
    fees_of,
    owner_with_line,
    top_up,
)
from tests.support.funding import source
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("books_balance")


def test_plans_list_newest_first_and_page_with_a_cursor(world: World) -> None:
    owner = owner_with_line(world)
    opened = [owner.open(1_000 * (i + 1), count=2) for i in range(3)]
    assert [p["id"] for p in owner.plans()] == opened[::-1]
    headers = owner.car.owner
    first = world.api.get("/v1/owners/me/instalment-plans?limit=2", headers=headers).json()
    assert [p["id"] for p in first["items"]] == opened[:0:-1]
    later = owner.open(9_000, count=2)  # added after the first page: never on a later one
    rest = world.api.get(
        f"/v1/owners/me/instalment-plans?limit=2&cursor={first['next_cursor']}", headers=headers
    ).json()
    assert [p["id"] for p in rest["items"]] == [opened[0]] and rest["next_cursor"] is None
    assert owner.plans()[0]["id"] == later
    for bad in ("limit=0", "limit=201", "cursor=nope"):
        response = world.api.get(f"/v1/owners/me/instalment-plans?{bad}", headers=headers)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_request"
    stranger = world.device("stranger", top_up=0)
    other = world.api.get("/v1/owners/me/instalment-plans", headers=stranger.owner)
    assert other.json() == {"items": [], "next_cursor": None}


def test_opening_a_plan_tells_the_owner(world: World) -> None:
    owner = owner_with_line(world)
    plan_id = owner.open(3_000, count=3)
    (event,) = events_of(world, owner, "instalment.plan_opened")
    assert event == owner.plan(plan_id)


def test_repaying_collects_the_rest_from_sources_in_priority_order_to_their_floors(
    world: World,
) -> None:
    owner = owner_with_line(world, apr_bps=1_000)
    plan_id = owner.open(10_000, count=4)  # fee 329 (10 % for 120 days of 10,000)
    total = owner.plan(plan_id)["total"]
    assert total == 10_329
    later = source(world, owner.car.owner, name="savings", priority=50, floor=2_000)
    top_up(owner, owner.everyday["id"], 6_000, "a")
    top_up(owner, later["id"], 2_000 + 4_329, "b")  # exactly the rest above its floor
    response = owner.repay(plan_id)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["status"] == "repaid"
    assert [i["status"] for i in plan["instalments"]] == ["paid"] * 4
    assert owner.source(owner.everyday["id"])["balance"] == 0
    assert owner.source(later["id"])["balance"] == 2_000  # its floor, reached exactly
    assert balance_of(world, owner.line["id"]) == 0
    assert fees_of(world) == 329  # the fee is neither added to nor reduced
    assert len(events_of(world, owner, "instalment.paid")) == 4
    again = owner.repay(plan_id)
    assert again.status_code == 200 and again.json() == plan  # as it is


def test_repaying_is_all_or_nothing_and_never_takes_device_wallets(world: World) -> None:
    owner = owner_with_line(world, apr_bps=0, wallet=50_000)
    plan_id = owner.open(6_000, count=3, apr_bps=0)
    top_up(owner, owner.everyday["id"], 5_999, "a")
    response = owner.repay(plan_id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_funds"
    assert owner.source(owner.everyday["id"])["balance"] == 5_999
    assert owner.car.wallet()["balance"] == 50_000
    assert balance_of(world, owner.line["id"]) == -6_000
    assert owner.plan(plan_id)["status"] == "active"
    top_up(owner, owner.everyday["id"], 1, "b")
    assert owner.repay(plan_id).json()["status"] == "repaid"
    assert owner.source(owner.everyday["id"])["balance"] == 0


def test_another_owners_plan_is_not_found(world: World) -> None:
    owner = owner_with_line(world)
    plan_id = owner.open(1_000, count=2)
    stranger = world.device("stranger", top_up=0)
    for plan in (plan_id, "plan_nope"):
        response = owner.repay(plan, headers=stranger.owner)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    shop_key = {"Authorization": f"Bearer {owner.shop['api_key']}"}
    assert owner.repay(plan_id, headers=shop_key).status_code == 403
    assert owner.plan(plan_id)["status"] == "active"
