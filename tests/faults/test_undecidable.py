"""A signed order the gateway failed to decide MAX_TRIES times gets one final `rejected` result,
and keeps it: the same bytes sent again once the fault has gone are answered with that result
as a duplicate, never decided anew (CONTRACT.md section 6, "Delivery"), on both brokers."""

from __future__ import annotations

import time

from devices import wire
from gateway.mqtt.client import Inbound
from gateway.mqtt.workers import MAX_TRIES, Entries, Publisher, Worker
from tests.e2e.orders import Payer, setup_payer
from tests.faults.inprocess import Gateway


class FailingFor(Worker):
    """The real worker, whose decision step fails for any batch holding one of `failing`."""

    failing: set[bytes]

    def _decide(self, messages: list[Inbound]) -> Entries:
        if any(m.payload in self.failing for m in messages):
            raise RuntimeError("a decision that cannot be made")
        return super()._decide(messages)


def _results(car: Payer, order_id: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [m for m in car.messages() if m.get("order_id") == order_id and "status" in m]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} results for {order_id}: {car.messages()}")


def test_an_order_given_up_as_undecidable_keeps_its_rejection_when_sent_again(
    gateway: Gateway,
) -> None:
    stack = gateway.stack
    shop = stack.party("merchants", {"name": "shop", "category": "fuel", "currency": "EUR"})
    car = setup_payer(stack, "car", top_up=10_000, rules={"currency": "EUR"})
    order = car.order(type="pay", payee=shop["id"], amount=700, currency="EUR")
    raw = wire.sign(order, car.key).encode()
    client = gateway.client()
    worker = FailingFor(stack.ctx, client, Publisher(client))
    worker.failing = {raw}
    worker.start()
    try:
        car.send(raw, wait=False)
        [first] = _results(car, order["order_id"], 1)
        assert (first["status"], first["reason"]) == ("rejected", "invalid_message")
        assert first["detail"] == f"the gateway failed to decide this message {MAX_TRIES} times"
        worker.failing = set()  # the fault is gone; the device lost the result and re-sends
        car.send(raw, wait=False)
        first, again = _results(car, order["order_id"], 2)
        assert (again["status"], again["reason"], again["duplicate"]) == (
            "rejected",
            "invalid_message",
            True,
        )
        # a new order still pays: only this one's answer was kept
        fresh = car.send(car.order(type="pay", payee=shop["id"], amount=300, currency="EUR"))
        assert fresh is not None and fresh["status"] == "approved"
    finally:
        worker.stop()
        worker.join(5)
        client.stop()
        car.close()
    owner = {"Authorization": f"Bearer {car.device.owner_key}"}
    wallet = stack.api.get(f"/v1/devices/{car.id}/wallet", headers=owner).json()
    assert wallet == {"currency": "EUR", "balance": 9_700, "available": 9_700}


def test_a_decided_order_whose_copy_cannot_be_decided_gets_its_own_result_again(
    gateway: Gateway,
) -> None:
    stack = gateway.stack
    shop = stack.party("merchants", {"name": "shop", "category": "fuel", "currency": "EUR"})
    car = setup_payer(stack, "car", top_up=10_000, rules={"currency": "EUR"})
    order = car.order(type="pay", payee=shop["id"], amount=700, currency="EUR")
    raw = wire.sign(order, car.key).encode()
    client = gateway.client()
    worker = FailingFor(stack.ctx, client, Publisher(client))
    worker.failing = set()
    worker.start()
    try:
        approved = car.send(raw, order_id=order["order_id"])
        assert approved is not None and approved["status"] == "approved"
        worker.failing = {raw}  # the copy sent again meets a fault that outlasts the tries
        car.send(raw, wait=False)
        approved, again = _results(car, order["order_id"], 2)
        assert again["status"] == "approved" and again["duplicate"] is True
        assert again["payment_id"] == approved["payment_id"] and "detail" not in again
    finally:
        worker.stop()
        worker.join(5)
        client.stop()
        car.close()
    owner = {"Authorization": f"Bearer {car.device.owner_key}"}
    wallet = stack.api.get(f"/v1/devices/{car.id}/wallet", headers=owner).json()
    assert wallet == {"currency": "EUR", "balance": 9_300, "available": 9_300}
