"""Contract sections 8 and 9: a payment paid by instalments has the consent basis `instalments`
naming its plan, whether the owner agreed in advance or approved the offer, and its evidence
bundle passes `kym evidence verify` (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from devices import wire
from tests.funding.offer_setup import decide, offering, pay
from tests.support.evidence import kym_verify
from tests.support.world import Dev, World


def consent_of(world: World, car: Dev, payment_id: str) -> dict[str, Any]:
    """The payment's consent as its bundle signs it, after the bundle verifies offline."""
    response = world.api.get(f"/v1/payments/{payment_id}/evidence", headers=car.owner)
    assert response.status_code == 200, response.text
    bundle = response.json()
    code, output = kym_verify(world.tmp, bundle, world.api.get("/v1/ca").content)
    assert code == 0, output
    assert bundle["consent"]["basis"] == "instalments"
    return dict(wire.decode(bundle["consent"]["jws"])[1])


def test_agreed_in_advance_the_gateway_decided_under_the_rules_and_the_plan(
    world: World,
) -> None:
    shop, car, line = offering(world, auto_accept_up_to=5_000)
    paid = pay(car, shop["id"], 5_000)
    assert paid["status"] == "approved"
    [funded] = paid["funded_by"]
    consent = consent_of(world, car, paid["payment_id"])
    assert consent["plan_id"] == funded["plan_id"] and consent["decided_by"] == "gateway"
    assert "rules_sha256" in consent and consent["basis"] == "instalments"


def test_approved_with_instalments_the_owner_decided_on_the_approval(world: World) -> None:
    shop, car, line = offering(world)
    order = car.order(type="pay", payee=shop["id"], amount=5_000, currency="EUR")
    waiting = car.send(order)
    decided = decide(world, car, waiting["approval_id"], decision="approve", instalments=3)
    assert decided.status_code == 200, decided.text
    paid = car.send(order)
    owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    consent = consent_of(world, car, paid["payment_id"])
    assert consent["approval_id"] == waiting["approval_id"]
    assert consent["plan_id"] == decided.json()["result"]["plan_id"]
    assert consent["decided_by"] == owner_id
