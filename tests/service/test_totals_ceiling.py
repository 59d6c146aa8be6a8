"""Running totals near 2**63: an account's debits and its credits (each posted plus pending) only
grow, in BIGINT columns, so after enough money has passed through it (fill, spend, fill again)
they reach 2**63 - 1 long before any balance is large. A movement that would take either total
past it is refused with `amount_over_limit` and moves nothing: PostgreSQL used to raise
NumericValueOutOfRange (a 500, a batch that never decided) and SQLite turned the counters into
floats. A hold counts against the totals when it is placed, so its capture always fits.

Each test gives an account a long history at once (the same amount added to its debits and its
credits, its balance unchanged), since 9,000 fills of 2**53 would take hours.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices import wire
from gateway.context import Context
from tests.e2e.orders import setup_payer
from tests.funding.offer_setup import decide, offering, pay, plans_of, sources_by_id
from tests.support.stack import Stack
from tests.support.world import Dev, World, bearer
from wallet import ledger
from wallet.schema import accounts

MAX = 2**63 - 1
ORDER_MOST = 10**12


def age(
    world: World | Context,
    account_id: str,
    *,
    credits_left: int | None = None,
    debits_left: int | None = None,
) -> None:
    """Add the same history to an account's debits and credits, so that `credits_left` (or
    `debits_left`) more minor units take that total to 2**63 - 1."""

    def work(conn: Connection) -> None:
        row = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()
        if credits_left is not None:
            history = MAX - credits_left - row.credits_posted - row.credits_pending
        else:
            assert debits_left is not None
            history = MAX - debits_left - row.debits_posted - row.debits_pending
        conn.execute(
            sa.update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                debits_posted=accounts.c.debits_posted + history,
                credits_posted=accounts.c.credits_posted + history,
            )
        )

    (world if isinstance(world, Context) else world.ctx).db.run(work)


def counters(world: World, account_id: str) -> tuple[Any, ...]:
    with world.ctx.db.read() as conn:
        row = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()
    values = (row.debits_posted, row.credits_posted, row.debits_pending, row.credits_pending)
    assert all(type(v) is int for v in values), values  # never a float in the ledger
    return values


def top_up(world: World, dev: Dev, amount: int, key: str) -> Any:
    body = {"amount": amount, "currency": "EUR", "idempotency_key": key}
    return world.api.post(f"/v1/devices/{dev.id}/wallet/top-ups", json=body, headers=dev.owner)


def merchant_balance(world: World, merchant: dict[str, Any]) -> int:
    response = world.api.get("/v1/merchants/me/wallet", headers=bearer(merchant["api_key"]))
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


def test_a_top_up_that_would_take_a_wallets_credits_past_bigint_is_refused(world: World) -> None:
    car = world.device("car", top_up=500, rules={"currency": "EUR"})
    age(world, car.id, credits_left=ORDER_MOST - 1)
    before = counters(world, car.id)
    over = top_up(world, car, ORDER_MOST, "over")
    assert over.status_code == 409, over.text
    assert over.json()["error"]["code"] == "amount_over_limit"
    assert "credits" in over.json()["error"]["message"]
    assert counters(world, car.id) == before and world.balance(car) == 500
    full = top_up(world, car, ORDER_MOST - 1, "full")
    assert full.status_code == 201 and full.json()["balance"] == 500 + ORDER_MOST - 1
    assert counters(world, car.id)[1] == MAX
    assert top_up(world, car, 1, "one").status_code == 409
    assert car.pay(world.merchant()["id"], 300) == ("approved", None)  # money still leaves


def test_a_top_up_is_refused_once_the_currencys_funding_account_is_spent(world: World) -> None:
    car = world.device("car", top_up=500)
    age(world, ledger.funding_account_id("EUR"), debits_left=10)
    over = top_up(world, car, 11, "over")
    assert over.status_code == 409, over.text
    assert over.json()["error"]["code"] == "amount_over_limit"
    assert top_up(world, car, 10, "last").status_code == 201
    assert world.balance(car) == 510


def test_a_pay_into_a_merchant_whose_credits_are_spent_is_declined(world: World) -> None:
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    top_up(world, car, 5_000, "seed")
    merchant = world.merchant()
    age(world, merchant["id"], credits_left=1_000)
    assert car.pay(merchant["id"], 1_001) == ("declined", "amount_over_limit")
    assert world.balance(car) == 5_000 and merchant_balance(world, merchant) == 0
    assert car.pay(merchant["id"], 1_000) == ("approved", None)
    assert merchant_balance(world, merchant) == 1_000 and counters(world, merchant["id"])[1] == MAX


def test_a_batch_places_what_fits_below_the_payees_totals(world: World) -> None:
    cars = [world.device(f"car{i}", top_up=0, rules={"currency": "EUR"}) for i in range(2)]
    merchant = world.merchant()
    age(world, merchant["id"], credits_left=700)
    for car in cars:
        top_up(world, car, 1_000, "seed")
    orders = [
        car.order(type="pay", payee=merchant["id"], amount=600, currency="EUR") for car in cars
    ]
    out = world.deliver(
        [(car.topic, car.sign(order)) for car, order in zip(cars, orders, strict=True)]
    )
    results = sorted((m["status"], m["reason"]) for m in out if "status" in m)
    assert results == [("approved", None), ("declined", "amount_over_limit")]
    assert merchant_balance(world, merchant) == 600
    assert sorted(world.balance(car) for car in cars) == [400, 1_000]


def test_a_wallet_whose_credits_are_spent_still_pays_out_its_whole_balance(world: World) -> None:
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    top_up(world, car, 5_000, "seed")
    merchant = world.merchant()
    age(world, car.id, credits_left=0)  # its debits are then 5,000 short of the ceiling
    held = car.send(car.order(type="hold", payee=merchant["id"], amount=2_000, currency="EUR"))
    assert held["status"] == "approved", held
    assert car.pay(merchant["id"], 3_000) == ("approved", None)
    assert world.balance(car) == 2_000 and car.wallet()["available"] == 0
    assert counters(world, car.id)[0] + counters(world, car.id)[2] == MAX


def test_an_open_hold_keeps_its_room_in_the_totals_until_it_is_captured(world: World) -> None:
    first = world.device("first", top_up=0, rules={"currency": "EUR"})
    second = world.device("second", top_up=0, rules={"currency": "EUR"})
    top_up(world, first, 5_000, "seed")
    top_up(world, second, 5_000, "seed")
    merchant = world.merchant()
    age(world, merchant["id"], credits_left=1_000)
    held = first.send(first.order(type="hold", payee=merchant["id"], amount=1_000, currency="EUR"))
    assert held["status"] == "approved", held
    assert second.pay(merchant["id"], 1) == ("declined", "amount_over_limit")
    captured = world.api.post(
        f"/v1/merchants/me/payments/{held['payment_id']}/capture",
        json={"amount": 600, "idempotency_key": "c"},
        headers=bearer(merchant["api_key"]),
    )
    assert captured.status_code == 200, captured.text
    assert merchant_balance(world, merchant) == 600 and world.balance(first) == 4_400
    assert second.pay(merchant["id"], 400) == ("approved", None)  # the released 400 is room again
    _, credits, _, credits_pending = counters(world, merchant["id"])
    assert (credits, credits_pending) == (MAX, 0)


def test_a_refund_into_a_payer_whose_credits_are_spent_is_refused(world: World) -> None:
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    top_up(world, car, 500, "seed")
    merchant = world.merchant()
    result = car.send(car.order(type="pay", payee=merchant["id"], amount=500, currency="EUR"))
    assert result["status"] == "approved"
    age(world, car.id, credits_left=499)
    refund = world.api.post(
        f"/v1/merchants/me/payments/{result['payment_id']}/refunds",
        json={"amount": 500, "idempotency_key": "r"},
        headers=bearer(merchant["api_key"]),
    )
    assert refund.status_code == 409, refund.text
    assert refund.json()["error"]["code"] == "amount_over_limit"
    assert world.balance(car) == 0 and merchant_balance(world, merchant) == 500
    payments = world.api.get("/v1/merchants/me/payments", headers=bearer(merchant["api_key"]))
    assert payments.json()["items"][0]["refunded_amount"] == 0


def test_instalments_into_a_wallet_whose_credits_are_spent_are_declined(world: World) -> None:
    shop, car, line = offering(world)
    age(world, car.id, credits_left=9_999)
    waiting = pay(car, shop["id"], 10_000)
    assert waiting["status"] == "pending_approval", waiting
    decided = decide(world, car, waiting["approval_id"], decision="approve", instalments=6)
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"]["reason"] == "amount_over_limit"
    assert sources_by_id(world, car)[line["id"]]["balance"] == 0
    assert plans_of(world.ctx, car.id) == [] and merchant_balance(world, shop) == 0
    assert counters(world, car.id)[1] == MAX - 9_999


def test_over_mqtt_a_pay_past_the_payees_totals_is_declined_and_one_that_fits_approved(
    gateway: Stack,
) -> None:
    shop = gateway.party("merchants", {"name": "m", "category": "fuel", "currency": "EUR"})
    car = setup_payer(gateway, "car", rules={"currency": "EUR"})
    age(gateway.ctx, shop["id"], credits_left=1_000)
    over = car.order(type="pay", payee=shop["id"], amount=1_001, currency="EUR")
    result = car.send(wire.sign(over, car.key).encode(), order_id=over["order_id"])
    assert result is not None and (result["status"], result["reason"]) == (
        "declined",
        "amount_over_limit",
    )
    fits = car.order(type="pay", payee=shop["id"], amount=1_000, currency="EUR")
    result = car.send(wire.sign(fits, car.key).encode(), order_id=fits["order_id"])
    assert result is not None and result["status"] == "approved", result
    wallet = gateway.api.get("/v1/merchants/me/wallet", headers=bearer(shop["api_key"]))
    assert wallet.json()["balance"] == 1_000
    car.close()
