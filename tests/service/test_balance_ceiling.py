"""Money near 2**53: no wallet or balance source may hold more than 2**53 - 1 minor units, the
largest integer every JSON client reads exactly (the HTTP API's balances, the audit log's JCS).

Each test fills an account close to that ceiling with the ledger's own top-ups (double entry,
journalled; 10**15 at a time, since 9,000 top-ups of the API's largest amount would take minutes)
and then moves money into it through the API or an order. A movement that would cross the
ceiling is refused with `amount_over_limit` and moves nothing; afterwards `kym ledger check`
and `kym audit verify` find nothing wrong (SQLite and PostgreSQL).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection

from gateway.context import Context
from gateway.disputes.service import settle_due
from gateway.funding.check import check_sources
from gateway.service import verify_audit
from tests.disputes.helpers import paid_merchant
from tests.support.funding import fund, source
from tests.support.world import Dev, World, bearer
from wallet import ledger
from wallet import store as wallet_store
from wallet.check import check

MOST = 2**53 - 1
ORDER_MOST = 10**12  # the largest amount an order or a top-up over HTTP may carry
_keys = itertools.count()


@pytest.fixture(autouse=True)
def books_and_audit_hold(ctx: Context) -> Iterator[None]:
    """After each test, `kym ledger check` and `kym audit verify` find nothing wrong."""
    yield
    with ctx.db.read() as conn:
        assert [str(b) for b in check(conn)] == [] and check_sources(conn) == []
    assert verify_audit(ctx.db, ctx.pki.signer.private_key.public_key())[1] is None


def fill(world: World, holder_id: str, amount: int) -> None:
    """Credit `amount` to a wallet or balance source with the ledger's own top-ups."""
    now = world.ctx.clock()

    def work(conn: Connection) -> None:
        for start in range(0, amount, ledger.MAX_AMOUNT_MINOR):
            wallet_store.top_up(
                conn,
                holder_id=holder_id,
                amount_minor=min(ledger.MAX_AMOUNT_MINOR, amount - start),
                currency="EUR",
                idempotency_key=f"fill-{next(_keys)}",
                now=now,
            )

    world.ctx.db.run(work)


def top_up(world: World, dev: Dev, amount: int, key: str) -> Any:
    body = {"amount": amount, "currency": "EUR", "idempotency_key": key}
    return world.api.post(f"/v1/devices/{dev.id}/wallet/top-ups", json=body, headers=dev.owner)


def merchant_balance(world: World, merchant: dict[str, Any]) -> int:
    response = world.api.get("/v1/merchants/me/wallet", headers=bearer(merchant["api_key"]))
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


def pay_order(dev: Dev, payee: str, amount: int) -> dict[str, Any]:
    return dev.order(type="pay", payee=payee, amount=amount, currency="EUR")


def trail(world: World, dev: Dev) -> list[str]:
    url = f"/v1/devices/{dev.id}/audit"
    return [e["action"] for e in world.api.get(url, headers=dev.owner).json()["items"]]


def test_top_ups_fill_a_wallet_up_to_the_ceiling_and_not_a_cent_beyond(world: World) -> None:
    car = world.device("car", top_up=0)
    fill(world, car.id, MOST - 2 * ORDER_MOST)
    assert top_up(world, car, ORDER_MOST, "a").status_code == 201
    last = top_up(world, car, ORDER_MOST, "b")
    assert last.status_code == 201 and last.json() == {"balance": MOST, "available": MOST}
    over = top_up(world, car, 1, "c")
    assert over.status_code == 409, over.text
    assert over.json()["error"]["code"] == "amount_over_limit"
    assert car.wallet()["balance"] == MOST
    assert trail(world, car).count("money.top_up") == 2  # the refused one moved nothing
    again = top_up(world, car, ORDER_MOST, "b")  # a replay still gets its first answer
    assert again.status_code == 201 and again.json() == last.json()


def test_a_pay_at_the_largest_amount_into_a_nearly_full_merchant_is_declined(
    world: World,
) -> None:
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    fill(world, car.id, 2 * ORDER_MOST)
    merchant = world.merchant()
    fill(world, merchant["id"], MOST - ORDER_MOST + 1)
    result = car.send(pay_order(car, merchant["id"], ORDER_MOST))
    assert (result["status"], result["reason"]) == ("declined", "amount_over_limit")
    assert result["payment_id"] is None
    assert world.balance(car) == 2 * ORDER_MOST
    assert merchant_balance(world, merchant) == MOST - ORDER_MOST + 1
    assert car.pay(merchant["id"], ORDER_MOST - 1) == ("approved", None)  # exactly to the top
    assert merchant_balance(world, merchant) == MOST


def test_a_batch_places_what_fits_and_declines_what_would_cross_the_ceiling(
    world: World,
) -> None:
    cars = [world.device(f"car{i}", top_up=0, rules={"currency": "EUR"}) for i in range(2)]
    merchant = world.merchant()
    fill(world, merchant["id"], MOST - ORDER_MOST)
    for car in cars:
        fill(world, car.id, ORDER_MOST)
    out = world.deliver(
        [(car.topic, car.sign(pay_order(car, merchant["id"], ORDER_MOST))) for car in cars]
    )
    results = sorted((m["status"], m["reason"]) for m in out if "status" in m)
    assert results == [("approved", None), ("declined", "amount_over_limit")]
    assert merchant_balance(world, merchant) == MOST
    assert sorted(world.balance(car) for car in cars) == [0, ORDER_MOST]


def test_an_open_hold_keeps_its_room_below_the_ceiling_until_it_is_captured(
    world: World,
) -> None:
    first = world.device("first", top_up=0, rules={"currency": "EUR"})
    second = world.device("second", top_up=0, rules={"currency": "EUR"})
    merchant = world.merchant()
    fill(world, merchant["id"], MOST - ORDER_MOST)
    fill(world, first.id, ORDER_MOST)
    fill(world, second.id, 10)
    held = first.send(
        first.order(type="hold", payee=merchant["id"], amount=ORDER_MOST, currency="EUR")
    )
    assert held["status"] == "approved", held
    assert second.pay(merchant["id"], 1) == ("declined", "amount_over_limit")
    captured = world.api.post(
        f"/v1/merchants/me/payments/{held['payment_id']}/capture",
        json={"amount": ORDER_MOST, "idempotency_key": "c"},
        headers=bearer(merchant["api_key"]),
    )
    assert captured.status_code == 200, captured.text
    assert merchant_balance(world, merchant) == MOST
    assert world.balance(second) == 10


def test_a_refund_into_a_full_wallet_is_refused_and_moves_nothing(world: World) -> None:
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    fill(world, car.id, 500)
    merchant = world.merchant()
    result = car.send(pay_order(car, merchant["id"], 500))
    assert result["status"] == "approved"
    fill(world, car.id, MOST)  # the car's wallet is full again
    refund = world.api.post(
        f"/v1/merchants/me/payments/{result['payment_id']}/refunds",
        json={"amount": 500, "idempotency_key": "r"},
        headers=bearer(merchant["api_key"]),
    )
    assert refund.status_code == 409, refund.text
    assert refund.json()["error"]["code"] == "amount_over_limit"
    assert world.balance(car) == MOST and merchant_balance(world, merchant) == 500
    payments = world.api.get("/v1/merchants/me/payments", headers=bearer(merchant["api_key"]))
    assert payments.json()["items"][0]["refunded_amount"] == 0


def test_a_balance_source_is_not_topped_up_beyond_the_ceiling(world: World) -> None:
    car = world.device("car", top_up=0)
    savings = source(world, car.owner)
    fill(world, savings["id"], MOST - 5)
    over = fund(world, car.owner, savings["id"], 6, "over")
    assert over.status_code == 409, over.text
    assert over.json()["error"]["code"] == "amount_over_limit"
    full = fund(world, car.owner, savings["id"], 5, "full")
    assert full.status_code == 201 and full.json()["balance"] == MOST


def test_a_disputes_refund_waits_while_the_payers_wallet_is_full(world: World) -> None:
    paid = paid_merchant(world, amount=450)
    fill(world, paid.payer.id, MOST - world.balance(paid.payer))
    dispute = paid.opened()
    refused = paid.respond(dispute["id"], "accept")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "amount_over_limit"
    resolved = paid.resolve(dispute["id"], "owner")
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["refund_pending"]) == (
        "resolved_for_owner",
        True,
    )
    assert settle_due(world.ctx) == 0 and world.balance(paid.payer) == MOST
    assert paid.payer.pay(world.merchant()["id"], 450) == ("approved", None)  # room again
    assert settle_due(world.ctx) == 1
    assert world.balance(paid.payer) == MOST
