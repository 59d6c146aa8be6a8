"""Contract section 8, sentence by sentence: instalment offers, their approval and the plans they
open, through the HTTP API and orders decided as a worker decides them, on a real database
(SQLite and PostgreSQL), with `kym ledger check`'s invariants after each test. Sentences that
other files in tests/funding already pin are not repeated here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway.context import Context
from gateway.funding.collect import collect_due
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
from tests.support.world import Clock, Dev, World, bearer

APPROVAL_KEYS = {
    "id",
    "device_id",
    "order_id",
    "kind",
    "amount",
    "currency",
    "payee",
    "payee_name",
    "category",
    "description",
    "why",
    "status",
    "expires_at",
}
PLAN_KEYS = {"id", "payment_id", "device_id", "source", "amount", "fee", "total", "status"}


pytestmark = pytest.mark.usefixtures("books_balance")


def rfc3339_utc(text: str) -> datetime:
    """The time an RFC 3339 string in UTC names (it must say UTC)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), text
    return parsed


def plans(world: World, dev: Dev) -> list[dict[str, Any]]:
    response = world.api.get("/v1/owners/me/instalment-plans", headers=dev.owner)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def spent(world: World, dev: Dev) -> int:
    shown = world.api.get(f"/v1/devices/{dev.id}/spending", headers=dev.owner).json()
    return int(shown["limits"][0]["spent"])


def test_an_offer_is_the_approvals_why_even_when_the_device_has_no_rules(world: World) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=0)  # no rules: step 5 would ask with `no_rules`
    line = line_for(world, car)
    put_policy(world, car, line["id"])
    waiting = pay(car, shop["id"], 10_000)
    assert waiting["status"] == "pending_approval"
    item = approval(world, car, waiting["approval_id"])
    assert item["why"] == "instalment_offer"
    assert APPROVAL_KEYS | {"offer"} <= set(item)
    assert (item["kind"], item["amount"], item["currency"]) == ("pay", 10_000, "EUR")
    assert (item["payee"], item["category"], item["status"]) == (
        shop["id"],
        "maintenance",
        "pending",
    )
    assert {"source", "apr_bps", "interval_days", "options"} <= set(item["offer"])
    option_keys = {"count", "instalment_amount", "fee", "total", "first_due"}
    assert all(option_keys <= set(o) for o in item["offer"]["options"])


def test_a_hold_or_a_pay_refused_at_step_3_is_never_offered(world: World) -> None:
    shop, car, line = offering(world, rules={**OPEN, "blocked_categories": ["fuel"]})
    held = pay(car, shop["id"], 10_000, kind="hold")
    assert (held["status"], held["reason"]) == ("declined", "insufficient_funds")
    fuel = world.merchant("fuel")
    assert car.pay(fuel["id"], 10_000) == ("declined", "category_not_allowed")
    approvals = world.api.get("/v1/approvals", headers=car.owner).json()["items"]
    assert approvals == [] and plans_of(world.ctx, car.id) == []


def test_keep_at_least_sums_the_wallet_and_the_balance_sources_of_its_currency_only(
    world: World,
) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=5_000, rules=OPEN)
    dollars = source(world, car.owner, name="usd", currency="USD")
    usd = world.api.post(
        f"/v1/funding-sources/{dollars['id']}/top-ups",
        headers=car.owner,
        json={"amount": 90_000, "currency": "USD", "idempotency_key": "u"},
    )
    assert usd.status_code == 201, usd.text
    line = line_for(world, car)  # the line's available is no balance either
    put_policy(world, car, line["id"], min_amount=1, keep_at_least=3_000)
    assert pay(car, shop["id"], 2_500)["status"] == "pending_approval"  # 2,500 < 3,000
    euros = source(world, car.owner, name="eur", floor=400)  # its floor is not subtracted
    fund(world, car.owner, euros["id"], 500, "e")
    paid = pay(car, shop["id"], 2_500)  # 5,000 + 500 - 2,500 = 3,000: kept exactly
    assert (paid["status"], paid["funded_by"]) == ("approved", [])


def test_first_due_is_rfc3339_utc_interval_days_after_the_approval_was_created(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(world, interval_days=92)
    assert isinstance(ctx.clock, Clock)
    ctx.clock.advance(40 * 86_400)  # the gateway's clock, not the machine's, decides
    before = ctx.clock().replace(microsecond=0)
    waiting = pay(car, shop["id"], 10_000)
    after = ctx.clock()
    options = approval(world, car, waiting["approval_id"])["offer"]["options"]
    dues = {rfc3339_utc(o["first_due"]) for o in options}
    assert len(dues) == 1
    [due] = dues
    assert before + timedelta(days=92) <= due <= after + timedelta(days=92)


def test_a_plan_opened_by_an_approval_is_listed_with_its_instalments_due_from_that_moment(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(
        world, rules={**OPEN, "approval_ttl_seconds": 7_200}, counts=[3], interval_days=7
    )
    order = car.order(type="pay", payee=shop["id"], amount=10_000, currency="EUR")
    waiting = car.send(order)
    assert isinstance(ctx.clock, Clock)
    ctx.clock.advance(3_600)  # the plan opens when approved, not when offered
    before = ctx.clock().replace(microsecond=0)
    decided = decide(world, car, waiting["approval_id"], decision="approve", instalments=3)
    after = ctx.clock()
    plan_id = decided.json()["result"]["plan_id"]
    [plan] = plans(world, car)
    assert PLAN_KEYS | {"instalments"} <= set(plan) and plan["id"] == plan_id
    assert (plan["device_id"], plan["source"], plan["status"]) == (car.id, line["id"], "active")
    assert (plan["amount"], plan["fee"], plan["total"]) == (10_000, 69, 10_069)  # 7 days
    assert plan["payment_id"] == car.send(order)["payment_id"]  # the final result's
    instalments = plan["instalments"]
    assert all({"n", "due", "amount", "status"} <= set(i) for i in instalments)
    assert [(i["n"], i["amount"], i["status"]) for i in instalments] == [
        (1, 3_356, "scheduled"),
        (2, 3_356, "scheduled"),
        (3, 3_357, "scheduled"),
    ]
    for i in instalments:
        due = rfc3339_utc(i["due"])
        days = timedelta(days=7 * i["n"])
        assert before + days <= due <= after + days
    owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    [opened] = [e for e in events_of(ctx, owner_id) if e["type"] == "instalment.plan_opened"]
    assert opened["data"] == plan


def test_a_refund_or_dispute_of_an_instalment_payment_goes_to_the_wallet_the_plan_owes_all(
    world: World, ctx: Context
) -> None:
    shop = world.merchant("maintenance")
    merchant = bearer(shop["api_key"])
    rules = {**OPEN, "limits": [{"period": "day", "amount": 50_000}]}
    car = world.device("car", top_up=0, rules=rules)
    line = line_for(world, car)
    put_policy(world, car, line["id"], counts=[3], auto_accept_up_to=10_000)
    paid = pay(car, shop["id"], 10_000)
    assert paid["status"] == "approved" and paid["funded_by"][0]["plan_id"]
    refund = world.api.post(
        f"/v1/merchants/me/payments/{paid['payment_id']}/refunds",
        headers=merchant,
        json={"amount": 4_000, "idempotency_key": "r"},
    )
    assert refund.status_code == 200, refund.text
    assert car.wallet()["balance"] == 4_000
    assert spent(world, car) == 6_000  # counted at its amount, less the refund
    dispute = world.api.post(
        f"/v1/payments/{paid['payment_id']}/disputes",
        headers=car.owner,
        json={"reason": "defective", "message": "broken"},
    )
    assert dispute.status_code == 201, dispute.text
    accepted = world.api.post(
        f"/v1/disputes/{dispute.json()['id']}/response",
        headers=merchant,
        json={"decision": "accept", "message": "sorry"},
    )
    assert accepted.status_code == 200, accepted.text
    assert car.wallet()["balance"] == 10_000
    assert spent(world, car) == 0
    [plan] = plans(world, car)
    assert (plan["status"], plan["total"]) == ("active", TOTALS[3])
    assert [i["status"] for i in plan["instalments"]] == ["scheduled"] * 3
    assert sources_by_id(world, car)[line["id"]]["balance"] == -TOTALS[3]


def test_approving_an_offer_without_instalments_tops_up_from_the_sources(
    world: World, ctx: Context
) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=0, rules={**OPEN, "auto_top_up": {"below": 0, "to": 1}})
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 3_000, "a")
    line = line_for(world, car)
    put_policy(world, car, line["id"], min_amount=1, keep_at_least=2_000)
    order = car.order(type="pay", payee=shop["id"], amount=1_500, currency="EUR")
    waiting = car.send(order)  # 3,000 - 1,500 < 2,000: an offer, nothing drawn
    assert approval(world, car, waiting["approval_id"])["why"] == "instalment_offer"
    decided = decide(world, car, waiting["approval_id"], decision="approve")
    assert decided.json()["result"] == {"status": "approved", "reason": None}
    final = car.send(order)
    assert final["funded_by"] == [{"source": account["id"], "amount": 1_501}]
    assert sources_by_id(world, car)[account["id"]]["balance"] == 1_499
    assert sources_by_id(world, car)[line["id"]]["balance"] == 0 and plans(world, car) == []


def test_an_overdue_plan_can_be_repaid_and_its_overdue_instalments_are_paid(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(
        world, line={"apr_bps": 0}, counts=[2], interval_days=7, auto_accept_up_to=10_000
    )
    paid = pay(car, shop["id"], 1_000)
    plan_id = paid["funded_by"][0]["plan_id"]
    assert isinstance(ctx.clock, Clock)
    ctx.clock.advance(7 * 86_400)
    assert collect_due(ctx) == 1  # no balance source at all: overdue
    [plan] = plans(world, car)
    assert plan["status"] == "overdue"
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 1_000, "a")
    repaid = world.api.post(f"/v1/instalment-plans/{plan_id}/repay", headers=car.owner)
    assert repaid.status_code == 200, repaid.text
    assert repaid.json()["status"] == "repaid"
    assert [i["status"] for i in repaid.json()["instalments"]] == ["paid", "paid"]
    assert sources_by_id(world, car)[account["id"]]["balance"] == 0
    owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    types = [e["type"] for e in events_of(ctx, owner_id)]
    assert types.count("instalment.overdue") == 1 and types.count("instalment.paid") == 2


def test_a_pay_by_instalments_moves_no_automatic_top_up_with_it(world: World, ctx: Context) -> None:
    shop = world.merchant("maintenance")
    rules = {**OPEN, "auto_top_up": {"below": 1_000, "to": 5_000}}
    car = world.device("car", top_up=0, rules=rules)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 20_000, "a")
    line = line_for(world, car)
    put_policy(world, car, line["id"], counts=[3, 6], keep_at_least=15_000, auto_accept_up_to=6_000)
    agreed = pay(car, shop["id"], 6_000)  # 20,000 - 6,000 < 15,000: converted as agreed
    [plan] = plans_of(ctx, car.id)
    assert agreed["funded_by"] == [{"source": line["id"], "amount": 6_000, "plan_id": plan["id"]}]
    waiting = pay(car, shop["id"], 10_000)
    decided = decide(world, car, waiting["approval_id"], decision="approve", instalments=3)
    assert decided.json()["result"]["status"] == "approved", decided.text
    assert sources_by_id(world, car)[account["id"]]["balance"] == 20_000  # never drawn
    assert car.wallet() == {"currency": "EUR", "balance": 0, "available": 0}


def test_an_offer_approved_once_cannot_open_a_second_plan(world: World, ctx: Context) -> None:
    shop, car, line = offering(world)
    waiting = pay(car, shop["id"], 10_000)
    first = decide(world, car, waiting["approval_id"], decision="approve", instalments=3)
    assert first.status_code == 200, first.text
    for body in ({"instalments": 3}, {"instalments": 6}, {}):
        again = decide(world, car, waiting["approval_id"], decision="approve", **body)
        assert again.status_code == 409, (body, again.text)
    assert len(plans_of(ctx, car.id)) == 1
    assert sources_by_id(world, car)[line["id"]]["balance"] == -TOTALS[3]


def test_a_plan_is_collected_after_its_policy_is_deleted_and_its_device_revoked(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(
        world, line={"apr_bps": 0}, counts=[2], interval_days=7, auto_accept_up_to=1_000
    )
    assert pay(car, shop["id"], 1_000)["status"] == "approved"
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 1_000, "a")
    assert world.api.delete(POLICY_URL, headers=car.owner).status_code == 204
    assert car.act("revoke").status_code == 200
    assert isinstance(ctx.clock, Clock)
    ctx.clock.advance(14 * 86_400)
    assert collect_due(ctx) == 2  # the owner still owes what the plan says
    [plan] = plans(world, car)
    assert plan["status"] == "repaid" and sources_by_id(world, car)[account["id"]]["balance"] == 0
