"""What `respond_by` decides (contract section 9): no answer by then resolves the dispute for
the owner, whatever comes later, however many other disputes wait."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from gateway.disputes import store as dispute_store
from gateway.disputes.service import settle_due
from tests.disputes.helpers import ADMIN, paid_merchant, pump_that_spent
from tests.support.world import Clock, World

WEEK_S = 7 * 86400


def test_an_answer_after_respond_by_is_409_and_silence_resolves_for_the_owner(
    world: World, clock: Clock
) -> None:
    paid = paid_merchant(world)
    before = world.balance(paid.payer)
    dispute = paid.opened()
    clock.advance(WEEK_S + 1)  # the housekeeper has not run yet
    for decision in ("contest", "accept"):
        late = paid.respond(dispute["id"], decision)
        assert late.status_code == 409, late.text
        assert late.json()["error"]["code"] == "dispute_not_open"
    assert settle_due(world.ctx) == 1
    [listed] = world.api.get("/v1/disputes", headers=ADMIN).json()["items"]
    assert (listed["status"], listed["response"]) == ("resolved_for_owner", None)
    assert listed["resolution"]["by"] == "gateway"
    assert world.balance(paid.payer) == before + paid.amount


def test_silence_leaves_alone_a_dispute_contested_in_time_while_it_was_being_settled(
    world: World, clock: Clock
) -> None:
    """The payee's contest, made before `respond_by`, commits after the housekeeper read the
    dispute as open: the contest stands and the admin decides."""
    paid = paid_merchant(world)
    before = world.balance(paid.payer)
    dispute = paid.opened()
    clock.advance(WEEK_S + 1)
    contesting = world.ctx.db.engine.connect()
    held = contesting.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
    dispute_store.get(contesting, dispute["id"], lock=True)
    dispute_store.update(
        contesting, dispute["id"], world.ctx.clock(), status="under_review",
        response_decision="contest", response_message="it was delivered",
    )  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        settling = pool.submit(settle_due, world.ctx)
        time.sleep(0.5)  # the housekeeper has read the dispute as open, and waits to resolve it
        held.commit()
        contesting.close()
        assert settling.result(timeout=30) == 0
    [listed] = world.api.get("/v1/disputes", headers=ADMIN).json()["items"]
    assert (listed["status"], listed["resolution"]) == ("under_review", None)
    assert world.balance(paid.payer) == before


def test_refunds_the_payee_cannot_fund_keep_no_dispute_from_being_settled(
    world: World, clock: Clock
) -> None:
    """More pending refunds than the housekeeper takes at a time, none fundable, come first:
    a dispute past `respond_by`, and a pending refund that can now be paid, are still settled."""
    pump = world.device("pump", top_up=0, rules={"currency": "EUR"}, category="fuel")
    car = world.device("car", rules={"currency": "EUR"})
    orders = [car.order(type="pay", payee=pump.id, amount=1, currency="EUR") for _ in range(102)]
    world.deliver([(car.topic, car.sign(order)) for order in orders])
    items = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"]
    payments = [p["payment_id"] for p in reversed(items)]
    assert len(payments) == 102
    shop = world.party("merchants", {"name": "Spend", "category": "retail"})
    assert pump.pay(shop["id"], 102) == ("approved", None)  # nothing left to refund with
    body = {"reason": "not_received", "message": "nothing came"}
    opened = []
    for payment_id in payments:
        answer = world.api.post(f"/v1/payments/{payment_id}/disputes", json=body, headers=car.owner)
        assert answer.status_code == 201, answer.text
        opened.append(answer.json()["id"])
    for dispute_id in opened[:101]:
        resolved = world.api.post(
            f"/v1/disputes/{dispute_id}/resolution", json={"outcome": "owner"}, headers=ADMIN
        )
        assert resolved.json()["refund_pending"] is True, resolved.text
    clock.advance(WEEK_S + 1)
    assert settle_due(world.ctx) == 1  # the last one, by silence: its refund is pending too
    last = world.api.get("/v1/disputes", headers=ADMIN, params={"limit": 1}).json()["items"]
    assert (last[0]["id"], last[0]["status"]) == (opened[-1], "resolved_for_owner")
    buyer = world.device("buyer", rules={"currency": "EUR"})
    assert buyer.pay(pump.id, 1) == ("approved", None)  # the pump can pay back one of them
    before = world.balance(car)
    assert settle_due(world.ctx) == 1
    assert world.balance(car) == before + 1


def test_a_payee_who_contested_may_still_accept_until_the_admin_decides(
    world: World, clock: Clock
) -> None:
    """Section 9: answering is 409 only for a dispute neither open nor under review, so after
    contesting the payee may contest again (it stays under review) or give in, which refunds
    at once also past `respond_by`, since the admin had not decided."""
    paid = paid_merchant(world)
    before = world.balance(paid.payer)
    dispute = paid.opened(amount=300)
    assert paid.respond(dispute["id"], "contest").json()["status"] == "under_review"
    clock.advance(WEEK_S + 1)
    assert settle_due(world.ctx) == 0  # answered in time: silence does not decide it
    again = paid.respond(dispute["id"], "contest")
    assert (again.status_code, again.json()["status"]) == (200, "under_review"), again.text
    assert world.balance(paid.payer) == before
    accepted = paid.respond(dispute["id"], "accept")
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["refunded_amount"]) == (
        "resolved_for_owner",
        300,
    )
    assert world.balance(paid.payer) == before + 300
    late = paid.resolve(dispute["id"], "payee")
    assert late.json()["error"]["code"] == "dispute_not_open"
    for decision in ("contest", "accept"):
        assert paid.respond(dispute["id"], decision).status_code == 409
    assert world.balance(paid.payer) == before + 300


def test_a_payee_without_funds_who_contested_cannot_accept_and_stays_under_review(
    world: World,
) -> None:
    paid = pump_that_spent(world)  # 100 left of the 3,000 it got
    dispute = paid.opened()
    assert paid.respond(dispute["id"], "contest").json()["status"] == "under_review"
    refused = paid.respond(dispute["id"], "accept")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "insufficient_funds"
    [listed] = world.api.get("/v1/disputes", headers=ADMIN).json()["items"]
    assert listed["status"] == "under_review"
