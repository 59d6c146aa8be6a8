"""Contract section 8 over a real broker (mutual TLS): every approved result carries
`funded_by`, duplicates included, byte-for-byte re-sends of a pay and a hold whose automatic
top-ups drew on a balance source."""

from __future__ import annotations

from devices import wire
from tests.e2e.orders import setup_payer
from tests.support.stack import Stack

AUTO = {"currency": "EUR", "auto_top_up": {"below": 1_000, "to": 5_000}}


def test_a_duplicate_over_the_broker_carries_the_first_results_funded_by(gateway: Stack) -> None:
    pump = gateway.party("merchants", {"name": "pump", "category": "fuel", "currency": "EUR"})
    car = setup_payer(gateway, "car", top_up=0, rules=AUTO)
    owner = {"Authorization": f"Bearer {car.device.owner_key}"}
    body = {"name": "everyday", "kind": "balance", "currency": "EUR"}
    account = gateway.api.post("/v1/owners/me/funding-sources", headers=owner, json=body).json()
    funded = gateway.api.post(
        f"/v1/funding-sources/{account['id']}/top-ups",
        headers=owner,
        json={"amount": 20_000, "currency": "EUR", "idempotency_key": "seed"},
    )
    assert funded.status_code == 201, funded.text
    expected = {
        "pay": [{"source": account["id"], "amount": 6_000}],  # 0 -> 5,000 after 1,000
        "hold": [],  # the wallet alone: 5,000 - 1,000 leaves 4,000, not below 1,000
    }
    for kind, funded_by in expected.items():
        order = car.order(type=kind, payee=pump["id"], amount=1_000, currency="EUR")
        raw = wire.sign(order, car.key).encode()
        first = car.send(raw, order_id=order["order_id"])
        assert first is not None and first["status"] == "approved", first
        assert first["funded_by"] == funded_by
        again = car.send(raw, order_id=order["order_id"])  # byte for byte
        assert again is not None and again.get("duplicate") is True, again
        assert again["funded_by"] == funded_by and again["payment_id"] == first["payment_id"]
    [shown] = gateway.api.get("/v1/owners/me/funding-sources", headers=owner).json()["items"]
    assert shown["balance"] == 14_000  # drawn once
    car.close()
