"""Contract section 8: when a pay becomes an instalment offer, decided through the service layer
on a real database (SQLite and PostgreSQL), with `kym ledger check`'s invariants after each."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gateway.context import Context
from tests.events.helpers import events_of
from tests.funding.offer_setup import (
    OPEN,
    TOTALS,
    approval,
    line_for,
    offering,
    pay,
    plans_of,
    put_policy,
    sources_by_id,
)
from tests.support.funding import fund, sibling, source
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("books_balance")


def test_keep_at_least_reached_exactly_pays_and_one_below_is_an_offer(world: World) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=6_000, rules=OPEN)  # no automatic top-ups
    account = source(world, car.owner, floor=4_000)  # its floor is not subtracted
    fund(world, car.owner, account["id"], 5_000, "a")
    line = line_for(world, car)
    put_policy(world, car, line["id"], min_amount=1, keep_at_least=10_000)
    paid = pay(car, shop["id"], 1_000)  # 6,000 + 5,000 - 1,000 = 10,000: not below
    assert (paid["status"], paid["funded_by"]) == ("approved", [])
    offered = pay(car, shop["id"], 1)  # 5,000 + 5,000 - 1 = 9,999: strictly below
    assert offered["status"] == "pending_approval"
    item = approval(world, car, offered["approval_id"])
    assert item["why"] == "instalment_offer" and item["amount"] == 1
    assert [o["count"] for o in item["offer"]["options"]] == [3, 6]
    assert car.wallet()["balance"] == 5_000  # an offer moves nothing
    held = pay(car, shop["id"], 1, kind="hold")  # a hold is never offered
    assert (held["status"], held["funded_by"]) == ("approved", [])


def test_an_open_hold_is_not_subtracted_from_the_balances(world: World) -> None:
    pump = world.device("pump", category="maintenance", top_up=0, rules=OPEN)
    car = world.device("car", top_up=3_000, rules=OPEN)
    line = line_for(world, car)
    put_policy(world, car, line["id"], min_amount=1, keep_at_least=1_000)
    assert pay(car, pump.id, 1_500, kind="hold")["status"] == "approved"  # available 1,500
    paid = pay(car, pump.id, 1_500)  # the balance 3,000 - 1,500 keeps 1,500 (hold included)
    assert (paid["status"], paid["funded_by"]) == ("approved", [])
    assert car.wallet() == {"currency": "EUR", "balance": 1_500, "available": 0}
    assert pay(car, pump.id, 600)["status"] == "pending_approval"  # cannot cover at all


def test_an_offer_states_each_count_the_line_covers_exactly(world: World, ctx: Context) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=100, rules={**OPEN, "approval_above": 50})
    line = line_for(world, car, credit_limit=10_600)  # covers 2, 3 and 6, not 12
    put_policy(world, car, line["id"], counts=[12, 2, 6, 3])
    offered = pay(car, shop["id"], 10_000)  # the wallet cannot cover it at all
    assert offered["status"] == "pending_approval"
    item = approval(world, car, offered["approval_id"])
    assert item["why"] == "instalment_offer"  # not approval_above: the offer is why it waits
    due = (datetime.fromisoformat(item["created_at"]) + timedelta(days=30)).isoformat()
    assert item["offer"] == {
        "source": line["id"],
        "apr_bps": 1_200,
        "interval_days": 30,
        "options": [
            {"count": 2, "instalment_amount": 5_098, "fee": 197, "total": 10_197, "first_due": due},
            {"count": 3, "instalment_amount": 3_432, "fee": 296, "total": 10_296, "first_due": due},
            {"count": 6, "instalment_amount": 1_765, "fee": 592, "total": 10_592, "first_due": due},
        ],
    }
    owner = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    [pending] = [e for e in events_of(ctx, owner) if e["type"] == "approval.pending"]
    assert pending["data"]["offer"] == item["offer"]
    assert sources_by_id(world, car)[line["id"]]["balance"] == 0  # nothing lent yet
    other = pay(car, shop["id"], 40)  # within approval_above: no approval, no offer
    assert other["status"] == "approved" and "offer" not in str(other)


def test_without_an_option_the_line_covers_step_4_declines(world: World) -> None:
    shop, car, line = offering(
        world, top_up=100, line={"credit_limit": TOTALS[3] - 1}, counts=[3, 6]
    )
    assert car.pay(shop["id"], 10_000) == ("declined", "insufficient_funds")
    put_policy(world, car, line["id"], counts=[2, 3, 6])  # 10,197 fits
    offered = pay(car, shop["id"], 10_000)
    options = approval(world, car, offered["approval_id"])["offer"]["options"]
    assert [o["count"] for o in options] == [2]


def test_amounts_categories_and_currency_outside_the_policy_are_declined(world: World) -> None:
    repairs, fuel = world.merchant("maintenance"), world.merchant("fuel")
    car = world.device("car", top_up=0, rules=OPEN)
    line = line_for(world, car)
    put_policy(world, car, line["id"], min_amount=500, max_amount=2_000, categories=["maintenance"])
    assert car.pay(repairs["id"], 499) == ("declined", "insufficient_funds")
    assert car.pay(repairs["id"], 2_001) == ("declined", "insufficient_funds")
    assert car.pay(fuel["id"], 1_000) == ("declined", "insufficient_funds")
    assert car.pay(repairs["id"], 500)[0] == "pending_approval"
    assert car.pay(repairs["id"], 2_000)[0] == "pending_approval"
    dollars = line_for(world, car, credit_limit=99_999, currency="USD")
    put_policy(world, car, dollars["id"])
    assert car.pay(repairs["id"], 1_000) == ("declined", "insufficient_funds")


def test_a_device_payee_without_a_category_counts_as_other(world: World) -> None:
    meter = world.device("meter", top_up=0, rules=OPEN)  # declared no category
    car = world.device("car", top_up=0, rules=OPEN)
    line = line_for(world, car)
    put_policy(world, car, line["id"], categories=["maintenance"])
    assert car.pay(meter.id, 1_000) == ("declined", "insufficient_funds")
    put_policy(world, car, line["id"], categories=["other"])
    assert car.pay(meter.id, 1_000)[0] == "pending_approval"


def test_what_automatic_top_ups_cover_is_no_offer_unless_below_keep_at_least(
    world: World,
) -> None:
    shop = world.merchant("maintenance")
    rules = {**OPEN, "auto_top_up": {"below": 0, "to": 1}}
    car = world.device("car", top_up=0, rules=rules)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 3_000, "a")
    line = line_for(world, car)
    put_policy(world, car, line["id"], keep_at_least=500)
    paid = pay(car, shop["id"], 2_000)  # 3,000 - 2,000 = 1,000 kept: the sources pay
    assert paid["status"] == "approved"
    assert paid["funded_by"] == [{"source": account["id"], "amount": 2_001}]
    offered = pay(car, shop["id"], 600)  # 1 + 999 - 600 = 400 < 500
    assert offered["status"] == "pending_approval"
    assert sources_by_id(world, car)[account["id"]]["balance"] == 999  # no draw with an offer


def test_agreed_in_advance_it_is_paid_at_once_on_the_smallest_count(
    world: World, ctx: Context
) -> None:
    shop = world.merchant("maintenance")
    rules = {**OPEN, "limits": [{"period": "day", "amount": 12_000}]}
    car = world.device("car", top_up=0, rules=rules)
    line = line_for(world, car)
    put_policy(world, car, line["id"], counts=[6, 3], auto_accept_up_to=10_000)
    paid = pay(car, shop["id"], 10_000)
    assert paid["status"] == "approved"
    [plan] = plans_of(ctx, car.id)
    assert plan["count"] == 3 and plan["total_minor"] == TOTALS[3]
    assert paid["funded_by"] == [{"source": line["id"], "amount": 10_000, "plan_id": plan["id"]}]
    assert plan["payment_id"] == paid["payment_id"]
    assert car.wallet()["balance"] == 0
    assert sources_by_id(world, car)[line["id"]]["balance"] == -TOTALS[3]
    spent = world.api.get(f"/v1/devices/{car.id}/spending", headers=car.owner).json()
    assert spent["limits"][0]["spent"] == 10_000  # counted at its amount, not its total
    evidence = world.api.get(f"/v1/payments/{paid['payment_id']}/evidence", headers=car.owner)
    assert evidence.status_code == 200, evidence.text
    assert evidence.json()["consent"]["basis"] == "instalments"
    assert car.pay(shop["id"], 2_001) == ("declined", "period_limit_exceeded")


def test_above_auto_accept_or_when_step_5_would_ask_it_is_an_offer(world: World) -> None:
    shop, car, line = offering(
        world, rules={**OPEN, "approval_above": 5_000}, auto_accept_up_to=10_000
    )
    paid = pay(car, shop["id"], 5_000)
    assert paid["status"] == "approved" and paid["funded_by"][0]["plan_id"]
    asks = pay(car, shop["id"], 5_001)  # step 5 would ask: an offer, not a conversion
    assert asks["status"] == "pending_approval"
    assert approval(world, car, asks["approval_id"])["why"] == "instalment_offer"
    car.put_rules(OPEN)
    above = pay(car, shop["id"], 10_001)
    assert above["status"] == "pending_approval"
    nobody = world.device("nobody", top_up=0)  # no rules: step 5 always asks
    their_line = line_for(world, nobody)
    put_policy(world, nobody, their_line["id"], auto_accept_up_to=10_000)
    assert nobody.pay(shop["id"], 100)[0] == "pending_approval"


def test_a_frozen_owner_gets_no_conversion(world: World, ctx: Context) -> None:
    shop, car, line = offering(world, auto_accept_up_to=10_000)
    assert world.api.post("/v1/owners/me/freeze", headers=car.owner).status_code == 200
    assert car.pay(shop["id"], 1_000) == ("declined", "owner_frozen")
    assert plans_of(ctx, car.id) == []


def test_two_devices_in_one_batch_share_the_line(world: World, ctx: Context) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=0, rules=OPEN)
    van = sibling(world, car, "van", rules=OPEN)
    line = line_for(world, car, credit_limit=TOTALS[3] + TOTALS[3] - 1)  # one plan, not two
    put_policy(world, car, line["id"], counts=[3], auto_accept_up_to=10_000)
    orders = [
        (d.topic, d.sign(d.order(type="pay", payee=shop["id"], amount=10_000, currency="EUR")))
        for d in (car, van)
    ]
    results = {m["device_id"]: m for m in world.deliver(orders) if "status" in m}
    assert results[car.id]["status"] == "approved"
    assert results[car.id]["funded_by"][0]["plan_id"] == plans_of(ctx, car.id)[0]["id"]
    assert (results[van.id]["status"], results[van.id]["reason"]) == (
        "declined",
        "insufficient_funds",
    )
    assert sources_by_id(world, car)[line["id"]]["balance"] == -TOTALS[3]


def test_pays_earlier_in_the_batch_count_against_keep_at_least(world: World) -> None:
    shop, car, line = offering(world, top_up=5_000, min_amount=1, keep_at_least=3_000)
    amounts = [1_000, 1_000, 1]  # leaves 4,000, then 3,000 (kept exactly), then 2,999
    orders = [
        (car.topic, car.sign(car.order(type="pay", payee=shop["id"], amount=a, currency="EUR")))
        for a in amounts
    ]
    results = [m for m in world.deliver(orders) if "status" in m]
    assert [r["status"] for r in results] == ["approved", "approved", "pending_approval"]
    assert car.wallet()["balance"] == 3_000
