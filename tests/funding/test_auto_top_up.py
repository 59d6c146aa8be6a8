"""Contract section 8: automatic top-ups decided through the service layer on a real database
(SQLite and PostgreSQL), with `kym ledger check`'s invariants after every test."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.context import Context
from gateway.funding.check import check_sources
from gateway.orders import decide
from tests.support.funding import fund, sibling, source
from tests.support.world import Dev, World
from wallet import store as wallet_store
from wallet.check import check
from wallet.errors import InsufficientFunds

AUTO = {"currency": "EUR", "auto_top_up": {"below": 1_000, "to": 5_000}}


@pytest.fixture(autouse=True)
def books_balance(ctx: Context) -> Any:
    yield
    with ctx.db.read() as conn:
        assert check(conn) == [] and check_sources(conn) == []


def sources_of(world: World, car: Dev) -> dict[str, dict[str, Any]]:
    items = world.api.get("/v1/owners/me/funding-sources", headers=car.owner).json()["items"]
    return {s["name"]: s for s in items}


def pay(car: Dev, payee: str, amount: int, kind: str = "pay") -> dict[str, Any]:
    return car.send(car.order(type=kind, payee=payee, amount=amount, currency="EUR"))


def test_a_short_wallet_is_topped_up_to_to_from_sources_in_priority_order(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=300, rules=AUTO)
    first = source(world, car.owner, name="first", priority=10, floor=1_000)
    second = source(world, car.owner, name="second", priority=20)
    assert fund(world, car.owner, first["id"], 3_500, "a").status_code == 201  # 2,500 above
    assert fund(world, car.owner, second["id"], 9_000, "b").status_code == 201
    order = car.order(type="pay", payee=shop["id"], amount=1_000, currency="EUR")
    result = car.send(order)
    assert (result["status"], result["reason"]) == ("approved", None)
    assert result["funded_by"] == [
        {"source": first["id"], "amount": 2_500},  # down to its floor exactly
        {"source": second["id"], "amount": 3_200},  # the rest, up to `to` after the payment
    ]
    assert car.wallet()["available"] == 5_000
    now = sources_of(world, car)
    assert (now["first"]["balance"], now["first"]["available"]) == (1_000, 0)
    assert now["second"]["balance"] == 5_800
    again = car.send(order)  # a duplicate carries it too
    assert again["duplicate"] is True and again["funded_by"] == result["funded_by"]
    plain = pay(car, shop["id"], 100)
    assert plain["status"] == "approved" and plain["funded_by"] == []  # 4,900 left: no top-up


def test_sources_that_cannot_cover_decline_and_move_nothing(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=300, rules=AUTO)
    account = source(world, car.owner, floor=500)
    fund(world, car.owner, account["id"], 1_199, "a")  # 699 above the floor
    result = pay(car, shop["id"], 1_000)
    assert (result["status"], result["reason"]) == ("declined", "insufficient_funds")
    assert sources_of(world, car)["everyday"]["balance"] == 1_199
    assert car.wallet()["balance"] == 300
    fund(world, car.owner, account["id"], 1, "b")  # now exactly enough: 300 + 700
    covered = pay(car, shop["id"], 1_000)
    assert covered["status"] == "approved"
    assert covered["funded_by"] == [{"source": account["id"], "amount": 700}]
    assert car.wallet()["balance"] == 0 and sources_of(world, car)["everyday"]["available"] == 0


def test_a_wallet_that_refuses_the_payment_takes_its_top_up_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=300, rules=AUTO)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 9_000, "a")

    def refusing(*_args: Any) -> None:  # as when another transaction took the money meanwhile
        raise InsufficientFunds("the wallet's available balance changed")

    monkeypatch.setattr(decide, "placeable_together", lambda _checked: False)  # placed at once
    monkeypatch.setattr(wallet_store, "place", refusing)
    result = pay(car, shop["id"], 1_000)
    monkeypatch.undo()
    assert (result["status"], result["reason"]) == ("declined", "insufficient_funds")
    assert sources_of(world, car)["everyday"]["balance"] == 9_000  # the draw went back too
    assert car.wallet()["balance"] == 300
    covered = pay(car, shop["id"], 1_000)
    assert covered["funded_by"] == [{"source": account["id"], "amount": 5_700}]


def test_without_auto_top_up_or_in_another_currency_sources_are_not_drawn(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=300, rules={"currency": "EUR"})
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 9_000, "a")
    assert pay(car, shop["id"], 1_000)["reason"] == "insufficient_funds"
    dollars = source(world, car.owner, name="usd", currency="USD", priority=1)
    car.put_rules(AUTO)
    result = pay(car, shop["id"], 1_000)
    assert [f["source"] for f in result["funded_by"]] == [account["id"]]
    assert dollars["id"] not in str(result)


def test_a_voided_hold_leaves_its_top_up_in_the_wallet_and_limits_ignore_it(
    world: World,
) -> None:
    pump = world.device("pump", category="fuel", top_up=0, rules={"currency": "EUR"})
    rules = {**AUTO, "limits": [{"period": "day", "amount": 1_000}]}
    car = world.device("car", top_up=0, rules=rules)
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 10_000, "a")
    held = pay(car, pump.id, 1_000, kind="hold")
    assert held["status"] == "approved" and held["funded_by"][0]["amount"] == 6_000
    void = pump.send(pump.order(type="void", payment_id=held["payment_id"]))
    assert void["status"] == "voided"
    assert car.wallet() == {"currency": "EUR", "balance": 6_000, "available": 6_000}
    assert sources_of(world, car)["everyday"]["balance"] == 4_000
    assert pay(car, pump.id, 1_000)["status"] == "approved"  # the top-up did not count


def test_rules_holding_only_auto_top_up_are_no_rules_for_consent(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules={"auto_top_up": {"below": 0, "to": 10}})
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 5_000, "a")
    waiting = pay(car, shop["id"], 100)
    assert waiting["status"] == "pending_approval"
    assert sources_of(world, car)["everyday"]["balance"] == 5_000  # nothing moved yet
    decided = world.api.post(
        f"/v1/approvals/{waiting['approval_id']}",
        headers=car.owner,
        json={"decision": "approve"},
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"]["status"] == "approved"
    assert car.wallet()["available"] == 10  # topped up with the approval, to `to`
    assert sources_of(world, car)["everyday"]["balance"] == 4_890
    for bad in ({"below": 5, "to": 5}, {"below": -1, "to": 5}, {"below": 1}, {"to": 5}):
        response = world.api.put(
            f"/v1/devices/{car.id}/rules", headers=car.owner, json={"auto_top_up": bad}
        )
        assert response.status_code == 422, bad
    shown = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert shown["auto_top_up"] == {"below": 0, "to": 10}


def test_two_devices_of_one_owner_in_one_batch_share_the_source(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules=AUTO)
    van = sibling(world, car, "van", rules=AUTO)
    account = source(world, car.owner, floor=100)
    fund(world, car.owner, account["id"], 8_100, "a")  # 8,000 above the floor
    orders = [
        (d.topic, d.sign(d.order(type="pay", payee=shop["id"], amount=3_000, currency="EUR")))
        for d in (car, van)
    ]
    out = world.deliver(orders)
    results = {m["device_id"]: m for m in out if "status" in m}
    assert results[car.id]["funded_by"] == [{"source": account["id"], "amount": 8_000}]
    assert results[van.id]["reason"] == "insufficient_funds"
    assert sources_of(world, car)["everyday"]["balance"] == 100
