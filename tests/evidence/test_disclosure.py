"""Disclosure (contract section 9): legal names, support contacts and `GET /v1/payees/{id}`."""

from __future__ import annotations

from typing import Any

from tests.support.world import ADMIN, World, bearer

SHOP = {
    "name": "City Parking",
    "category": "parking",
    "legal_name": "City Parking GmbH",
    "support_email": "help@cityparking.example",
    "support_url": "https://cityparking.example/help",
}


def test_merchant_discloses_its_legal_name_and_contacts_to_any_party(world: World) -> None:
    shop = world.party("merchants", SHOP)
    owner = world.party("owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    integrator = world.party("integrators", {"name": "ACME"})
    for key in (owner["api_key"], integrator["api_key"], shop["api_key"]):
        answer = world.api.get(f"/v1/payees/{shop['id']}", headers=bearer(key))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "id": shop["id"],
            "kind": "merchant",
            "name": "City Parking",
            "legal_name": "City Parking GmbH",
            "category": "parking",
            "support": {
                "email": "help@cityparking.example",
                "url": "https://cityparking.example/help",
            },
        }
    assert world.api.get(f"/v1/payees/{shop['id']}", headers=ADMIN).status_code == 200


def test_without_disclosure_the_legal_name_is_the_name_and_contacts_are_null(
    world: World,
) -> None:
    shop = world.party("merchants", {"name": "Kiosk", "category": "retail"})
    answer = world.api.get(f"/v1/payees/{shop['id']}", headers=ADMIN).json()
    assert answer["legal_name"] == "Kiosk"
    assert answer["support"] == {"email": None, "url": None}


def test_device_payee_is_named_by_its_integrator_and_model(world: World) -> None:
    pump = world.device("pump", category="fuel")
    plain = world.device("plain")
    answer = world.api.get(f"/v1/payees/{pump.id}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["kind"], body["name"], body["legal_name"]) == ("device", "pump M", "pump")
    assert body["category"] == "fuel"
    assert body["support"] == {"email": None, "url": None}
    assert world.api.get(f"/v1/payees/{plain.id}", headers=ADMIN).status_code == 404
    assert world.api.get("/v1/payees/nobody", headers=ADMIN).status_code == 404
    assert world.api.get(f"/v1/payees/{pump.id}").status_code == 401


def test_integrator_contacts_are_its_device_payees_contacts(world: World) -> None:
    integrator = world.party(
        "integrators",
        {
            "name": "Pumps Inc",
            "legal_name": "Pumps Inc. Ltd",
            "support_url": "https://pumps.example",
        },
    )
    assert integrator["id"]
    found = world.api.get(f"/v1/payees/{integrator['id']}", headers=ADMIN)
    assert found.status_code == 404  # an integrator is not a payee


def test_bad_contacts_are_refused(world: World) -> None:
    bad: list[dict[str, Any]] = [
        {"support_email": "nobody.example"},
        {"support_url": "http://shop.example"},
        {"support_url": "ftp://shop.example"},
        {"legal_name": ""},
    ]
    for extra in bad:
        body = {"name": "Shop", "category": "retail", **extra}
        answer = world.api.post("/v1/merchants", json=body, headers=ADMIN)
        assert answer.status_code == 422, (extra, answer.text)
        answer = world.api.post("/v1/integrators", json={"name": "I", **extra}, headers=ADMIN)
        assert answer.status_code == 422, (extra, answer.text)


def test_payment_items_name_the_payee_and_its_support(world: World) -> None:
    shop = world.party("merchants", SHOP)
    car = world.device("car", rules={"currency": "EUR"})
    assert car.pay(shop["id"], 450) == ("approved", None)
    items = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"]
    assert items[0]["payee_name"] == "City Parking"
    assert items[0]["support"] == SHOP_SUPPORT
    mine = world.api.get("/v1/merchants/me/payments", headers=bearer(shop["api_key"])).json()
    assert mine["items"][0]["support"] == SHOP_SUPPORT


SHOP_SUPPORT = {"email": "help@cityparking.example", "url": "https://cityparking.example/help"}


def test_approval_items_name_the_payee_and_its_support(world: World) -> None:
    shop = world.party("merchants", SHOP)
    fridge = world.device("fridge")  # no rules: the pay waits for the owner
    assert fridge.pay(shop["id"], 4000) == ("pending_approval", None)
    items = world.api.get("/v1/approvals", headers=fridge.owner).json()["items"]
    assert items[0]["payee_name"] == "City Parking"
    assert items[0]["support"] == SHOP_SUPPORT


def test_a_device_payee_without_category_still_names_its_integrator(world: World) -> None:
    integrator = {"support_email": "help@pumps.example"}
    body = {"name": "Pumps", **integrator}
    made = world.party("integrators", body)
    assert made["id"]
    car = world.device("car", rules={"currency": "EUR"})
    peer = world.device("peer")
    car.pay(peer.id, 100)
    items = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"]
    assert items[0]["payee_name"] == "peer M"
    assert items[0]["support"] == {"email": None, "url": None}
