"""Deciding orders (contract sections 5 and 6) on a real database, as an MQTT worker does.

The end-to-end tests in `tests/e2e/test_orders.py` run one order of each feature through a real
broker; the outcomes themselves are checked here, one batch at a time.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, text

from devices.contract import orders_topic
from gateway.consent.periods import next_period_start
from gateway.orders import store as order_store
from gateway.orders.approvals import expire_approvals
from gateway.orders.decide import decide_messages
from gateway.orders.holds import expire_holds
from tests.support.openssl import make_openssl_csr
from tests.support.world import Clock, World, counting_transactions
from wallet import bulk
from wallet.check import check as wallet_check

OPEN = {"currency": "EUR"}  # rules that let every payment within them through


def test_pay_within_rules_is_approved_and_moves_money(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    result = car.send(car.order(type="pay", payee=shop["id"], amount=1250, currency="EUR"))
    assert result["status"] == "approved" and result["reason"] is None
    assert result["amount"] == 1250 and result["payment_id"].startswith("pay_")
    assert car.wallet() == {"currency": "EUR", "balance": 8750, "available": 8750}
    again = car.send(car.order(type="pay", payee=shop["id"], amount=1, currency="EUR"))
    # the time in milliseconds first (gateway.ids.ordered_hex), then random hex
    assert re.fullmatch("pay_[0-9a-f]{28}", again["payment_id"])
    assert again["payment_id"][:16] >= result["payment_id"][:16]


def test_replay_gets_the_latest_result_marked_duplicate_and_moves_nothing(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    order = car.order(type="pay", payee=shop["id"], amount=100, currency="EUR")
    first = car.send(order)
    again = car.send(order)
    assert again["duplicate"] is True and again["status"] == "approved"
    assert again["payment_id"] == first["payment_id"]
    assert {k: v for k, v in again.items() if k not in ("duplicate", "ts")} == {
        k: v for k, v in first.items() if k != "ts"
    }
    conflict = car.send({**order, "amount": 101})
    assert (conflict["status"], conflict["reason"]) == ("rejected", "idempotency_conflict")
    assert world.balance(car) == 9900


def test_a_replay_in_the_same_batch_is_answered_as_a_duplicate(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    raw = car.sign(car.order(type="pay", payee=shop["id"], amount=100, currency="EUR"))
    out = world.deliver([(car.topic, raw), (car.topic, raw)])
    results = [m for m in out if "status" in m]
    assert [r.get("duplicate", False) for r in results] == [False, True]
    assert world.balance(car) == 9900


def test_an_order_id_another_device_used_is_a_new_order(world: World) -> None:
    """Idempotency is by (device, order id): the lookup of a batch's known orders pairs each
    device with its own order ids, never one device's id with another's."""
    shop = world.merchant()
    car, van = world.device("car", rules=OPEN), world.device("van", rules=OPEN)
    pay = {"type": "pay", "payee": shop["id"], "currency": "EUR"}
    car_first = car.order(**pay, amount=100, order_id="shared-1")
    van_first = van.order(**pay, amount=200, order_id="shared-2")
    world.deliver([(car.topic, car.sign(car_first)), (van.topic, van.sign(van_first))])
    crossed = [
        (car.topic, car.sign(car.order(**pay, amount=7, order_id="shared-2"))),
        (van.topic, van.sign(van.order(**pay, amount=9, order_id="shared-1"))),
        (car.topic, car.sign(car_first)),
    ]
    out = [m for m in world.deliver(crossed) if "status" in m]
    assert [(m["order_id"], m["status"], m.get("duplicate", False)) for m in out] == [
        ("shared-2", "approved", False),
        ("shared-1", "approved", False),
        ("shared-1", "approved", True),
    ]
    assert (world.balance(car), world.balance(van)) == (10_000 - 107, 10_000 - 209)
    with world.ctx.db.read() as conn:
        known = order_store.known_orders(
            conn, [(car.id, "shared-1"), (car.id, "shared-2"), (van.id, "shared-3")]
        )
    assert sorted(known) == [(car.id, "shared-1"), (car.id, "shared-2")]


def test_the_known_orders_are_one_primary_key_probe_a_pair(world: World) -> None:
    """Which of a batch's orders were decided before is looked up pair by pair on the primary
    key, never by reading a device's other orders (which grew with its history: a bitmap scan
    of every order of the batch's devices on PostgreSQL until the eighth session)."""
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    pay = {"type": "pay", "payee": shop["id"], "amount": 1, "currency": "EUR"}
    world.deliver([(car.topic, car.sign(car.order(**pay))) for _ in range(20)])
    keys = [(car.id, "o-seen-1"), (car.id, "o-seen-2")]
    with world.ctx.db.read() as conn:
        sql, positions, _ = order_store._KNOWN_ORDERS.plan(conn)
        if world.ctx.db.is_sqlite:
            assert positions == ("keys",)
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (json.dumps(keys),))
            plan = [str(row[-1]) for row in rows]
            assert plan[0].startswith("SCAN k"), plan  # the pairs, one by one
            assert "(device_id=? AND order_id=?)" in plan[1], plan
        else:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: say it all
            params = {"devices": [d for d, _ in keys], "orders": [o for _, o in keys]}
            plan_rows = conn.exec_driver_sql(f"EXPLAIN {sql}", params)
            text_plan = "\n".join(row[0] for row in plan_rows)
            # the pairs drive the probes (a small table hides the old form's bitmap scan)
            assert "Nested Loop" in text_plan and "Function Scan" in text_plan, text_plan
            assert re.search(r"Index Cond: .*device_id.*order_id", text_plan), text_plan


def test_the_rules_decline_in_the_contract_order(world: World) -> None:
    shop = world.merchant()
    gambling = world.merchant("gambling")
    dollars = world.merchant("retail", "USD")
    rules = {
        "currency": "EUR",
        "max_amount": 3000,
        "limits": [{"period": "day", "amount": 4000}],
        "max_payments": [{"period": "day", "count": 3}],
        "blocked_categories": ["gambling"],
        "blocked_payees": ["mer_blocked"],
    }
    car = world.device("car", top_up=5_000, rules=rules)
    assert car.pay(shop["id"], 3001) == ("declined", "amount_over_limit")
    assert car.pay(gambling["id"], 100) == ("declined", "category_not_allowed")
    assert car.pay(dollars["id"], 100) == ("declined", "currency_not_allowed")
    assert car.pay("mer_nobody", 100) == ("declined", "unknown_payee")
    assert car.pay(car.id, 100) == ("declined", "payee_not_allowed")
    assert car.pay(shop["id"], 2500) == ("approved", None)
    assert car.pay(shop["id"], 2000) == ("declined", "period_limit_exceeded")
    assert car.pay(shop["id"], 100) == ("approved", None)
    assert car.pay(shop["id"], 100) == ("approved", None)
    assert car.pay(shop["id"], 100) == ("declined", "payment_count_exceeded")
    assert world.balance(car) == 5_000 - 2700


def test_a_batch_timed_before_another_committed_counts_in_the_newer_period(
    world: World, clock: Clock
) -> None:
    shop = world.merchant()
    rules = {"currency": "EUR", "limits": [{"period": "day", "amount": 1000}]}
    car = world.device("car", top_up=5_000, rules=rules)
    now = world.ctx.clock()
    midnight = next_period_start("day", now, ZoneInfo("Europe/Berlin"))  # the owner's zone
    clock.advance((midnight - now).total_seconds() - 1)
    before = world.ctx.clock()  # 23:59:59: a worker takes its batch's time, then waits...
    clock.advance(2)  # ...while another transaction, at 00:00:01, locks the car and commits
    assert car.pay(shop["id"], 600) == ("approved", None)
    late = car.order(type="pay", payee=shop["id"], amount=300, currency="EUR")
    [(_, _, token)] = decide_messages(
        world.ctx, world.keyring, [(car.topic, car.sign(late))], before
    )
    assert json.loads(_payload(token))["status"] == "approved"
    # 600 + 300 today: 200 more is over the day's 1,000 (the late batch's old day, written
    # after the new one, used to start the counters again: 200 was approved)
    assert car.pay(shop["id"], 200) == ("declined", "period_limit_exceeded")
    assert car.pay(shop["id"], 100) == ("approved", None)


def _payload(token: str) -> str:
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


def test_stale_orders_are_rejected_and_not_recorded(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    ts = int(world.ctx.clock().timestamp())
    assert car.pay(shop["id"], 100, ts=ts - 330) == ("rejected", "stale_order")
    assert car.pay(shop["id"], 100, ts=ts + 330) == ("rejected", "stale_order")
    assert car.pay(shop["id"], 100, ts=ts - 270) == ("approved", None)
    order = car.order(type="pay", payee=shop["id"], amount=5, currency="EUR", ts=ts - 400)
    assert car.send(order)["reason"] == "stale_order"
    fresh = {**order, "ts": ts}  # same order id, not recorded: decided now
    assert car.send(fresh)["status"] == "approved"


def test_an_order_refused_as_dated_ahead_is_refused_again_when_its_time_comes(
    world: World, clock: Clock
) -> None:
    """Contract section 6 (Delivery): an order never gets two different final results. One
    dated more than 300 s ahead of the gateway's clock is `rejected` as stale; the same bytes
    again once its time is within 300 s (the broker redelivering after a crash, a firmware
    re-sending) are refused again, not approved: the device was told the payment failed."""
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    ts = int(clock().timestamp())
    early = car.sign(car.order(type="pay", payee=shop["id"], amount=7, currency="EUR", ts=ts + 310))
    first = car.send(early)
    assert (first["status"], first["reason"]) == ("rejected", "stale_order")
    clock.advance(20)  # the order's ts is 290 s ahead now: fresh, were it new
    again = car.send(early)
    assert (again["status"], again["reason"]) == ("rejected", "stale_order")
    before = world.balance(car)
    assert _orders_of(world, car.id) == 0  # not recorded as an order (section 5)
    # a new signature (a corrected clock, the same order id) is a new order: decided now
    fixed = car.order(type="pay", payee=shop["id"], amount=7, currency="EUR", ts=ts + 20)
    fixed["order_id"] = json.loads(_payload(early.decode()))["order_id"]
    assert car.send(fixed)["status"] == "approved"
    assert world.balance(car) == before - 7 and _orders_of(world, car.id) == 1
    # remembered until stale by age, then forgotten by the next such refusal
    other = car.order(type="pay", payee=shop["id"], amount=7, currency="EUR", ts=ts + 340)
    assert car.send(other)["reason"] == "stale_order"
    assert _early_refusals(world) == 2
    clock.advance(1200)
    later = car.order(type="pay", payee=shop["id"], amount=7, currency="EUR", ts=ts + 1600)
    assert car.send(later)["reason"] == "stale_order"
    assert _early_refusals(world) == 1
    assert car.send(car.sign(other))["reason"] == "stale_order"  # by age now
    assert world.balance(car) == before - 7


def test_an_order_dated_beyond_any_clock_is_stale_and_the_batch_goes_on(world: World) -> None:
    """A signed order whose `ts` is near or past the largest 64-bit number is `stale_order`
    like any other dated ahead (its early refusal is kept for ever); it used to overflow the
    remembered expiry and fail its whole batch (the other devices' orders with it)."""
    shop = world.merchant()
    car, van = world.device("car", rules=OPEN), world.device("van", rules=OPEN)
    far = [car.order(type="pay", payee=shop["id"], amount=1, currency="EUR", ts=ts)
           for ts in (2**63 - 1, 2**63 - 300, 10**30)]  # fmt: skip
    fine = van.order(type="pay", payee=shop["id"], amount=1, currency="EUR")
    sent = world.deliver([*((car.topic, car.sign(o)) for o in far), (van.topic, van.sign(fine))])
    results = {(p["device_id"], p["order_id"]): p for p in sent if "status" in p}
    for order in far:
        assert results[(car.id, order["order_id"])]["reason"] == "stale_order"
    assert results[(van.id, fine["order_id"])]["status"] == "approved"
    assert _early_refusals(world) == 3
    again = world.deliver([(car.topic, car.sign(far[0]))])
    assert [p["reason"] for p in again] == ["stale_order"]


def _orders_of(world: World, device_id: str) -> int:
    with world.ctx.db.engine.connect() as conn:
        query = text("SELECT count(*) FROM orders WHERE device_id = :d")
        return int(conn.execute(query, {"d": device_id}).scalar_one())


def _early_refusals(world: World) -> int:
    with world.ctx.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM early_refusals")).scalar_one())


def test_insufficient_funds_and_outside_active_hours(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=500, rules=OPEN)
    assert car.pay(shop["id"], 501) == ("declined", "insufficient_funds")
    today = datetime.now(ZoneInfo("Europe/Berlin")).weekday()
    other_days = [
        d for i, d in enumerate(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]) if i != today
    ]
    car.put_rules(
        {"active_hours": {"windows": [{"days": other_days, "from": "00:00", "to": "24:00"}]}}
    )
    assert car.pay(shop["id"], 1) == ("declined", "outside_active_hours")
    assert world.balance(car) == 500


def test_declined_results_name_the_amount_and_currency(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=10, rules=OPEN)
    order = car.order(type="pay", payee=shop["id"], amount=50, currency="EUR")
    result = car.send(order)
    assert {k: result[k] for k in ("v", "order_id", "device_id", "status", "reason")} == {
        "v": 1,
        "order_id": order["order_id"],
        "device_id": car.id,
        "status": "declined",
        "reason": "insufficient_funds",
    }
    assert (result["amount"], result["currency"], result["payment_id"]) == (50, "EUR", None)


def _none_alg(order_id: str) -> bytes:
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(f'{{"order_id":"{order_id}"}}'.encode()).rstrip(b"=")
    return header + b"." + payload + b"."


def test_malformed_messages_are_rejected_in_the_contract_order(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules=OPEN)

    def reject(message: dict[str, Any] | bytes) -> tuple[str | None, str, str]:
        result = car.send(message)
        assert result["payment_id"] is None and result["amount"] is None
        return result["order_id"], result["status"], result["reason"]

    assert reject(b"\x00\xffgarbage") == (None, "rejected", "invalid_message")
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = car.order(type="pay", payee=shop["id"], amount=5, currency="EUR")
    assert reject(car.sign(forged, forger)) == (forged["order_id"], "rejected", "invalid_signature")
    assert reject(_none_alg("o-none")) == ("o-none", "rejected", "invalid_signature")
    as_float = car.order(type="pay", payee=shop["id"], amount=5.0, currency="EUR")
    assert reject(as_float)[1:] == ("rejected", "invalid_message")
    bad_forged = car.order(type="pay", payee=shop["id"], amount=5.0, currency="EUR")
    assert reject(car.sign(bad_forged, forger))[2] == "invalid_signature"  # signature first
    other = car.order(type="pay", payee=shop["id"], amount=5, currency="EUR", device_id="dev_x")
    assert reject(other)[1:] == ("rejected", "invalid_message")
    version_true = {**car.order(type="pay", payee=shop["id"], amount=5, currency="EUR"), "v": True}
    assert reject(version_true)[1:] == ("rejected", "invalid_message")  # `true` is not 1
    assert car.pay(shop["id"], 5) == ("approved", None)
    assert world.balance(car) == 9995


def test_a_jws_whose_segments_are_not_plain_base64url_is_malformed(world: World) -> None:
    """Decoding comes before the signature (contract section 6): a well-signed order with a
    trailing newline or padding is `invalid_message`, naming its order, and so is one with a
    space in a segment; none moves money, and the same order sent clean is then decided."""
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    order = car.order(type="pay", payee=shop["id"], amount=5, currency="EUR")
    token = car.sign(order)
    header, payload, signature = token.split(b".")
    for bent in (
        token + b"\n",
        token + b"\r\n",
        header + b"." + payload + b"." + signature + b"==",
    ):
        result = car.send(bent)
        assert (result["status"], result["reason"]) == ("rejected", "invalid_message"), bent
        assert result["order_id"] == order["order_id"], (bent, result)
    spaced = car.send(header + b"." + payload + b" ." + signature)
    assert (spaced["status"], spaced["reason"]) == ("rejected", "invalid_message")
    assert world.balance(car) == 10000
    assert car.send(token)["status"] == "approved"
    assert world.balance(car) == 9995


def test_a_message_on_another_topic_is_ignored(world: World) -> None:
    car = world.device("car", rules=OPEN)
    raw = car.sign(car.order(type="pay", payee="mer_x", amount=5, currency="EUR"))
    assert world.deliver([(f"kym/v1/devices/{car.id}/results", raw)]) == []


def test_suspended_and_pending_devices_are_declined(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    assert car.act("suspend").status_code == 200
    assert car.pay(shop["id"], 5) == ("declined", "device_not_active")
    assert car.act("resume").status_code == 200
    assert car.pay(shop["id"], 5) == ("approved", None)
    fresh = world.device("fresh", rules=OPEN, approve=False)
    assert fresh.pay(shop["id"], 5) == ("declined", "device_not_active")
    assert car.act("revoke").status_code == 200
    assert car.pay(shop["id"], 5) == ("declined", "device_not_active")


def test_unanswered_approval_expires_as_declined(world: World, clock: Clock) -> None:
    shop = world.merchant("groceries")
    rules = {"currency": "EUR", "approval_above": 10, "approval_ttl_seconds": 60}
    fridge = world.device("fridge", rules=rules)
    order = fridge.order(type="pay", payee=shop["id"], amount=50, currency="EUR")
    assert fridge.send(order)["status"] == "pending_approval"
    assert expire_approvals(world.ctx) == 0
    clock.advance(61)
    assert expire_approvals(world.ctx) == 1
    conflict = fridge.send({**order, "nonce": "other"})
    assert (conflict["status"], conflict["reason"]) == ("rejected", "idempotency_conflict")
    final = fridge.send(order)  # the same order again: its latest result
    assert (final["status"], final["reason"], final["duplicate"]) == (
        "declined",
        "approval_expired",
        True,
    )
    assert world.balance(fridge) == 10_000


def test_fuel_pump_hold_capture_refund(world: World) -> None:
    car = world.device("car", rules=OPEN)
    pump = world.device("pump", top_up=0, category="fuel")
    hold_order = car.order(type="hold", payee=pump.id, amount=8000, currency="EUR", expires_in=600)
    out = world.deliver([(car.topic, car.sign(hold_order))])
    [hold] = [m for m in out if m.get("status")]
    [placed] = [m for m in out if m.get("event") == "hold_placed"]
    assert hold["status"] == "approved" and hold["expires_at"] == hold_order["ts"] + 600
    assert placed["device_id"] == pump.id and placed["payer_device_id"] == car.id
    assert (
        placed["payment_id"] == hold["payment_id"] and placed["order_id"] == hold_order["order_id"]
    )
    assert (car.wallet()["balance"], car.wallet()["available"]) == (10_000, 2_000)
    payment_id = hold["payment_id"]

    def adjust(sender: Any, **fields: Any) -> tuple[str, str | None]:
        result = sender.send(sender.order(payment_id=payment_id, **fields))
        return result["status"], result["reason"]

    assert adjust(car, type="capture", amount=10) == ("declined", "payment_not_found")
    assert adjust(pump, type="capture", amount=9000) == ("declined", "capture_exceeds_hold")
    assert adjust(pump, type="capture", amount=6120, currency="USD") == (
        "declined",
        "payment_not_found",
    )
    assert adjust(pump, type="capture", amount=6120) == ("captured", None)
    assert adjust(pump, type="void") == ("declined", "hold_not_open")
    assert adjust(pump, type="refund", amount=7000) == ("declined", "refund_exceeds_payment")
    assert adjust(pump, type="refund", amount=120) == ("refunded", None)
    assert (car.wallet()["balance"], car.wallet()["available"]) == (4_000, 4_000)
    assert world.balance(pump) == 6_000


def test_a_pay_cannot_be_voided_and_a_void_releases_a_hold(world: World) -> None:
    car = world.device("car", rules=OPEN)
    pump = world.device("pump", top_up=0, category="fuel")
    paid = car.send(car.order(type="pay", payee=pump.id, amount=100, currency="EUR"))
    void_pay = pump.send(pump.order(type="void", payment_id=paid["payment_id"]))
    assert (void_pay["status"], void_pay["reason"]) == ("declined", "hold_not_open")
    held = car.send(car.order(type="hold", payee=pump.id, amount=500, currency="EUR"))
    out = world.deliver(
        [(pump.topic, pump.sign(pump.order(type="void", payment_id=held["payment_id"])))]
    )
    [voided] = [m for m in out if m.get("status")]
    [event] = [m for m in out if m.get("event") == "hold_voided"]
    assert (voided["status"], voided["amount"]) == ("voided", 500)
    assert (event["device_id"], event["amount"]) == (car.id, 500)
    assert car.wallet()["available"] == 9_900


def test_expired_hold_is_voided_by_the_gateway(world: World, clock: Clock) -> None:
    car = world.device("car", rules=OPEN)
    pump = world.device("pump", top_up=0, category="fuel")
    hold = car.send(
        car.order(type="hold", payee=pump.id, amount=500, currency="EUR", expires_in=60)
    )
    assert expire_holds(world.ctx) == 0
    clock.advance(61)
    assert expire_holds(world.ctx) == 1
    late = pump.send(pump.order(type="capture", payment_id=hold["payment_id"], amount=100))
    assert (late["status"], late["reason"]) == ("declined", "hold_expired")
    assert car.wallet()["available"] == 10_000


def test_a_batch_is_decided_in_one_transaction(world: World) -> None:
    shop = world.merchant()
    cars = [world.device(f"car{n}", rules=OPEN) for n in range(3)]
    messages = [
        (c.topic, c.sign(c.order(type="pay", payee=shop["id"], amount=5, currency="EUR")))
        for c in cars
    ]
    messages.append((cars[0].topic, b"garbage"))
    with counting_transactions(world.ctx.db.engine) as begins:
        out = world.deliver(messages)
    assert [m["status"] for m in out] == ["approved"] * 3 + ["rejected"]
    assert len(begins) == 1


def _rotate(world: World, car: Any) -> Any:
    """A second certificate for the car, from an openssl key; returns that private key."""
    key_path, csr = make_openssl_csr(world.tmp, "car-new")
    rotated = world.api.post(
        f"/v1/devices/{car.id}/certificates", json={"csr": csr}, headers=car.integrator
    )
    assert rotated.status_code == 201, rotated.text
    return serialization.load_pem_private_key(key_path.read_bytes(), None)


def test_a_rotated_certificate_retires_the_older_one_when_it_first_signs(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    new_key = _rotate(world, car)
    old = car.order(type="pay", payee=shop["id"], amount=1, currency="EUR")
    assert car.send(old)["status"] == "approved"  # both are valid until the new one is used
    new = car.order(type="pay", payee=shop["id"], amount=1, currency="EUR")
    assert car.send(car.sign(new, new_key))["status"] == "approved"
    assert car.pay(shop["id"], 1) == ("rejected", "invalid_signature")


def test_a_revoked_device_s_orders_are_declined_when_its_own_key_signed_them(
    world: World,
) -> None:
    """Section 5 step 2: a revoked device is declined as `device_not_active`, as a suspended
    one is; only the certificates its revocation withdrew prove that the order is its own. A
    key rotated away before, or one it never had, is still no signature."""
    shop = world.merchant()
    car = world.device("car", rules=OPEN)
    new_key = _rotate(world, car)
    first = car.order(type="pay", payee=shop["id"], amount=1, currency="EUR")
    assert car.send(car.sign(first, new_key))["status"] == "approved"
    assert car.act("revoke").status_code == 200
    order = car.order(type="pay", payee=shop["id"], amount=5, currency="EUR")
    declined = car.send(car.sign(order, new_key))
    assert (declined["status"], declined["reason"]) == ("declined", "device_not_active")
    assert (declined["amount"], declined["currency"]) == (5, "EUR")
    again = car.send(car.sign(order, new_key))
    assert (again["status"], again["duplicate"]) == ("declined", True)  # it was recorded
    assert car.pay(shop["id"], 5) == ("rejected", "invalid_signature")  # the superseded key
    forged = car.sign(
        car.order(type="pay", payee=shop["id"], amount=5, currency="EUR"),
        ec.generate_private_key(ec.SECP256R1()),
    )
    assert car.send(forged)["reason"] == "invalid_signature"
    assert world.balance(car) == 9999
    with world.ctx.db.engine.connect() as conn:
        actions = conn.execute(
            text("SELECT action FROM audit_log WHERE device_id = :d"), {"d": car.id}
        ).scalars()
        assert "order.declined" in list(actions)


def test_orders_of_many_devices_in_one_batch(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=300, rules=OPEN)
    other = world.device("other", rules=OPEN)
    orders = [car.order(type="pay", payee=shop["id"], amount=100, currency="EUR") for _ in range(4)]
    messages = [(car.topic, car.sign(o)) for o in orders]
    messages.insert(
        2,
        (
            other.topic,
            other.sign(other.order(type="pay", payee=shop["id"], amount=7, currency="EUR")),
        ),
    )
    out = world.deliver(messages)
    assert [(m["device_id"] == car.id, m["status"]) for m in out] == [
        (True, "approved"),
        (True, "approved"),
        (False, "approved"),
        (True, "approved"),
        (True, "declined"),
    ]
    assert world.balance(car) == 0 and world.balance(other) == 9_993
    assert orders_topic(car.id) == car.topic


def test_an_account_refusing_the_batch_s_sum_has_the_batch_decided_again_one_by_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = world.merchant()
    cars = [world.device(f"car{n}", rules=OPEN) for n in range(3)]
    moves = bulk.move_in_bulk
    refused: list[int] = []

    def refuse_once(conn: Connection, requests: Any, now: datetime) -> Callable[[], bool]:
        moved = moves(conn, requests, now)  # made (on PostgreSQL queued in the pipeline) ...
        refused.append(len(requests))
        return lambda: moved() and False  # ... then refused: the rollback must take them back

    monkeypatch.setattr("gateway.orders.batch.move_in_bulk", refuse_once)
    messages = [
        (c.topic, c.sign(c.order(type="pay", payee=shop["id"], amount=5, currency="EUR")))
        for c in cars
    ]
    out = world.deliver(messages)
    assert refused == [3]  # the second try places each payment alone, not in bulk
    assert [m["status"] for m in out] == ["approved"] * 3
    assert [world.balance(c) for c in cars] == [9_995] * 3  # each debited once
    with world.ctx.db.read() as conn:
        assert wallet_check(conn) == []
        paid = conn.execute(text("SELECT count(*) FROM wallet_payments")).scalar_one()
    assert paid == 3
