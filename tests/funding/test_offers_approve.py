"""Contract section 8: the owner answers an instalment offer (POST /v1/approvals/{id} with
`instalments`), through the service layer on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.context import Context
from tests.events.helpers import events_of
from tests.funding.offer_setup import (
    OPEN,
    POLICY_URL,
    TOTALS,
    approval,
    decide,
    line_for,
    offering,
    pay,
    plans_of,
    put_policy,
    sources_by_id,
)
from tests.support.funding import fund, source
from tests.support.world import Dev, World

pytestmark = pytest.mark.usefixtures("books_balance")


def offered(world: World, car: Dev, payee: str, amount: int = 10_000) -> str:
    """Pay `amount` and return the approval that offers instalments for it."""
    result = pay(car, payee, amount)
    assert result["status"] == "pending_approval", result
    assert approval(world, car, result["approval_id"])["why"] == "instalment_offer"
    return str(result["approval_id"])


def test_approving_with_instalments_pays_from_the_line_and_opens_the_plan(
    world: World, ctx: Context
) -> None:
    shop = world.merchant("maintenance")
    car = world.device(
        "car", top_up=0, rules={**OPEN, "limits": [{"period": "day", "amount": 20_000}]}
    )
    line = line_for(world, car)
    put_policy(world, car, line["id"], counts=[3, 6])
    order = car.order(type="pay", payee=shop["id"], amount=10_000, currency="EUR")
    waiting = car.send(order)
    put_policy(world, car, line["id"], counts=[12], interval_days=7)  # the offer's terms hold
    decided = decide(world, car, waiting["approval_id"], decision="approve", instalments=6)
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["status"] == "approved" and body["offer"]["interval_days"] == 30
    [plan] = plans_of(ctx, car.id)
    assert body["result"] == {"status": "approved", "reason": None, "plan_id": plan["id"]}
    assert (plan["count"], plan["interval_days"], plan["apr_bps"]) == (6, 30, 1_200)
    assert (plan["fee_minor"], plan["total_minor"]) == (592, TOTALS[6])
    again = car.send(order)  # the re-sent order gets the final result
    assert again["status"] == "approved" and again["duplicate"] is True
    assert again["funded_by"] == [{"source": line["id"], "amount": 10_000, "plan_id": plan["id"]}]
    assert plan["payment_id"] == again["payment_id"]
    assert sources_by_id(world, car)[line["id"]]["balance"] == -TOTALS[6]
    assert car.wallet()["balance"] == 0
    shop_key = {"Authorization": f"Bearer {shop['api_key']}"}
    assert world.api.get("/v1/merchants/me/wallet", headers=shop_key).json()["balance"] == 10_000
    spent = world.api.get(f"/v1/devices/{car.id}/spending", headers=car.owner).json()
    assert spent["limits"][0]["spent"] == 10_000
    evidence = world.api.get(f"/v1/payments/{again['payment_id']}/evidence", headers=car.owner)
    assert evidence.json()["consent"]["basis"] == "instalments"
    owner = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    [event] = [e for e in events_of(ctx, owner) if e["type"] == "approval.decided"]
    assert event["data"]["offer"] == body["offer"]
    assert event["data"]["result"]["status"] == "approved"


def test_a_409_leaves_the_approval_pending(world: World, ctx: Context) -> None:
    shop, car, line = offering(world, line={"credit_limit": 16_000, "apr_bps": 0}, counts=[2])
    first, second = offered(world, car, shop["id"]), offered(world, car, shop["id"])
    assert decide(world, car, first, decision="approve", instalments=2).status_code == 200
    short = decide(world, car, second, decision="approve", instalments=2)
    assert short.status_code == 409 and short.json()["error"]["code"] == "credit_limit_exceeded"
    assert approval(world, car, second)["status"] == "pending"
    assert world.api.post("/v1/owners/me/freeze", headers=car.owner).status_code == 200
    frozen = decide(world, car, second, decision="approve", instalments=2)
    assert frozen.status_code == 409 and frozen.json()["error"]["code"] == "owner_frozen"
    assert world.api.post("/v1/owners/me/unfreeze", headers=car.owner).status_code == 200
    assert world.api.delete(POLICY_URL, headers=car.owner).status_code == 204
    gone = decide(world, car, second, decision="approve", instalments=2)
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "offer_withdrawn"
    other = line_for(world, car, credit_limit=50_000)
    put_policy(world, car, other["id"], counts=[2])  # names another line since
    moved = decide(world, car, second, decision="approve", instalments=2)
    assert moved.status_code == 409 and moved.json()["error"]["code"] == "offer_withdrawn"
    assert approval(world, car, second)["status"] == "pending"
    assert len(plans_of(ctx, car.id)) == 1
    plain = decide(world, car, second, decision="approve")  # steps 2-4, no offer: declines
    assert plain.json()["result"] == {"status": "declined", "reason": "insufficient_funds"}


def test_instalments_that_do_not_fit_the_approval_are_422(world: World) -> None:
    shop, car, line = offering(
        world, rules={**OPEN, "approval_above": 10}, counts=[3, 6], max_amount=5_000
    )
    with_offer = offered(world, car, shop["id"], 5_000)
    without = pay(car, shop["id"], 5_001)  # above the policy: no offer
    assert (without["status"], without["reason"]) == ("declined", "insufficient_funds")
    top = world.api.post(
        f"/v1/devices/{car.id}/wallet/top-ups",
        headers=car.owner,
        json={"amount": 100, "currency": "EUR", "idempotency_key": "t"},
    )
    assert top.status_code == 201
    plain = pay(car, shop["id"], 50)  # approval_above asks, the wallet covers: no offer
    assert approval(world, car, plain["approval_id"])["why"] == "approval_above"
    assert "offer" not in approval(world, car, plain["approval_id"])
    bad: list[tuple[str, dict[str, Any]]] = [
        (with_offer, {"decision": "approve", "instalments": 12}),  # not offered
        (with_offer, {"decision": "approve", "instalments": 0}),
        (with_offer, {"decision": "approve", "instalments": "3"}),
        (with_offer, {"decision": "decline", "instalments": 3}),
        (plain["approval_id"], {"decision": "approve", "instalments": 3}),
    ]
    for approval_id, body in bad:
        response = decide(world, car, approval_id, **body)
        assert response.status_code == 422, (body, response.text)
        assert approval(world, car, approval_id)["status"] == "pending"
    declined = decide(world, car, with_offer, decision="decline")
    assert declined.json()["result"] == {"status": "declined", "reason": "approval_declined"}
    late = decide(world, car, with_offer, decision="approve", instalments=12)
    assert late.status_code == 422  # 422 comes before 409


def test_approving_without_instalments_pays_below_keep_at_least(world: World) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=2_000, rules=OPEN)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 1_000, "a")
    line = line_for(world, car)
    put_policy(world, car, line["id"], keep_at_least=2_000)
    waiting = offered(world, car, shop["id"], 1_500)  # 3,000 - 1,500 < 2,000
    decided = decide(world, car, waiting, decision="approve")
    assert decided.json()["result"] == {"status": "approved", "reason": None}
    assert car.wallet()["balance"] == 500
    assert sources_by_id(world, car)[line["id"]]["balance"] == 0


def test_approving_with_instalments_runs_steps_2_and_3_again(world: World, ctx: Context) -> None:
    shop, car, line = offering(world)
    waiting = offered(world, car, shop["id"])
    car.put_rules({**OPEN, "max_amount": 9_999})
    decided = decide(world, car, waiting, decision="approve", instalments=3)
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"] == {"status": "declined", "reason": "amount_over_limit"}
    assert plans_of(ctx, car.id) == []
    assert sources_by_id(world, car)[line["id"]]["balance"] == 0
    again = offered(world, car, shop["id"], 5_000)
    assert car.act("suspend").status_code == 200
    suspended = decide(world, car, again, decision="approve", instalments=3)
    assert suspended.json()["result"] == {"status": "declined", "reason": "device_not_active"}
