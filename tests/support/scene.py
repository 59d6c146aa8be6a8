"""The MQTT abuse tests' scene: a merchant, a victim device and an attacker device, connected."""

from __future__ import annotations

import itertools
from typing import Any

from devices import wire
from tests.e2e.orders import Payer, setup_payer
from tests.support.stack import Stack

OPEN = {"currency": "EUR"}  # rules that let every payment within them through
_names = itertools.count(1)


class Scene:
    """A merchant, a victim device and an attacker device, both funded and connected."""

    def __init__(self, stack: Stack) -> None:
        n = next(_names)
        self.stack = stack
        self.shop = stack.party("merchants", {"name": f"shop {n}", "category": "fuel"})
        self.victim = setup_payer(stack, f"victim-{n}", rules=OPEN)
        self.attacker = setup_payer(stack, f"attacker-{n}", rules=OPEN)

    def balances(self) -> dict[str, int]:
        def wallet(payer: Payer) -> int:
            headers = {"Authorization": f"Bearer {payer.device.owner_key}"}
            response = self.stack.api.get(f"/v1/devices/{payer.id}/wallet", headers=headers)
            return int(response.json()["balance"])

        shop = self.stack.api.get(
            "/v1/merchants/me/wallet", headers={"Authorization": f"Bearer {self.shop['api_key']}"}
        ).json()["balance"]
        return {"victim": wallet(self.victim), "attacker": wallet(self.attacker), "shop": shop}

    def pay(self, payer: Payer, amount: int = 100) -> dict[str, Any]:
        return payer.order(type="pay", payee=self.shop["id"], amount=amount, currency="EUR")

    def attacker_signs(self, order: dict[str, Any]) -> bytes:
        return wire.sign(order, self.attacker.key).encode()

    def still_serves(self) -> None:
        """The victim pays as usual afterwards, and exactly that payment moves money."""
        before = self.balances()
        result = self.victim.send(self.pay(self.victim, 7))
        assert result is not None and result["status"] == "approved", result
        after = self.balances()
        assert (after["victim"], after["shop"]) == (before["victim"] - 7, before["shop"] + 7)

    def close(self) -> None:
        self.victim.close()
        self.attacker.close()
