"""Contract section 8 where it meets sections 2, 5 and 7: who may call the funding endpoints,
what a body may hold, mandates and counts with instalments, and automatic top-ups measured on
`available` (SQLite and PostgreSQL, `kym ledger check`'s invariants after each test)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.context import Context
from gateway.funding.collect import collect_due
from gateway.orders.approvals import expire_approvals
from tests.events.helpers import events_of
from tests.funding.offer_setup import (
    OPEN,
    POLICY_URL,
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
from tests.support.world import Clock, World, bearer

AUTO = {"currency": "EUR", "auto_top_up": {"below": 1_000, "to": 5_000}}


@pytest.fixture
def ctx(ctx: Context) -> Context:
    """The funding tests' context, with webhooks allowed to name loopback (as
    `kym serve --webhook-allow-private`): the webhook test only subscribes."""
    return replace(ctx, settings=ctx.settings.model_copy(update={"webhook_allow_private": True}))


pytestmark = pytest.mark.usefixtures("books_balance")


def test_only_owners_call_the_funding_endpoints(world: World) -> None:
    car = world.device("car")
    account = source(world, car.owner)
    shop = bearer(world.merchant()["api_key"])
    source_body = {"name": "x", "kind": "balance", "currency": "EUR"}
    top_up = {"amount": 1, "currency": "EUR", "idempotency_key": "k"}
    policy = {"source": account["id"], "min_amount": 1, "max_amount": 2, "counts": [2]}
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("post", "/v1/owners/me/funding-sources", source_body),
        ("get", "/v1/owners/me/funding-sources", None),
        ("post", f"/v1/funding-sources/{account['id']}/top-ups", top_up),
        ("put", POLICY_URL, {**policy, "interval_days": 7}),
        ("get", POLICY_URL, None),
        ("delete", POLICY_URL, None),
        ("get", "/v1/owners/me/instalment-plans", None),
        ("post", "/v1/instalment-plans/plan_x/repay", None),
    ]
    for method, url, body in calls:
        kwargs: dict[str, Any] = {"json": body} if body is not None else {}
        for headers in (shop, car.integrator):
            response = world.api.request(method, url, headers=headers, **kwargs)
            assert response.status_code == 403, (method, url, response.text)
        anonymous = world.api.request(method, url, **kwargs)
        assert anonymous.status_code == 401, (method, url)
    assert sources_by_id(world, car)[account["id"]]["balance"] == 0


def test_a_top_up_body_that_is_not_an_amount_currency_and_key_is_422(world: World) -> None:
    car = world.device("car")
    account = source(world, car.owner)
    good = {"amount": 10, "currency": "EUR", "idempotency_key": "k"}
    for change in ({"amount": 0}, {"amount": -1}, {"amount": 1.5}, {"idempotency_key": ""}):
        response = world.api.post(
            f"/v1/funding-sources/{account['id']}/top-ups",
            headers=car.owner,
            json={**good, **change},
        )
        assert response.status_code == 422, (change, response.text)
    for missing in ("amount", "currency", "idempotency_key"):
        body = {k: v for k, v in good.items() if k != missing}
        response = world.api.post(
            f"/v1/funding-sources/{account['id']}/top-ups", headers=car.owner, json=body
        )
        assert response.status_code == 422, missing
    assert sources_by_id(world, car)[account["id"]]["balance"] == 0


def test_a_policy_with_an_unknown_category_is_422(world: World) -> None:
    car = world.device("car")
    line = line_for(world, car)
    body = {
        "source": line["id"],
        "min_amount": 1,
        "max_amount": 2,
        "counts": [2],
        "interval_days": 7,
        "categories": ["spaceships"],
    }
    assert world.api.put(POLICY_URL, headers=car.owner, json=body).status_code == 422
    assert world.api.get(POLICY_URL, headers=car.owner).status_code == 404


def test_automatic_top_ups_bring_available_not_the_balance_up_to_to(world: World) -> None:
    pump = world.device("pump", category="fuel", top_up=0, rules={"currency": "EUR"})
    car = world.device("car", top_up=3_000, rules=AUTO)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 10_000, "a")
    held = pay(car, pump.id, 2_500, kind="hold")  # available 3,000 - 2,500 = 500 < 1,000
    assert held["funded_by"] == [{"source": account["id"], "amount": 4_500}]
    paid = pay(car, pump.id, 100)  # available 5,000 - 100 stays above `below`
    assert paid["funded_by"] == []
    assert car.wallet() == {"currency": "EUR", "balance": 7_400, "available": 4_900}


def test_another_devices_wallet_does_not_count_towards_keep_at_least(world: World) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=2_000, rules=OPEN)
    van = sibling(world, car, "van", rules=OPEN)
    topped = world.api.post(
        f"/v1/devices/{van.id}/wallet/top-ups",
        headers=van.owner,
        json={"amount": 50_000, "currency": "EUR", "idempotency_key": "v"},
    )
    assert topped.status_code == 201
    line = line_for(world, car)
    put_policy(world, car, line["id"], min_amount=1, keep_at_least=1_000)
    assert pay(car, shop["id"], 1_001)["status"] == "pending_approval"  # 999 < 1,000


def test_a_mandate_lets_an_agreed_in_advance_pay_through_without_rules(
    world: World, ctx: Context
) -> None:
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=0)  # no rules: only the mandate spares step 5
    mandate = world.api.post(
        f"/v1/devices/{car.id}/mandates",
        headers=car.owner,
        json={"payee": shop["id"], "max_amount": 20_000},
    )
    assert mandate.status_code == 201, mandate.text
    line = line_for(world, car)
    put_policy(world, car, line["id"], counts=[3], auto_accept_up_to=10_000)
    order = car.order(type="pay", payee=shop["id"], amount=10_000, currency="EUR")
    paid = car.send(order)
    assert paid["status"] == "approved", paid
    [plan] = plans_of(ctx, car.id)
    assert paid["funded_by"] == [{"source": line["id"], "amount": 10_000, "plan_id": plan["id"]}]
    again = car.send(order)
    assert again["duplicate"] is True and again["funded_by"] == paid["funded_by"]
    offered = pay(car, shop["id"], 10_001)  # above auto_accept_up_to: the mandate does not
    assert offered["status"] == "pending_approval"  # convert it behind the owner's back
    assert approval(world, car, offered["approval_id"])["why"] == "instalment_offer"


def test_an_agreed_in_advance_pay_counts_against_max_payments(world: World) -> None:
    shop = world.merchant("maintenance")
    rules = {**OPEN, "max_payments": [{"period": "day", "count": 1}]}
    car = world.device("car", top_up=0, rules=rules)
    line = line_for(world, car)
    put_policy(world, car, line["id"], counts=[3], auto_accept_up_to=10_000)
    assert pay(car, shop["id"], 10_000)["status"] == "approved"
    assert car.pay(shop["id"], 100) == ("declined", "payment_count_exceeded")
    assert sources_by_id(world, car)[line["id"]]["balance"] == -TOTALS[3]


def test_a_pay_the_wallet_covers_below_keep_at_least_is_agreed_in_advance(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(world, top_up=5_000, keep_at_least=3_000, auto_accept_up_to=10_000)
    paid = pay(car, shop["id"], 2_001)  # 5,000 - 2,001 < 3,000: converted as agreed
    assert paid["status"] == "approved" and paid["funded_by"][0]["plan_id"]
    assert car.wallet()["balance"] == 5_000  # the line paid, the wallet kept
    assert len(plans_of(ctx, car.id)) == 1
    plain = pay(car, shop["id"], 2_000)  # 5,000 - 2,000 = 3,000: the wallet pays
    assert (plain["status"], plain["funded_by"]) == ("approved", [])


def test_above_the_policys_max_amount_nothing_is_agreed_in_advance(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(world, max_amount=5_000, auto_accept_up_to=10_000)
    assert car.pay(shop["id"], 6_000) == ("declined", "insufficient_funds")
    assert plans_of(ctx, car.id) == []


def test_a_credit_lines_balance_and_available_follow_what_is_owed(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(
        world,
        line={"credit_limit": 50_000, "apr_bps": 0},
        counts=[2],
        interval_days=7,
        auto_accept_up_to=10_000,
    )
    paid = pay(car, shop["id"], 10_000)
    shown = sources_by_id(world, car)[line["id"]]
    assert (shown["balance"], shown["available"]) == (-10_000, 40_000)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 5_000, "a")
    assert isinstance(ctx.clock, Clock) and paid["status"] == "approved"
    ctx.clock.advance(7 * 86_400)
    assert collect_due(ctx) == 1
    shown = sources_by_id(world, car)[line["id"]]
    assert (shown["balance"], shown["available"]) == (-5_000, 45_000)


def test_an_offer_past_its_expiry_cannot_be_approved_and_expires_without_a_plan(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(world, rules={**OPEN, "approval_ttl_seconds": 60})
    order = car.order(type="pay", payee=shop["id"], amount=10_000, currency="EUR")
    waiting = car.send(order)
    assert isinstance(ctx.clock, Clock)
    ctx.clock.advance(61)
    late = world.api.post(
        f"/v1/approvals/{waiting['approval_id']}",
        headers=car.owner,
        json={"decision": "approve", "instalments": 3},
    )
    assert late.status_code == 409, late.text
    assert expire_approvals(ctx) == 1
    final = car.send(order)
    assert (final["status"], final["reason"]) == ("declined", "approval_expired")
    assert approval(world, car, waiting["approval_id"])["status"] == "expired"
    owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    [expired] = [e for e in events_of(ctx, owner_id) if e["type"] == "approval.expired"]
    assert expired["data"]["why"] == "instalment_offer" and expired["data"]["offer"]["options"]
    assert plans_of(ctx, car.id) == [] and sources_by_id(world, car)[line["id"]]["balance"] == 0


def test_instalment_payments_tell_the_owner_and_the_payee_like_any_other(
    world: World, ctx: Context
) -> None:
    shop, car, line = offering(world, counts=[3], auto_accept_up_to=10_000)
    agreed = pay(car, shop["id"], 10_000)  # agreed in advance
    waiting = pay(car, shop["id"], 20_000)  # an offer, approved with instalments
    decided = world.api.post(
        f"/v1/approvals/{waiting['approval_id']}",
        headers=car.owner,
        json={"decision": "approve", "instalments": 3},
    )
    assert decided.status_code == 200, decided.text
    payments = {p["payment_id"] for p in plans_of(ctx, car.id)}
    assert agreed["payment_id"] in payments and len(payments) == 2
    owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    mine = events_of(ctx, owner_id)
    approved = [e["data"] for e in mine if e["type"] == "payment.approved"]
    assert {d["payment_id"] for d in approved} == payments
    assert all(d["reason"] is None and d["payee"] == shop["id"] for d in approved)
    opened = [e["data"] for e in mine if e["type"] == "instalment.plan_opened"]
    assert {d["payment_id"] for d in opened} == payments
    received = [e["data"] for e in events_of(ctx, shop["id"]) if e["type"] == "payment.received"]
    assert {d["payment_id"] for d in received} == payments


def test_a_deleted_policy_makes_no_more_offers(world: World) -> None:
    shop, car, line = offering(world)
    assert car.pay(shop["id"], 10_000)[0] == "pending_approval"
    assert world.api.delete(POLICY_URL, headers=car.owner).status_code == 204
    assert car.pay(shop["id"], 10_000) == ("declined", "insufficient_funds")


def test_owners_subscribe_to_the_instalment_events_and_merchants_cannot(world: World) -> None:
    car = world.device("car")
    types = ["instalment.plan_opened", "instalment.paid", "instalment.overdue"]
    body = {"url": "http://127.0.0.1:9/hook", "events": types}
    made = world.api.post("/v1/webhooks", headers=car.owner, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["events"] == types
    shop = bearer(world.merchant()["api_key"])
    for event_type in types:
        one = {**body, "events": [event_type]}
        refused = world.api.post("/v1/webhooks", headers=shop, json=one)
        assert refused.status_code == 422, event_type
