"""The console's instalment plans page on the real app and database: the schedule an owner
sees, and the Repay button (the CSRF token, not enough money, repaid, repaid again)."""

from __future__ import annotations

from fastapi.testclient import TestClient

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
    assert short.status_code == 409 and "cannot cover" in short.text
    assert owner.plan(plan_id)["status"] == "active"

    top_up(owner, owner.everyday["id"], total + 500, "salary")
    repaid = browser_like.post(path, data={"csrf_token": csrf})
    assert repaid.status_code == 200, repaid.text
    left = f"€{total / 100:,.2f}"
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
