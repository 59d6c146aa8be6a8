"""Disputes through every path (contract section 9): opening, accepting, contesting, the
admin's resolution, silence, pending refunds, and the refusals."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from devices import wire
from devices.contract import results_topic
from gateway.disputes.service import settle_due
from gateway.events import store as event_store
from gateway.evidence.verify import verify_bundle
from gateway.orders.store import outbox
from tests.disputes.helpers import ADMIN, paid_merchant, pump_that_spent
from tests.support.world import Clock, World, bearer
from wallet import store as wallet_store


def test_owner_opens_a_dispute_for_what_was_paid_due_in_seven_days(world: World) -> None:
    paid = paid_merchant(world)
    dispute = paid.opened()
    assert (dispute["status"], dispute["amount"], dispute["currency"]) == ("open", 450, "EUR")
    assert dispute["payment_id"] == paid.payment_id and dispute["reason"] == "not_received"
    from datetime import datetime, timedelta

    days = datetime.fromisoformat(dispute["respond_by"]) - datetime.fromisoformat(
        dispute["created_at"]
    )
    assert days == timedelta(days=7)
    again = paid.dispute()
    assert again.status_code == 409 and again.json()["error"]["code"] == "dispute_exists"


def test_accepting_refunds_at_once(world: World) -> None:
    paid = paid_merchant(world)
    before = world.balance(paid.payer)
    dispute = paid.opened(amount=200)
    answer = paid.respond(dispute["id"], "accept")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "resolved_for_owner"
    assert answer.json()["refunded_amount"] == 200
    assert world.balance(paid.payer) == before + 200
    assert paid.payment()["refunded_amount"] == 200
    sent = sent_to(world, paid.payer.id)
    assert [(m["event"], m["amount"]) for m in sent if "event" in m] == [("refund_received", 200)]
    shop_events = events_of(world, paid.payee_id)
    owner_id = world.api.get("/v1/owners/me", headers=paid.payer.owner).json()["id"]
    for types in (shop_events, events_of(world, owner_id)):
        assert {"dispute.opened", "dispute.answered", "dispute.resolved"} <= set(types)
        assert "payment.refunded" in types
    again = paid.respond(dispute["id"], "contest")
    assert again.status_code == 409 and again.json()["error"]["code"] == "dispute_not_open"
    assert paid.resolve(dispute["id"], "payee").json()["error"]["code"] == "dispute_not_open"
    assert paid.dispute().json()["error"]["code"] == "dispute_exists"  # also after a resolution


def sent_to(world: World, device_id: str) -> list[dict[str, Any]]:
    """Every payload in the outbox for a device, in order."""
    query = sa.select(outbox.c.jws).where(outbox.c.topic == results_topic(device_id))
    with world.ctx.db.read() as conn:
        return [wire.decode(t)[1] for (t,) in conn.execute(query.order_by(outbox.c.id))]


def events_of(world: World, recipient: str) -> list[str]:
    """The types of the events recorded for an owner or a merchant."""
    query = sa.select(event_store.events.c.type).where(event_store.events.c.recipient == recipient)
    with world.ctx.db.read() as conn:
        return [str(t) for (t,) in conn.execute(query)]


def test_contested_then_resolved_by_the_admin(world: World) -> None:
    for outcome, status in (("owner", "resolved_for_owner"), ("payee", "resolved_for_payee")):
        paid = paid_merchant(world)
        before = world.balance(paid.payer)
        dispute = paid.opened()
        contested = paid.respond(dispute["id"], "contest")
        assert contested.json()["status"] == "under_review", contested.text
        resolved = paid.resolve(dispute["id"], outcome)
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == status
        refunded = 450 if outcome == "owner" else 0
        assert world.balance(paid.payer) == before + refunded
        assert paid.resolve(dispute["id"], "owner").json()["error"]["code"] == "dispute_not_open"


def test_silence_resolves_for_the_owner_with_a_refund(world: World, clock: Clock) -> None:
    paid = paid_merchant(world)
    before = world.balance(paid.payer)
    dispute = paid.opened()
    clock.advance(7 * 86400 - 60)
    assert settle_due(world.ctx) == 0
    clock.advance(61)
    assert settle_due(world.ctx) == 1
    [listed] = world.api.get("/v1/disputes", headers=paid.payer.owner).json()["items"]
    assert listed["id"] == dispute["id"] and listed["status"] == "resolved_for_owner"
    assert listed["resolution"]["by"] == "gateway"
    assert world.balance(paid.payer) == before + 450
    assert settle_due(world.ctx) == 0


def test_response_days_may_be_a_fraction(world: World, clock: Clock) -> None:
    from dataclasses import replace

    settings = world.ctx.settings.model_copy(update={"dispute_response_days": 0.5})
    world.ctx = replace(world.ctx, settings=settings)
    paid = paid_merchant(world)
    paid.world.ctx = world.ctx
    dispute = service_open(world, paid)
    assert dispute["status"] == "open"
    clock.advance(12 * 3600 - 60)
    assert settle_due(world.ctx) == 0
    clock.advance(61)
    assert settle_due(world.ctx) == 1


def service_open(world: World, paid: object) -> dict[str, object]:
    from gateway.disputes.service import open_dispute
    from gateway.parties import Party

    owner_id = world.api.get("/v1/owners/me", headers=paid.payer.owner).json()["id"]  # type: ignore[attr-defined]
    body = {"reason": "defective", "message": "broken"}
    return open_dispute(world.ctx, Party("owner", owner_id), paid.payment_id, body)  # type: ignore[attr-defined]


def test_payee_without_funds_cannot_accept_and_a_resolution_refunds_later(world: World) -> None:
    paid = pump_that_spent(world)  # 100 left of the 3,000 it got
    dispute = paid.opened()
    refused = paid.respond(dispute["id"], "accept")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "insufficient_funds"
    listed = world.api.get("/v1/disputes", headers=paid.payee_key).json()["items"]
    assert listed[0]["status"] == "open"
    resolved = paid.resolve(dispute["id"], "owner").json()
    assert (resolved["status"], resolved["refund_pending"]) == ("resolved_for_owner", True)
    assert settle_due(world.ctx) == 0  # still nothing to pay it with
    received, done = paid.funded_and_settled(3000)
    assert received == 3000
    assert (done["refund_pending"], done["refunded_amount"]) == (False, 3000)


def test_refunds_while_open_reduce_what_a_resolution_refunds(world: World) -> None:
    paid = paid_merchant(world)
    dispute = paid.opened()
    refund = world.api.post(
        f"/v1/merchants/me/payments/{paid.payment_id}/refunds",
        json={"amount": 100, "idempotency_key": "r1"},
        headers=paid.payee_key,
    )
    assert refund.status_code == 200, refund.text
    resolved = paid.resolve(dispute["id"], "owner").json()
    assert resolved["refunded_amount"] == 350
    assert paid.payment()["refunded_amount"] == 450


def test_a_refund_committed_while_the_payee_accepts_is_counted(world: World) -> None:
    paid = paid_merchant(world)
    dispute = paid.opened()
    blocker = world.ctx.db.engine.connect()  # a merchant's refund of 100, not committed yet
    held = blocker.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
    wallet_store.refund(
        blocker, payment_id=paid.payment_id, amount_minor=100, now=world.ctx.clock()
    )
    with ThreadPoolExecutor(1) as pool:
        accepting = pool.submit(paid.respond, dispute["id"], "accept")
        time.sleep(0.5)  # the acceptance has read the payment, or waits to
        held.commit()
        blocker.close()
        answer = accepting.result(timeout=30)
    assert answer.status_code == 200, answer.text  # read unlocked: 409 refund_exceeds_payment
    assert answer.json()["refunded_amount"] == 350
    assert paid.payment()["refunded_amount"] == 450


def test_what_cannot_be_disputed(world: World, clock: Clock) -> None:
    paid = paid_merchant(world)
    for amount in (0, 451):
        answer = paid.dispute(amount=amount)
        assert answer.status_code == 422, answer.text
    assert paid.dispute(reason="bored").status_code == 422
    pump = world.device("pump", category="fuel")
    car = world.device("car2", rules={"currency": "EUR"})
    hold = car.send(car.order(type="hold", payee=pump.id, amount=500, currency="EUR"))
    held = world.api.post(
        f"/v1/payments/{hold['payment_id']}/disputes",
        json={"reason": "not_received", "message": "m"},
        headers=car.owner,
    )
    assert held.status_code == 409 and held.json()["error"]["code"] == "payment_not_disputable"
    for amount in (0, 1):  # a bad amount is 422 before the 409 (nothing captured: 1 is too much)
        bad = world.api.post(
            f"/v1/payments/{hold['payment_id']}/disputes",
            json={"reason": "not_received", "message": "m", "amount": amount},
            headers=car.owner,
        )
        assert bad.status_code == 422, bad.text
    pump.send(pump.order(type="capture", payment_id=hold["payment_id"], amount=400))
    clock.advance(120 * 86400 + 10)
    late = paid.dispute()
    assert late.status_code == 409 and late.json()["error"]["code"] == "dispute_window_closed"


def test_a_captured_hold_is_disputed_by_its_captured_amount(world: World) -> None:
    pump = world.device("pump", category="fuel")
    car = world.device("car", rules={"currency": "EUR"})
    hold = car.send(car.order(type="hold", payee=pump.id, amount=500, currency="EUR"))
    pump.send(pump.order(type="capture", payment_id=hold["payment_id"], amount=400))
    url = f"/v1/payments/{hold['payment_id']}/disputes"
    body = {"reason": "amount_incorrect", "message": "m"}
    opened = world.api.post(url, json=body, headers=car.owner)
    assert opened.status_code == 201 and opened.json()["amount"] == 400
    answered = world.api.post(
        f"/v1/disputes/{opened.json()['id']}/response",
        json={"decision": "accept", "message": "sorry"},
        headers=pump.owner,
    )
    assert answered.status_code == 200, answered.text


def test_every_step_is_in_the_audit_log_and_the_evidence(world: World) -> None:
    paid = paid_merchant(world)
    dispute = paid.opened()
    paid.respond(dispute["id"], "contest")
    paid.resolve(dispute["id"], "owner")
    bundle = world.api.get(f"/v1/payments/{paid.payment_id}/evidence", headers=ADMIN).json()
    actions = [e["content"]["action"] for e in bundle["audit"]["entries"]]
    assert actions[1:] == [
        "dispute.opened",
        "dispute.answered",
        "dispute.refunded",
        "dispute.resolved",
    ]
    assert verify_bundle(bundle, world.api.get("/v1/ca").content) == []


def test_each_party_lists_its_own(world: World) -> None:
    paid = paid_merchant(world)
    dispute = paid.opened()
    other = paid_merchant(world)
    other.opened()
    for headers in (paid.payer.owner, paid.payee_key):
        items = world.api.get("/v1/disputes", headers=headers).json()["items"]
        assert [d["id"] for d in items] == [dispute["id"]]
    everything = world.api.get("/v1/disputes", headers=ADMIN).json()
    assert len(everything["items"]) == 2 and everything["next_cursor"] is None
    first = world.api.get("/v1/disputes", headers=ADMIN, params={"limit": 1}).json()
    rest = world.api.get(
        "/v1/disputes", headers=ADMIN, params={"limit": 1, "cursor": first["next_cursor"]}
    ).json()
    assert [first["items"][0]["id"], rest["items"][0]["id"]] == [
        d["id"] for d in everything["items"]
    ]
    assert world.api.get("/v1/disputes", headers=paid.payer.integrator).status_code == 403


def test_who_may_open_answer_and_resolve(world: World) -> None:
    paid = paid_merchant(world)
    stranger = world.device("stranger")
    assert paid.dispute(headers=stranger.owner).status_code == 404
    assert paid.dispute(headers=paid.payer.integrator).status_code == 403
    assert paid.dispute(headers=paid.payee_key).status_code == 403
    assert paid.dispute(headers=ADMIN).status_code == 403
    dispute = paid.opened()
    assert paid.respond(dispute["id"], "accept", paid.payer.owner).status_code == 404
    assert paid.respond(dispute["id"], "accept", stranger.owner).status_code == 404
    assert paid.respond(dispute["id"], "accept", ADMIN).status_code == 403
    assert paid.respond(dispute["id"], "accept", paid.payer.integrator).status_code == 403
    for headers in (paid.payer.owner, paid.payee_key, paid.payer.integrator):
        assert paid.resolve(dispute["id"], "owner", headers).status_code == 403
    assert paid.resolve("dsp_missing", "owner").status_code == 404
    other_shop = world.party("merchants", {"name": "Other", "category": "retail"})
    assert paid.respond(dispute["id"], "accept", bearer(other_shop["api_key"])).status_code == 404


def test_the_housekeeper_resolves_what_its_clock_says_is_due(world: World, clock: Clock) -> None:
    from gateway.mqtt.housekeeper import Housekeeper

    paid = paid_merchant(world)
    dispute = paid.opened()
    keeper = Housekeeper(world.ctx, [])
    keeper.tick()
    listed = world.api.get("/v1/disputes", headers=ADMIN).json()["items"]
    assert [(d["id"], d["status"]) for d in listed] == [(dispute["id"], "open")]
    clock.advance(7 * 86400 + 1)
    keeper.tick()
    listed = world.api.get("/v1/disputes", headers=ADMIN).json()["items"]
    assert [(d["id"], d["status"]) for d in listed] == [(dispute["id"], "resolved_for_owner")]


def test_opening_again_after_a_full_refund_by_the_dispute_is_409_dispute_exists(
    world: World,
) -> None:
    """A client whose 201 was lost retries the same body after the payee accepted: the payment
    holds nothing left to refund, yet the answer is that it was disputed, not a bad body."""
    paid = paid_merchant(world)
    dispute = paid.opened()  # no amount: all of it
    assert paid.respond(dispute["id"], "accept").json()["refunded_amount"] == paid.amount
    before = world.balance(paid.payer)
    again = paid.dispute()
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "dispute_exists"
    assert world.balance(paid.payer) == before
    listed = world.api.get("/v1/disputes", headers=paid.payer.owner).json()["items"]
    assert [d["id"] for d in listed] == [dispute["id"]]


def test_a_refund_while_the_resolution_waits_for_funds_counts_toward_it(world: World) -> None:
    """A pending refund is what the payee still owes for the dispute: the payee's own refund of
    that payment in the meantime pays part of it, never on top of it."""
    paid = pump_that_spent(world)  # 100 left in the pump
    dispute = paid.opened(amount=1000)
    resolved = paid.resolve(dispute["id"], "owner").json()
    assert (resolved["refund_pending"], resolved["refunded_amount"]) == (True, 0)
    assert paid.refund_by_pump(100)["status"] == "refunded"
    received, done = paid.funded_and_settled(3000)
    assert received == 900
    assert (done["refund_pending"], done["refunded_amount"]) == (False, 900)
    assert paid.payment()["refunded_amount"] == 1000


def test_a_pending_refund_the_payee_paid_by_itself_ends_without_more_funds(world: World) -> None:
    paid = pump_that_spent(world)  # 100 left in the pump
    dispute = paid.opened(amount=100)
    shop = world.party("merchants", {"name": "Spend more", "category": "retail"})
    assert paid.pump is not None and paid.pump.pay(shop["id"], 50) == ("approved", None)  # 50 left
    assert paid.resolve(dispute["id"], "owner").json()["refund_pending"] is True
    assert settle_due(world.ctx) == 0
    assert paid.refund_by_pump(50)["status"] == "refunded"  # its last 50
    assert settle_due(world.ctx) == 0  # 50 still owed, nothing left to pay it with
    [waiting] = world.api.get("/v1/disputes", headers=paid.payer.owner).json()["items"]
    assert waiting["refund_pending"] is True
    other = world.device("buyer", rules={"currency": "EUR"})
    assert other.pay(paid.payee_id, 50) == ("approved", None)
    assert paid.refund_by_pump(50)["status"] == "refunded"
    before = world.balance(paid.payer)
    assert settle_due(world.ctx) == 1  # owed nothing more: over, with an empty wallet
    assert world.balance(paid.payer) == before
    [done] = world.api.get("/v1/disputes", headers=paid.payer.owner).json()["items"]
    assert (done["status"], done["refund_pending"]) == ("resolved_for_owner", False)
    assert paid.payment()["refunded_amount"] == 100
