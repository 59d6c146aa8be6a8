"""A paid merchant and a paid pump to dispute, and the calls the tests make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from gateway.disputes.service import settle_due
from tests.support.world import ADMIN, Dev, World, bearer

__all__ = ["ADMIN", "Paid", "paid_merchant", "paid_pump", "pump_that_spent"]


@dataclass
class Paid:
    world: World
    payer: Dev
    payee_key: dict[str, str]  # who answers: the merchant, or the pump's owner
    payee_id: str
    payment_id: str
    amount: int
    pump: Dev | None = None

    @property
    def api(self) -> TestClient:
        return self.world.api

    def dispute(self, headers: dict[str, str] | None = None, **body: Any) -> Any:
        body = {"reason": "not_received", "message": "nothing came", **body}
        return self.api.post(
            f"/v1/payments/{self.payment_id}/disputes",
            json=body,
            headers=headers or self.payer.owner,
        )

    def opened(self, **body: Any) -> dict[str, Any]:
        answer = self.dispute(**body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def respond(self, dispute_id: str, decision: str, headers: dict[str, str] | None = None) -> Any:
        body = {"decision": decision, "message": "our answer"}
        url = f"/v1/disputes/{dispute_id}/response"
        return self.api.post(url, json=body, headers=headers or self.payee_key)

    def resolve(self, dispute_id: str, outcome: str, headers: dict[str, str] = ADMIN) -> Any:
        url = f"/v1/disputes/{dispute_id}/resolution"
        return self.api.post(url, json={"outcome": outcome}, headers=headers)

    def refund_by_pump(self, amount: int) -> dict[str, Any]:
        """The payee pump's own refund order for this payment; its result."""
        assert self.pump is not None
        order = self.pump.order(
            type="refund", payment_id=self.payment_id, amount=amount, currency="EUR"
        )
        return self.pump.send(order)

    def funded_and_settled(self, amount: int) -> tuple[int, dict[str, Any]]:
        """A buyer pays the payee `amount`, then the housekeeper settles one dispute: what the
        payer received, and the payer owner's only dispute as it is then."""
        buyer = self.world.device("buyer", rules={"currency": "EUR"})
        assert buyer.pay(self.payee_id, amount) == ("approved", None)
        before = self.world.balance(self.payer)
        assert settle_due(self.world.ctx) == 1
        [dispute] = self.api.get("/v1/disputes", headers=self.payer.owner).json()["items"]
        return self.world.balance(self.payer) - before, dispute

    def payment(self) -> dict[str, Any]:
        items = self.api.get(f"/v1/devices/{self.payer.id}/payments", headers=self.payer.owner)
        return next(p for p in items.json()["items"] if p["payment_id"] == self.payment_id)


def paid_merchant(world: World, amount: int = 450) -> Paid:
    shop = world.party("merchants", {"name": "Shop", "category": "parking"})
    car = world.device("car", rules={"currency": "EUR"})
    result = car.send(car.order(type="pay", payee=shop["id"], amount=amount, currency="EUR"))
    assert result["status"] == "approved", result
    return Paid(world, car, bearer(shop["api_key"]), shop["id"], result["payment_id"], amount)


def paid_pump(world: World, amount: int = 3000) -> Paid:
    pump = world.device("pump", top_up=0, rules={"currency": "EUR"}, category="fuel")
    car = world.device("car", rules={"currency": "EUR"})
    result = car.send(car.order(type="pay", payee=pump.id, amount=amount, currency="EUR"))
    assert result["status"] == "approved", result
    return Paid(world, car, pump.owner, pump.id, result["payment_id"], amount, pump)


def pump_that_spent(world: World, spent: int = 2900) -> Paid:
    """`paid_pump` (3,000 from a car), whose pump then spent `spent` of it at a shop."""
    paid = paid_pump(world)
    assert paid.pump is not None
    shop = world.party("merchants", {"name": "Spend", "category": "retail"})
    assert paid.pump.pay(shop["id"], spent) == ("approved", None)
    return paid
