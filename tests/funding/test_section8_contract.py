"""Contract section 8, sentence by sentence: funding sources and automatic top-ups through the
HTTP API and orders decided as a worker decides them, on a real database (SQLite and
PostgreSQL), with `kym ledger check`'s invariants after each test. What other files in
tests/funding already pin is not repeated here; the instalment sentences are in
test_section8_instalments.py."""

from __future__ import annotations

from typing import Any

import pytest

from devices import wire
from devices.contract import results_topic
from gateway.context import Context
from gateway.orders import store as order_store
from gateway.orders.holds import expire_holds
from tests.support.funding import fund, source
from tests.support.openssl import make_openssl_csr
from tests.support.world import ADMIN, Clock, Dev, World

AUTO = {"currency": "EUR", "auto_top_up": {"below": 1_000, "to": 5_000}}
SOURCES = "/v1/owners/me/funding-sources"


pytestmark = pytest.mark.usefixtures("books_balance")


def listed(world: World, dev: Dev) -> dict[str, dict[str, Any]]:
    items = world.api.get(SOURCES, headers=dev.owner).json()["items"]
    return {s["id"]: s for s in items}


def pay(dev: Dev, payee: str, amount: int, kind: str = "pay", **extra: Any) -> dict[str, Any]:
    return dev.send(dev.order(type=kind, payee=payee, amount=amount, currency="EUR", **extra))


def published_results(ctx: Context, dev: Dev, order_id: str) -> list[dict[str, Any]]:
    """Every result for this order put in the outbox for the device, oldest first."""
    table = order_store.outbox
    query = table.select().where(table.c.topic == results_topic(dev.id)).order_by(table.c.id)
    with ctx.db.read() as conn:
        payloads = [wire.decode(row.jws)[1] for row in conn.execute(query)]
    return [p for p in payloads if p.get("order_id") == order_id and "status" in p]


def test_a_top_up_answers_the_source_exactly_as_listed_right_after_it(world: World) -> None:
    car = world.device("car")
    account = source(world, car.owner, floor=100)
    answer = fund(world, car.owner, account["id"], 250, "k")
    assert answer.status_code == 201, answer.text
    assert answer.json() == listed(world, car)[account["id"]]
    assert (answer.json()["balance"], answer.json()["available"]) == (250, 150)
    again = fund(world, car.owner, account["id"], 250, "k")  # the same key and body
    assert (again.status_code, again.json()) == (201, answer.json())
    assert listed(world, car)[account["id"]]["balance"] == 250  # moved once


@pytest.mark.parametrize("code", ["XXX", "XTS", "XAU", "XAG", "BOV", "XDR", "USN"])
def test_fund_precious_metal_test_and_xxx_codes_are_currency_not_allowed(
    world: World, code: str
) -> None:
    car = world.device("car")
    for body in (
        {"name": "x", "kind": "balance", "currency": code},
        {"name": "x", "kind": "credit_line", "currency": code, "credit_limit": 100},
    ):
        refused = world.api.post(SOURCES, headers=car.owner, json=body)
        assert refused.status_code == 422, (code, refused.text)
        assert refused.json()["error"]["code"] == "currency_not_allowed"
    merchant = {"name": "shop", "category": "retail", "currency": code}
    refused = world.api.post("/v1/merchants", json=merchant, headers=ADMIN)
    assert refused.json()["error"]["code"] == "currency_not_allowed", code
    owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    device = {"owner_id": owner_id, "kind": "car", "manufacturer": "A", "model": "B"}
    _key, csr = make_openssl_csr(world.tmp, f"iso-{code}")
    device |= {"serial_number": f"S-{code}", "csr": csr, "currency": code}
    refused = world.api.post("/v1/devices", json=device, headers=car.integrator)
    assert refused.status_code == 422, (code, refused.text)
    assert refused.json()["error"]["code"] == "currency_not_allowed"
    assert world.api.get(SOURCES, headers=car.owner).json()["items"] == []


def test_sources_of_equal_priority_are_drawn_in_the_order_they_were_created(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules=AUTO)
    older = source(world, car.owner, name="zz-older", priority=50)
    newer = source(world, car.owner, name="aa-newer", priority=50)
    fund(world, car.owner, newer["id"], 9_000, "n")
    fund(world, car.owner, older["id"], 3_000, "o")
    result = pay(car, shop["id"], 1_000)  # 6,000 to move: 3,000 from the older first
    assert result["funded_by"] == [
        {"source": older["id"], "amount": 3_000},
        {"source": newer["id"], "amount": 3_000},
    ]


def test_a_wallet_that_covers_but_would_fall_below_below_is_topped_up_to_to(
    world: World,
) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=5_000, rules=AUTO)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 20_000, "a")
    kept = pay(car, shop["id"], 4_000)  # leaves 1,000: not below `below`
    assert (kept["status"], kept["funded_by"]) == ("approved", [])
    topped = pay(car, shop["id"], 1)  # would leave 999: brought up to 5,000 after it
    assert topped["funded_by"] == [{"source": account["id"], "amount": 4_001}]
    assert car.wallet() == {"currency": "EUR", "balance": 5_000, "available": 5_000}
    assert listed(world, car)[account["id"]]["balance"] == 15_999


def test_credit_lines_are_never_drawn_for_automatic_top_ups(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules=AUTO)
    line = source(world, car.owner, kind="credit_line", credit_limit=100_000, priority=1)
    assert car.pay(shop["id"], 500) == ("declined", "insufficient_funds")
    assert listed(world, car)[line["id"]]["balance"] == 0


def test_an_expired_hold_funded_by_a_top_up_leaves_the_money_in_the_wallet(
    world: World, ctx: Context
) -> None:
    pump = world.device("pump", category="fuel", top_up=0, rules={"currency": "EUR"})
    car = world.device("car", top_up=0, rules=AUTO)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 10_000, "a")
    held = pay(car, pump.id, 1_000, kind="hold", expires_in=60)
    assert held["funded_by"] == [{"source": account["id"], "amount": 6_000}]
    assert isinstance(ctx.clock, Clock)
    ctx.clock.advance(61)
    assert expire_holds(ctx) == 1
    assert car.wallet() == {"currency": "EUR", "balance": 6_000, "available": 6_000}
    assert listed(world, car)[account["id"]]["balance"] == 4_000
    assert pump.wallet()["balance"] == 0


def test_top_ups_never_count_against_the_devices_limits(world: World) -> None:
    shop = world.merchant()
    rules = {**AUTO, "limits": [{"period": "day", "amount": 1_000}]}
    car = world.device("car", top_up=0, rules=rules)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 10_000, "a")
    paid = pay(car, shop["id"], 1_000)  # 6,000 moved in, 1,000 spent
    assert paid["status"] == "approved" and paid["funded_by"][0]["amount"] == 6_000
    spent = world.api.get(f"/v1/devices/{car.id}/spending", headers=car.owner).json()
    assert spent["limits"][0]["spent"] == 1_000
    assert car.pay(shop["id"], 1) == ("declined", "period_limit_exceeded")


def test_every_approved_result_after_an_approval_carries_funded_by(
    world: World, ctx: Context
) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=200, rules={"auto_top_up": {"below": 0, "to": 100}})
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 5_000, "a")
    orders = [car.order(type="pay", payee=shop["id"], amount=a, currency="EUR") for a in (150, 400)]
    for order in orders:  # no rules for consent: each waits for the owner
        waiting = car.send(order)
        decided = world.api.post(
            f"/v1/approvals/{waiting['approval_id']}",
            headers=car.owner,
            json={"decision": "approve"},
        )
        assert decided.json()["result"]["status"] == "approved", decided.text
    first, second = (published_results(ctx, car, o["order_id"]) for o in orders)
    assert [r["status"] for r in first] == ["pending_approval", "approved"]
    assert first[-1]["funded_by"] == []  # the wallet alone paid (200 - 150 = 50)
    assert second[-1]["funded_by"] == [{"source": account["id"], "amount": 450}]  # 50 -> 100
    assert "funded_by" not in first[0]  # only approved results carry it
    for order, final in zip(orders, (first[-1], second[-1]), strict=True):
        again = car.send(order)
        assert again["duplicate"] is True and again["funded_by"] == final["funded_by"]


def test_a_refund_sent_by_a_payee_device_never_draws_on_its_owners_sources(
    world: World,
) -> None:
    car = world.device("car", top_up=1_000, rules={"currency": "EUR"})
    pump = world.device("pump", category="fuel", top_up=0, rules={"currency": "EUR"})
    shop = world.merchant()
    paid = pay(car, pump.id, 1_000)
    assert pay(pump, shop["id"], 900)["status"] == "approved"  # the pump keeps 100
    pump.put_rules(AUTO)
    account = source(world, pump.owner)
    fund(world, pump.owner, account["id"], 10_000, "a")
    refund = pump.send(pump.order(type="refund", payment_id=paid["payment_id"], amount=1_000))
    assert (refund["status"], refund["reason"]) == ("declined", "insufficient_funds")
    assert "funded_by" not in refund
    assert listed(world, pump)[account["id"]]["balance"] == 10_000
    assert pump.wallet()["balance"] == 100


def test_a_frozen_owner_gets_no_automatic_top_up_but_captures_go_on(world: World) -> None:
    pump = world.device("pump", category="fuel", top_up=0, rules={"currency": "EUR"})
    car = world.device("car", top_up=0, rules=AUTO)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 10_000, "a")
    held = pay(car, pump.id, 1_000, kind="hold")
    assert held["funded_by"][0]["amount"] == 6_000
    assert world.api.post("/v1/owners/me/freeze", headers=car.owner).json() == {"frozen": True}
    assert car.pay(pump.id, 100) == ("declined", "owner_frozen")
    assert listed(world, car)[account["id"]]["balance"] == 4_000  # nothing drawn
    capture = pump.send(pump.order(type="capture", payment_id=held["payment_id"], amount=800))
    assert capture["status"] == "captured"
    assert car.wallet() == {"currency": "EUR", "balance": 5_200, "available": 5_200}


def test_a_credit_line_top_up_in_another_currency_is_422_before_409(world: World) -> None:
    car = world.device("car")
    line = source(world, car.owner, kind="credit_line", credit_limit=1_000)
    body = {"amount": 5, "currency": "USD", "idempotency_key": "k"}
    wrong = world.api.post(
        f"/v1/funding-sources/{line['id']}/top-ups", headers=car.owner, json=body
    )
    assert wrong.status_code == 422, wrong.text  # section 2: 422 comes before 409
    assert wrong.json()["error"]["code"] == "currency_not_allowed"
    right = fund(world, car.owner, line["id"], 5, "k")
    assert right.status_code == 409 and right.json()["error"]["code"] == "not_a_balance_source"
