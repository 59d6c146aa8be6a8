"""Which events each decision records, for whom, with what data; and none for a rejected
message, a replay, or a change that rolled back."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.events.thresholds import sent_markers_query
from gateway.orders.approvals import expire_approvals
from gateway.orders.holds import expire_holds
from tests.events.helpers import events_of, types_of
from tests.events.plans import plan_of
from tests.funding.offer_setup import line_for, pay, put_policy
from tests.support.funding import fund, source
from tests.support.world import Clock, Dev, World, bearer


def owner_of(world: World, dev: Dev) -> str:
    response = world.api.get(f"/v1/devices/{dev.id}", headers=dev.owner)
    return str(response.json()["owner_id"])


def last(ctx: Context, recipient: str, event_type: str) -> dict[str, Any]:
    found = [e for e in events_of(ctx, recipient) if e["type"] == event_type]
    assert found, (event_type, types_of(ctx, recipient))
    return found[-1]


def test_a_declined_pay_and_its_reason(world: World, ctx: Context) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR", "max_amount": 100})
    assert car.pay(shop["id"], 500) == ("declined", "amount_over_limit")
    event = last(ctx, owner_of(world, car), "payment.declined")
    assert event["data"]["reason"] == "amount_over_limit" and event["data"]["payment_id"] is None
    assert event["data"]["payee"] == shop["id"] and event["data"]["amount"] == 500
    assert types_of(ctx, shop["id"]) == []  # the merchant hears of approved payments only
    assert set(event) == {"id", "type", "created_at", "data"}


def test_rejected_messages_and_replays_record_nothing(world: World, ctx: Context) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    owner = owner_of(world, car)
    before = len(events_of(ctx, owner))
    assert car.send(b"not a jws")["status"] == "rejected"
    order = car.order(type="pay", payee=shop["id"], amount=100, currency="EUR")
    assert car.send(order)["status"] == "approved"
    assert car.send(order).get("duplicate") is True
    assert types_of(ctx, owner)[before:] == ["payment.approved"]
    assert types_of(ctx, shop["id"]) == ["payment.received"]


def test_approval_pending_then_decided(world: World, ctx: Context, api: TestClient) -> None:
    shop = world.merchant()
    car = world.device("car")  # no rules: every payment waits for its owner
    owner = owner_of(world, car)
    status, _ = car.pay(shop["id"], 900, description="milk")
    assert status == "pending_approval"
    pending = last(ctx, owner, "approval.pending")["data"]
    assert pending["kind"] == "pay" and pending["why"] == "no_rules"
    assert pending["description"] == "milk" and pending["payee_name"]
    decided = api.post(
        f"/v1/approvals/{pending['id']}", json={"decision": "approve"}, headers=car.owner
    )
    assert decided.status_code == 200, decided.text
    data = last(ctx, owner, "approval.decided")["data"]
    assert data["id"] == pending["id"] and data["status"] == "approved"
    assert data["result"] == {"status": "approved", "reason": None}
    approved = last(ctx, owner, "payment.approved")["data"]
    assert approved["order_id"] == pending["order_id"] and approved["payment_id"]
    assert last(ctx, shop["id"], "payment.received")["data"]["payment_id"] == approved["payment_id"]
    again = api.post(
        f"/v1/approvals/{pending['id']}", json={"decision": "decline"}, headers=car.owner
    )
    assert again.status_code == 409  # rolled back: no second decision event
    assert types_of(ctx, owner).count("approval.decided") == 1


def test_approval_expired_declines_the_payment(world: World, ctx: Context, clock: Clock) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR", "approval_above": 10})
    owner = owner_of(world, car)
    assert car.pay(shop["id"], 900)[0] == "pending_approval"
    assert last(ctx, owner, "approval.pending")["data"]["why"] == "approval_above"
    clock.advance(301)
    assert expire_approvals(ctx) == 1
    expired = last(ctx, owner, "approval.expired")["data"]
    assert expired["status"] == "expired"
    assert expired["result"] == {"status": "declined", "reason": "approval_expired"}
    declined = last(ctx, owner, "payment.declined")["data"]
    assert declined["reason"] == "approval_expired" and declined["amount"] == 900


def test_a_hold_placed_captured_and_refunded(world: World, ctx: Context) -> None:
    pump = world.device("pump", category="fuel", top_up=5000)
    car = world.device("car", rules={"currency": "EUR"})
    car_owner, pump_owner = owner_of(world, car), owner_of(world, pump)
    hold = car.send(car.order(type="hold", payee=pump.id, amount=8000, currency="EUR"))
    assert hold["status"] == "approved"
    placed = last(ctx, pump_owner, "hold.placed")["data"]
    assert placed["payer_device_id"] == car.id and placed["amount"] == 8000
    pay_id = hold["payment_id"]
    captured = pump.send(pump.order(type="capture", payment_id=pay_id, amount=6000))
    assert captured["status"] == "captured"
    for owner in (car_owner, pump_owner):
        data = last(ctx, owner, "hold.captured")["data"]
        assert data["amount"] == 6000 and data["captured_amount"] == 6000
        assert data["payee"] == pump.id and data["device_id"] == car.id
    refund = pump.send(pump.order(type="refund", payment_id=pay_id, amount=1000))
    assert refund["status"] == "refunded"
    refunded = last(ctx, car_owner, "payment.refunded")["data"]
    assert refunded["amount"] == 1000 and refunded["refunded_amount"] == 1000


def test_merchant_void_and_expiry(
    world: World, ctx: Context, api: TestClient, clock: Clock
) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    owner = owner_of(world, car)
    first = car.send(car.order(type="hold", payee=shop["id"], amount=300, currency="EUR"))
    assert last(ctx, shop["id"], "hold.placed")["data"]["payment_id"] == first["payment_id"]
    voided = api.post(
        f"/v1/merchants/me/payments/{first['payment_id']}/void",
        json={"idempotency_key": "v1"},
        headers=bearer(shop["api_key"]),
    )
    assert voided.status_code == 200, voided.text
    assert last(ctx, owner, "hold.voided")["data"]["payment_id"] == first["payment_id"]
    assert last(ctx, shop["id"], "hold.voided")["data"]["payer_device_id"] == car.id
    order = car.order(type="hold", payee=shop["id"], amount=200, currency="EUR", expires_in=60)
    second = car.send(order)
    clock.advance(61)
    assert expire_holds(ctx) >= 1
    for recipient in (owner, shop["id"]):
        assert last(ctx, recipient, "hold.expired")["data"]["payment_id"] == second["payment_id"]


def test_device_status_changes(world: World, ctx: Context) -> None:
    car = world.device("car", approve=False, top_up=0)
    owner = owner_of(world, car)
    assert car.act("approve").status_code == 200
    assert car.act("approve").status_code == 200  # already active: no change, no event
    assert car.act("suspend").status_code == 200
    changes = [e["data"] for e in events_of(ctx, owner) if e["type"] == "device.status_changed"]
    assert [(c["from"], c["to"]) for c in changes] == [
        ("pending", "active"),
        ("active", "suspended"),
    ]


def test_a_limit_nearly_reached_once_per_period_and_amount(world: World, ctx: Context) -> None:
    shop = world.merchant()
    rules = {"currency": "EUR", "limits": [{"period": "day", "amount": 1000}]}
    car = world.device("car", rules=rules)
    owner = owner_of(world, car)
    assert car.pay(shop["id"], 700) == ("approved", None)  # 70 %: not yet
    assert types_of(ctx, owner).count("limit.nearly_reached") == 0
    assert car.pay(shop["id"], 100) == ("approved", None)  # 80 %
    assert car.pay(shop["id"], 100) == ("approved", None)  # 90 %: already said
    nearly = [e["data"] for e in events_of(ctx, owner) if e["type"] == "limit.nearly_reached"]
    assert nearly == [{"device_id": car.id, "period": "day", "spent": 800, "amount": 1000}]
    car.put_rules({"currency": "EUR", "limits": [{"period": "day", "amount": 1100}]})
    assert car.pay(shop["id"], 10) == ("approved", None)  # a changed amount starts afresh
    nearly = [e["data"] for e in events_of(ctx, owner) if e["type"] == "limit.nearly_reached"]
    assert nearly[-1] == {"device_id": car.id, "period": "day", "spent": 910, "amount": 1100}


def test_two_refunds_of_a_payment_in_one_batch_are_two_events(world: World, ctx: Context) -> None:
    """A worker may decide both refunds in one batch: each is its own `payment.refunded`, with
    the refunded amount as it stood after it (the batch's later refund not yet in it)."""
    pump = world.device("pump", category="fuel", top_up=5000)
    car = world.device("car", rules={"currency": "EUR"})
    paid = car.send(car.order(type="pay", payee=pump.id, amount=1000, currency="EUR"))
    pay_id = paid["payment_id"]
    refunds = [pump.order(type="refund", payment_id=pay_id, amount=a) for a in (100, 200)]
    sent = world.deliver([(pump.topic, pump.sign(order)) for order in refunds])
    assert [p["status"] for p in sent if p.get("status")] == ["refunded", "refunded"]
    for owner in (owner_of(world, car), owner_of(world, pump)):
        found = [e["data"] for e in events_of(ctx, owner) if e["type"] == "payment.refunded"]
        assert [(d["amount"], d["refunded_amount"]) for d in found] == [(100, 100), (200, 300)]
        assert {d["payment_id"] for d in found} == {pay_id}


def test_a_low_balance_each_time_it_is_crossed(world: World, ctx: Context) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=1000, rules={"currency": "EUR", "low_balance_alert": 500})
    owner = owner_of(world, car)
    assert car.pay(shop["id"], 400) == ("approved", None)  # 600: still above
    assert car.pay(shop["id"], 200) == ("approved", None)  # 400: crossed
    assert car.pay(shop["id"], 100) == ("approved", None)  # 300: still below, no new event
    low = [e["data"] for e in events_of(ctx, owner) if e["type"] == "wallet.low_balance"]
    assert low == [{"device_id": car.id, "balance": 400, "threshold": 500}]
    top_up = {"amount": 700, "currency": "EUR", "idempotency_key": "again"}
    response = world.api.post(
        f"/v1/devices/{car.id}/wallet/top-ups", json=top_up, headers=car.owner
    )
    assert response.status_code == 201
    assert car.pay(shop["id"], 600) == ("approved", None)  # 1000 -> 400: crossed again
    assert types_of(ctx, owner).count("wallet.low_balance") == 2


def test_a_low_balance_crossed_again_within_one_batch(world: World, ctx: Context) -> None:
    """Up above the alert by a refund and down below it by a pay, in one batch: a crossing,
    although the batch leaves the balance where it found it; down first and up after is none."""
    pump = world.device("pump", category="fuel", top_up=5000)
    car = world.device("car", top_up=1000, rules={"currency": "EUR", "low_balance_alert": 500})
    owner = owner_of(world, car)

    def lows() -> list[int]:
        found = events_of(ctx, owner)
        return [e["data"]["balance"] for e in found if e["type"] == "wallet.low_balance"]

    paid = car.send(car.order(type="pay", payee=pump.id, amount=550, currency="EUR"))
    assert lows() == [450]
    refund = pump.order(type="refund", payment_id=paid["payment_id"], amount=200)
    pay = car.order(type="pay", payee=pump.id, amount=200, currency="EUR")
    world.deliver([(pump.topic, pump.sign(refund)), (car.topic, car.sign(pay))])  # 650, 450
    assert world.balance(car) == 450 and lows() == [450, 450]
    pay = car.order(type="pay", payee=pump.id, amount=100, currency="EUR")
    refund = pump.order(type="refund", payment_id=paid["payment_id"], amount=100)
    world.deliver([(car.topic, car.sign(pay)), (pump.topic, pump.sign(refund))])  # 350, 450
    assert world.balance(car) == 450 and lows() == [450, 450]


def test_no_low_balance_when_funding_kept_the_balance_from_crossing(
    world: World, ctx: Context
) -> None:
    """Money an automatic top-up or a credit line moved into the wallet in the same batch
    counts: the balance before is not the balance after plus the payment alone."""
    shop = world.merchant("maintenance")
    rules = {"currency": "EUR", "low_balance_alert": 600, "auto_top_up": {"below": 100, "to": 400}}
    car = world.device("car", top_up=500, rules=rules)
    savings = source(world, car.owner, name="savings")
    fund(world, car.owner, savings["id"], 10_000, "k1")
    assert pay(car, shop["id"], 450)["status"] == "approved"  # 500 -> 50, topped up to 400
    assert world.balance(car) == 400  # below 600 before and after: nothing was crossed
    van = world.device("van", top_up=500, rules={"currency": "EUR", "low_balance_alert": 600})
    line = line_for(world, van)
    put_policy(world, van, line["id"], auto_accept_up_to=50_000)
    assert pay(van, shop["id"], 1_000)["status"] == "approved"  # lent 1,000 in, paid 1,000 out
    assert world.balance(van) == 500
    for dev in (car, van):
        assert "wallet.low_balance" not in types_of(ctx, owner_of(world, dev))


def test_the_limit_events_already_sent_are_read_through_their_own_index(ctx: Context) -> None:
    """A batch that takes a device near a limit asks which limit events its owner got; the
    partial index of migration 0018 holds only those, and the statement as it runs (the owners
    and the time bound, the type written in) must use it, not the owner's every event. On
    PostgreSQL in the generic plan of a server-side prepared statement too, which does not
    know the bound values (a bound type would miss the index there)."""
    query = sent_markers_query({"own_a", "own_b"}, ctx.clock())
    with ctx.db.read() as conn:
        plan = plan_of(conn, query, "kym_nearly")
    assert "ix_events_nearly" in plan, plan
