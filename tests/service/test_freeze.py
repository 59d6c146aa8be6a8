"""Contract section 7: the owner's freeze switch, alerts that are not rules, and section 8's
currency check for new devices and merchants (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from tests.support.openssl import make_openssl_csr
from tests.support.world import ADMIN, World, bearer


def freeze(world: World, headers: dict[str, str], on: bool) -> Any:
    response = world.api.post(f"/v1/owners/me/{'freeze' if on else 'unfreeze'}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_frozen_owner_pays_nothing_and_approves_nothing_until_unfrozen(world: World) -> None:
    shop = world.merchant("groceries")
    fridge = world.device("fridge", rules={"currency": "EUR", "approval_above": 100})
    waiting = fridge.send(fridge.order(type="pay", payee=shop["id"], amount=300, currency="EUR"))
    also = fridge.send(fridge.order(type="pay", payee=shop["id"], amount=200, currency="EUR"))
    me = world.api.get("/v1/owners/me", headers=fridge.owner).json()
    assert me["frozen"] is False and me["timezone"] == "Europe/Berlin" and me["name"] == "fridge"
    assert freeze(world, fridge.owner, True) == {"frozen": True}
    assert freeze(world, fridge.owner, True) == {"frozen": True}  # asking again is fine
    assert world.api.get("/v1/owners/me", headers=fridge.owner).json()["frozen"] is True
    assert fridge.pay(shop["id"], 10) == ("declined", "owner_frozen")
    hold = fridge.send(fridge.order(type="hold", payee=shop["id"], amount=10, currency="EUR"))
    assert (hold["status"], hold["reason"]) == ("declined", "owner_frozen")
    approve = {"decision": "approve"}
    url = f"/v1/approvals/{waiting['approval_id']}"
    refused = world.api.post(url, headers=fridge.owner, json=approve)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "owner_frozen"
    pending = world.api.get("/v1/approvals?status=pending", headers=fridge.owner).json()["items"]
    assert {a["id"] for a in pending} == {waiting["approval_id"], also["approval_id"]}
    declined = world.api.post(
        f"/v1/approvals/{also['approval_id']}", headers=fridge.owner, json={"decision": "decline"}
    )
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    assert fridge.act("suspend").status_code == 200
    assert fridge.pay(shop["id"], 10) == ("declined", "device_not_active")  # the device first
    assert fridge.act("resume").status_code == 200
    assert freeze(world, fridge.owner, False) == {"frozen": False}
    approved = world.api.post(url, headers=fridge.owner, json=approve)
    assert approved.status_code == 200 and approved.json()["result"]["status"] == "approved"
    assert fridge.pay(shop["id"], 10) == ("approved", None)
    actions = [
        e["action"]
        for e in world.api.get(f"/v1/devices/{fridge.id}/audit", headers=fridge.owner).json()[
            "items"
        ]
    ]
    assert "order.approved" in actions


def test_captures_voids_and_refunds_go_on_while_frozen(world: World) -> None:
    shop = world.merchant("fuel")
    car = world.device("car", rules={"currency": "EUR"})
    held = car.send(car.order(type="hold", payee=shop["id"], amount=500, currency="EUR"))
    paid = car.send(car.order(type="pay", payee=shop["id"], amount=50, currency="EUR"))
    assert held["status"] == paid["status"] == "approved"
    freeze(world, car.owner, True)
    merchant = bearer(shop["api_key"])
    base = "/v1/merchants/me/payments"
    capture = world.api.post(
        f"{base}/{held['payment_id']}/capture",
        headers=merchant,
        json={"amount": 300, "idempotency_key": "c1"},
    )
    assert capture.status_code == 200 and capture.json()["status"] == "captured"
    refund = world.api.post(
        f"{base}/{paid['payment_id']}/refunds",
        headers=merchant,
        json={"amount": 20, "idempotency_key": "r1"},
    )
    assert refund.status_code == 200 and refund.json()["refunded_amount"] == 20
    assert car.wallet()["balance"] == 10_000 - 300 - 50 + 20


def test_a_freeze_is_the_owners_alone(world: World) -> None:
    shop = world.merchant("fuel")
    frozen = world.device("frozen", rules={"currency": "EUR"})
    free = world.device("free", rules={"currency": "EUR"})
    freeze(world, frozen.owner, True)
    assert frozen.pay(shop["id"], 5) == ("declined", "owner_frozen")
    assert free.pay(shop["id"], 5) == ("approved", None)
    for headers in (ADMIN, bearer(shop["api_key"]), frozen.integrator):
        for method, path in (("POST", "/v1/owners/me/freeze"), ("GET", "/v1/owners/me")):
            assert world.api.request(method, path, headers=headers).status_code == 403


def test_an_alert_alone_is_no_rules_for_consent(world: World) -> None:
    shop = world.merchant("groceries")
    fridge = world.device("fridge", rules={"low_balance_alert": 2000})
    asked = fridge.send(fridge.order(type="pay", payee=shop["id"], amount=5, currency="EUR"))
    assert asked["status"] == "pending_approval"
    [item] = world.api.get("/v1/approvals", headers=fridge.owner).json()["items"]
    assert item["why"] == "no_rules"
    shown = world.api.get(f"/v1/devices/{fridge.id}/rules", headers=fridge.owner).json()
    assert shown["low_balance_alert"] == 2000
    fridge.put_rules(shown)  # the answer PUT back is still only an alert
    again = fridge.send(fridge.order(type="pay", payee=shop["id"], amount=5, currency="EUR"))
    assert again["status"] == "pending_approval"
    fridge.put_rules({"low_balance_alert": 0, "currency": "EUR"})
    assert fridge.pay(shop["id"], 5) == ("approved", None)
    for bad in ({"low_balance_alert": -1}, {"low_balance_alert": 1.5}):
        put = world.api.put(f"/v1/devices/{fridge.id}/rules", json=bad, headers=fridge.owner)
        assert put.status_code == 422, bad


def test_new_wallets_need_an_active_iso_4217_currency(world: World) -> None:
    for code in ("XYZ", "XXX", "XTS", "XAU", "BOV", "USN", "XDR"):
        body = {"name": "shop", "category": "retail", "currency": code}
        refused = world.api.post("/v1/merchants", json=body, headers=ADMIN)
        assert refused.status_code == 422, code
        assert refused.json()["error"]["code"] == "currency_not_allowed"
    for code in ("JPY", "CHF", "KWD"):
        body = {"name": "shop", "category": "retail", "currency": code}
        assert world.api.post("/v1/merchants", json=body, headers=ADMIN).status_code == 201
    owner = world.party("owners", {"name": "o", "timezone": "UTC"})
    maker = world.party("integrators", {"name": "m"})
    _key, csr = make_openssl_csr(world.tmp, "iso")
    device = {"owner_id": owner["id"], "kind": "car", "manufacturer": "A", "model": "B"}
    device |= {"serial_number": "S-iso", "csr": csr, "currency": "XYZ"}
    refused = world.api.post("/v1/devices", json=device, headers=bearer(maker["api_key"]))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "currency_not_allowed"
    device["currency"] = "GBP"
    assert (
        world.api.post("/v1/devices", json=device, headers=bearer(maker["api_key"])).status_code
        == 201
    )
