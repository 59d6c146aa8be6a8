"""Payments to take evidence of: within rules, under a mandate (a hold the pump captures), and
approved by the owner; each with a stranger's refused order naming the payment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.world import ADMIN, Dev, World, bearer

SHOP = {
    "name": "City Parking",
    "category": "parking",
    "legal_name": "City Parking GmbH",
    "support_email": "help@cityparking.example",
    "support_url": "https://cityparking.example/help",
}


@dataclass
class Scene:
    world: World
    payment_id: str
    order_id: str
    payer: Dev
    payee_key: dict[str, str]  # the merchant's, or the payee device's owner's
    stranger: Dev

    def bundle(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        answer = self.world.api.get(
            f"/v1/payments/{self.payment_id}/evidence", headers=headers or self.payer.owner
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def ca(self) -> bytes:
        answer = self.world.api.get("/v1/ca")
        assert answer.status_code == 200
        return answer.content


def within_rules(world: World) -> Scene:
    """A pay to a merchant that the rules let through."""
    shop = world.party("merchants", SHOP)
    car = world.device("car", rules={"currency": "EUR", "max_amount": 5000})
    stranger = world.device("stranger", rules={"currency": "EUR"}, category="parking")
    order = car.order(type="pay", payee=shop["id"], amount=450, currency="EUR")
    result = car.send(order)
    assert result["status"] == "approved", result
    refused = stranger.send(
        stranger.order(type="refund", payment_id=result["payment_id"], amount=1)
    )
    assert refused["reason"] == "payment_not_found"
    return Scene(
        world, result["payment_id"], order["order_id"], car, bearer(shop["api_key"]), stranger
    )


def under_mandate(world: World) -> Scene:
    """A hold to a pump that a mandate covers, captured by the pump."""
    pump = world.device("pump", category="fuel")
    car = world.device("car")  # no rules: only the mandate lets it through
    made = world.api.post(
        f"/v1/devices/{car.id}/mandates",
        headers=car.owner,
        json={"payee": pump.id, "max_amount": 9000},
    )
    assert made.status_code == 201, made.text
    order = car.order(type="hold", payee=pump.id, amount=8000, currency="EUR")
    result = car.send(order)
    assert result["status"] == "approved", result
    captured = pump.send(pump.order(type="capture", payment_id=result["payment_id"], amount=6120))
    assert captured["status"] == "captured", captured
    stranger = world.device("stranger", category="fuel")
    stranger.send(stranger.order(type="void", payment_id=result["payment_id"]))
    return Scene(world, result["payment_id"], order["order_id"], car, pump.owner, stranger)


def approved_by_owner(world: World) -> Scene:
    """A pay that waited for the owner, who approved it."""
    shop = world.party("merchants", SHOP)
    fridge = world.device("fridge")  # no rules: every payment waits for the owner
    order = fridge.order(type="pay", payee=shop["id"], amount=4000, currency="EUR")
    pending = fridge.send(order)
    assert pending["status"] == "pending_approval", pending
    decided = world.api.post(
        f"/v1/approvals/{pending['approval_id']}",
        headers=fridge.owner,
        json={"decision": "approve"},
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"]["status"] == "approved", decided.text
    paid = world.api.get(f"/v1/devices/{fridge.id}/payments", headers=fridge.owner).json()
    payment_id = paid["items"][0]["payment_id"]
    stranger = world.device("stranger", rules={"currency": "EUR"})
    return Scene(world, payment_id, order["order_id"], fridge, bearer(shop["api_key"]), stranger)


SCENES = {"rules": within_rules, "mandate": under_mandate, "approval": approved_by_owner}
__all__ = ["ADMIN", "SCENES", "Scene"]
