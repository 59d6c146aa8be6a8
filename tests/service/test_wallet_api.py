"""Contract section 4 over HTTP: top-ups, wallets, payments and merchant captures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from gateway.orders.merchants import merchant_adjust
from tests.support.concurrency import at_once
from tests.support.funding import source
from tests.support.world import World, bearer


def top_up(
    world: World, dev: Any, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    return world.api.post(
        f"/v1/devices/{dev.id}/wallet/top-ups", json=body, headers=headers or dev.owner
    )


def test_top_up_is_idempotent_by_key(world: World) -> None:
    car = world.device("car", top_up=0)
    body = {"amount": 2500, "currency": "EUR", "idempotency_key": "k1"}
    first = top_up(world, car, body)
    assert first.status_code == 201 and first.json() == {"balance": 2500, "available": 2500}
    again = top_up(world, car, body)
    assert again.status_code == 201 and again.json() == first.json()
    trail = world.api.get(f"/v1/devices/{car.id}/audit", headers=car.owner).json()["items"]
    assert [e["action"] for e in trail].count("money.top_up") == 1  # money moved once
    conflict = top_up(world, car, {**body, "amount": 2600})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert world.balance(car) == 2500


@pytest.mark.parametrize("amount", [-5, 0, 1.5, "100", None, True, 10**13])
def test_bad_amounts_are_422_and_move_nothing(world: World, amount: Any) -> None:
    car = world.device("car", top_up=100)
    response = top_up(world, car, {"amount": amount, "currency": "EUR", "idempotency_key": "k"})
    assert response.status_code == 422
    assert response.json()["error"]["code"]
    assert world.balance(car) == 100


def test_wrong_currency_is_422_currency_not_allowed(world: World) -> None:
    car = world.device("car", top_up=0)
    response = top_up(world, car, {"amount": 5, "currency": "USD", "idempotency_key": "k"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "currency_not_allowed"
    bad = top_up(world, car, {"amount": 5, "currency": "euro", "idempotency_key": "k"})
    assert bad.status_code == 422
    assert world.balance(car) == 0


def test_a_reused_key_in_the_wrong_currency_is_422_before_409(world: World) -> None:
    car = world.device("car", top_up=0)
    body = {"amount": 100, "currency": "EUR", "idempotency_key": "k"}
    assert top_up(world, car, body).status_code == 201
    response = top_up(world, car, {**body, "currency": "USD"})  # the contract checks 422 first
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "currency_not_allowed"
    assert world.balance(car) == 100


def test_another_owner_gets_404(world: World) -> None:
    car, other = world.device("car"), world.device("other")
    assert (
        top_up(
            world,
            car,
            {"amount": 5, "currency": "EUR", "idempotency_key": "x"},
            headers=other.owner,
        ).status_code
        == 404
    )
    for path in ("wallet", "payments", "rules"):
        assert world.api.get(f"/v1/devices/{car.id}/{path}", headers=other.owner).status_code == 404
    assert world.api.get(f"/v1/devices/{car.id}/wallet", headers=car.integrator).status_code == 403


def test_a_revoked_devices_wallet_takes_no_new_top_ups_but_answers_earlier_keys_again(
    world: World,
) -> None:
    """A revoked device never pays again: money topped up into its wallet would be stranded."""
    car = world.device("car", top_up=0)
    earlier = {"amount": 300, "currency": "EUR", "idempotency_key": "before"}
    first = top_up(world, car, earlier)
    assert first.status_code == 201, first.text
    suspended = world.device("paused", top_up=0)
    assert suspended.act("suspend").status_code == 200  # it may resume: top-ups still go in
    assert top_up(world, suspended, earlier).status_code == 201
    assert car.act("revoke").status_code == 200
    refused = top_up(world, car, {**earlier, "idempotency_key": "after"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "invalid_state"
    again = top_up(world, car, earlier)  # a retry of a top-up made before the revocation
    assert (again.status_code, again.json()) == (201, first.json())
    conflict = top_up(world, car, {**earlier, "amount": 301})
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    wrong = top_up(world, car, {**earlier, "currency": "USD", "idempotency_key": "after"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (422, "currency_not_allowed")
    assert world.balance(car) == 300
    trail = world.api.get(f"/v1/devices/{car.id}/audit", headers=car.owner).json()["items"]
    assert [e["action"] for e in trail].count("money.top_up") == 1


def test_payments_list_and_merchant_capture_void_refund(world: World) -> None:
    shop = world.party("merchants", {"name": "pump", "category": "fuel"})
    shop_key = bearer(shop["api_key"])
    car = world.device("car", rules={"currency": "EUR"})
    hold = car.send(car.order(type="hold", payee=shop["id"], amount=5000, currency="EUR"))
    assert hold["status"] == "approved"
    items = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"]
    assert items[0]["payment_id"] == hold["payment_id"] and items[0]["status"] == "held"
    base = f"/v1/merchants/me/payments/{hold['payment_id']}"
    over = world.api.post(
        f"{base}/capture", json={"amount": 6000, "idempotency_key": "c0"}, headers=shop_key
    )
    assert over.status_code == 409 and over.json()["error"]["code"] == "capture_exceeds_hold"
    captured = world.api.post(
        f"{base}/capture", json={"amount": 4200, "idempotency_key": "c1"}, headers=shop_key
    )
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured" and captured.json()["captured_amount"] == 4200
    replay = world.api.post(
        f"{base}/capture", json={"amount": 4200, "idempotency_key": "c1"}, headers=shop_key
    )
    assert replay.status_code == 200
    void = world.api.post(f"{base}/void", json={"idempotency_key": "v1"}, headers=shop_key)
    assert void.status_code == 409 and void.json()["error"]["code"] == "hold_not_open"
    refund = world.api.post(
        f"{base}/refunds", json={"amount": 200, "idempotency_key": "r1"}, headers=shop_key
    )
    assert refund.status_code == 200 and refund.json()["refunded_amount"] == 200
    wallet = world.api.get("/v1/merchants/me/wallet", headers=shop_key).json()
    assert wallet == {"currency": "EUR", "balance": 4000}
    assert world.balance(car) == 10_000 - 4000
    mine = world.api.get("/v1/merchants/me/payments", headers=shop_key).json()["items"]
    assert [p["payment_id"] for p in mine] == [hold["payment_id"]]
    stranger = world.party("merchants", {"name": "other", "category": "fuel"})
    assert (
        world.api.post(
            f"{base}/capture",
            json={"amount": 1, "idempotency_key": "s"},
            headers=bearer(stranger["api_key"]),
        ).status_code
        == 404
    )


def test_ledger_check_passes_after_all_that(world: World) -> None:
    from wallet.check import check

    shop = world.party("merchants", {"name": "pump", "category": "fuel"})
    car = world.device("car", rules={"currency": "EUR"})
    for amount in (100, 200, 300):
        car.send(car.order(type="pay", payee=shop["id"], amount=amount, currency="EUR"))
    with world.ctx.db.read() as conn:
        assert check(conn) == []


def test_the_same_refund_sent_twice_at_once_is_made_once_and_answered_twice(
    world: World,
) -> None:
    shop = world.party("merchants", {"name": "pump", "category": "fuel"})
    car = world.device("car", rules={"currency": "EUR"})
    paid = car.send(car.order(type="pay", payee=shop["id"], amount=1000, currency="EUR"))
    assert paid["status"] == "approved"
    blocker = world.ctx.db.engine.connect()  # holds the accounts while both requests start
    held = blocker.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
    blocker.exec_driver_sql(
        "SELECT id FROM wallet_accounts FOR UPDATE" if not world.ctx.db.is_sqlite else "SELECT 1"
    )
    started = threading.Barrier(3)

    def refund() -> Any:
        started.wait()
        return merchant_adjust(world.ctx, shop["id"], paid["payment_id"], "refund", 300, "r1")

    with ThreadPoolExecutor(2) as pool:
        both = [pool.submit(refund) for _ in range(2)]
        started.wait()
        time.sleep(1.0)  # both have read that no order holds the key, or wait to
        held.commit()
        blocker.close()
        first, second = (future.result(timeout=30) for future in both)
    assert first == second and first.status == "refunded"
    assert world.balance(car) == 10_000 - 1000 + 300  # refunded once


def test_one_key_sent_at_once_from_many_threads_moves_money_once(world: World) -> None:
    """A client that retries while its first request is still running: every copy of the
    request answers the first answer, another body with the key is 409, one top-up moves
    (the device's wallet and a balance source, each with its own keys)."""
    car = world.device("car", top_up=0)
    savings = source(world, car.owner, name="savings")
    wallet_url = f"/v1/devices/{car.id}/wallet/top-ups"
    source_url = f"/v1/funding-sources/{savings['id']}/top-ups"
    body = {"amount": 700, "currency": "EUR", "idempotency_key": "once"}
    other = {**body, "amount": 701}
    calls: list[Callable[[], Any]] = [
        partial(world.api.post, url, json=sent, headers=car.owner)
        for url in (wallet_url, source_url)
        for sent in [body] * 6 + [other] * 2
    ]
    answers = at_once(calls)
    moved = []
    for answers_of_one_url in (answers[:8], answers[8:]):
        created = [a.json() for a in answers_of_one_url if a.status_code == 201]
        refused = [a.json()["error"]["code"] for a in answers_of_one_url if a.status_code != 201]
        assert set(refused) == {"idempotency_conflict"}, [a.text for a in answers_of_one_url]
        assert len(created) in (2, 6)  # the copies of whichever body came first
        assert all(answer == created[0] for answer in created)
        moved.append(created[0]["balance"])
    assert world.balance(car) == moved[0] and moved[0] in (700, 701)
    listed = world.api.get("/v1/owners/me/funding-sources", headers=car.owner).json()["items"]
    assert listed[0]["balance"] == moved[1] and moved[1] in (700, 701)
    trail = world.api.get(f"/v1/devices/{car.id}/audit", headers=car.owner).json()["items"]
    assert [e["action"] for e in trail].count("money.top_up") == 1
