"""The console's instalment plans page and the inbox's instalment offers on the real app and
database: the schedule an owner sees, the Repay button (the CSRF token, not enough money, repaid,
repaid again), and an offer taken on one of its counts."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.funding.offer_setup import TOTALS, line_for, pay, plans_of, put_policy
from tests.funding.plans_support import owner_with_line, top_up
from tests.support.console import sign_in
from tests.support.world import World


def test_an_owner_sees_a_plans_schedule_and_repays_it_early(
    world: World, browser_like: TestClient
) -> None:
    owner = owner_with_line(world, apr_bps=1_000)
    plan_id = owner.open(30_000, count=3, interval_days=30)
    csrf = sign_in(browser_like, owner.car.owner["Authorization"].removeprefix("Bearer "))
    plan = owner.plan(plan_id)
    fee, total = plan["fee"], plan["total"]
    assert fee > 0 and total == 30_000 + fee

    shown = browser_like.get("/console/instalment-plans")
    assert shown.status_code == 200
    text = shown.text
    assert f'data-plan="{plan_id}"' in text and "m-fuel" in text  # whom it paid
    assert text.count("status-scheduled") == 3 and "3 of 3" in text
    for instalment in plan["instalments"]:
        assert f"€{instalment['amount'] / 100:,.2f}" in text
    assert "<dt>Credit line</dt><dd>card</dd>" in text  # the line's name, not its id

    path = f"/console/instalment-plans/{plan_id}/repay"
    assert browser_like.post(path, data={}).status_code == 403  # no CSRF token
    short = browser_like.post(path, data={"csrf_token": csrf})
    assert short.status_code == 409
    left = f"€{total / 100:,.2f}"  # the API's refusal, its amount as the console writes amounts
    assert f"your balance sources cannot cover the {left} left" in short.text
    assert f"{total} EUR" not in short.text
    api_says = owner.repay(plan_id).json()["error"]["message"]
    assert api_says == f"your balance sources cannot cover the {total} EUR left"  # minor units
    assert owner.plan(plan_id)["status"] == "active"

    top_up(owner, owner.everyday["id"], total + 500, "salary")
    repaid = browser_like.post(path, data={"csrf_token": csrf})
    assert repaid.status_code == 200, repaid.text
    assert f"Plan repaid: {left} collected from your balance sources" in repaid.text
    assert owner.plan(plan_id)["status"] == "repaid"
    assert owner.source(owner.everyday["id"])["balance"] == 500
    assert "status-repaid" in repaid.text and "Repay " not in repaid.text
    again = browser_like.post(path, data={"csrf_token": csrf})
    assert again.status_code == 200 and "This plan was repaid already." in again.text
    assert owner.source(owner.everyday["id"])["balance"] == 500


def test_another_owners_plan_is_not_found(world: World, browser_like: TestClient) -> None:
    owner = owner_with_line(world)
    plan_id = owner.open(5_000)
    stranger = world.device("stranger")
    csrf = sign_in(browser_like, stranger.owner["Authorization"].removeprefix("Bearer "))
    assert plan_id not in browser_like.get("/console/instalment-plans").text
    answer = browser_like.post(
        f"/console/instalment-plans/{plan_id}/repay", data={"csrf_token": csrf}
    )
    assert answer.status_code == 404
    assert owner.plan(plan_id)["status"] == "active"


def test_an_owner_takes_an_instalment_offer_from_the_inbox(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant("groceries")
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    line = line_for(world, car)
    put_policy(world, car, line["id"])
    result = pay(car, shop["id"], 10_000)
    assert (result["status"], result["reason"]) == ("pending_approval", None)
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    inbox = browser_like.get("/console").text
    assert 'data-count="3"' in inbox and 'data-count="6"' in inbox
    assert f"total €{TOTALS[3] / 100:,.2f}" in inbox and "Pay from the wallet" in inbox
    approval_id = re.search(r'data-approval="([^"]+)"', inbox)
    assert approval_id
    path = f"/console/approvals/{approval_id.group(1)}"

    for count, status in (("three", 422), ("12", 422)):
        form = {"decision": "approve", "instalments": count, "csrf_token": csrf}
        refused = browser_like.post(path, data=form)
        assert refused.status_code == status, (count, refused.text)
        assert 'data-count="3"' in refused.text  # still waiting, with its offer
    taken = browser_like.post(
        path, data={"decision": "approve", "instalments": "3", "csrf_token": csrf}
    )
    assert taken.status_code == 200, taken.text
    assert "€100.00 to" in taken.text and "paid from your credit line: 3 instalments" in taken.text
    [plan] = plans_of(world.ctx, car.id)
    assert (plan["count"], plan["total_minor"]) == (3, TOTALS[3])
    plans = browser_like.get("/console/instalment-plans").text
    assert f'data-plan="{plan["id"]}"' in plans and plans.count("status-scheduled") == 3
