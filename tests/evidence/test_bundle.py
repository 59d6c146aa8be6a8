"""Evidence bundles (contract section 9): every part, checked by a verifier written in the tests
from the RFCs and by `kym evidence verify`; who may have one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from devices import wire
from tests.evidence import independent
from tests.evidence.scenes import ADMIN, SCENES, within_rules
from tests.support.evidence import kym_verify
from tests.support.world import World, bearer


@pytest.mark.parametrize("basis", sorted(SCENES))
def test_bundle_verifies_independently_and_with_the_cli(
    world: World, tmp_path: Path, basis: str
) -> None:
    scene = SCENES[basis](world)
    bundle = scene.bundle()
    independent.check(bundle, scene.ca())
    code, output = kym_verify(tmp_path, bundle, scene.ca())
    assert code == 0, output
    assert bundle["consent"]["basis"] == basis
    assert len(bundle["consent"]["rules_salt"]) == 64 if basis == "rules" else True


def test_bundle_holds_the_order_as_received_and_every_result_about_it(world: World) -> None:
    scene = SCENES["mandate"](world)
    bundle = scene.bundle()
    payloads = [wire.decode(token)[1] for token in bundle["results"]]
    kinds = [p.get("status") or p.get("event") for p in payloads]
    assert kinds == ["hold_placed", "approved", "hold_captured", "captured"], kinds
    assert all(p["payment_id"] == scene.payment_id for p in payloads)
    assert not any(p["device_id"] == scene.stranger.id for p in payloads)  # a stranger's refusal
    order = wire.decode(bundle["order"]["jws"])[1]
    assert (order["order_id"], order["device_id"]) == (scene.order_id, scene.payer.id)
    actions = [e["content"]["action"] for e in bundle["audit"]["entries"]]
    assert actions == ["order.approved", "order.captured"], actions
    assert all(e["content"]["device_id"] != scene.stranger.id for e in bundle["audit"]["entries"])


def test_a_conflicting_resend_of_the_order_is_in_the_results_and_the_entries(
    world: World, tmp_path: Path
) -> None:
    """The payer signed again under the order's id with another payload: its `rejected`
    result names the order, and so does its audit entry, which is the payer device's (its
    signature verified), so both are about the payment."""
    scene = SCENES["rules"](world)
    again = scene.payer.order(type="pay", payee="x", amount=1, currency="EUR")
    again["order_id"] = scene.order_id
    assert scene.payer.send(again)["reason"] == "idempotency_conflict"
    bundle = scene.bundle()
    reasons = [wire.decode(token)[1].get("reason") for token in bundle["results"]]
    assert reasons == [None, "idempotency_conflict"]
    contents = [e["content"] for e in bundle["audit"]["entries"]]
    assert [c["action"] for c in contents] == ["order.approved", "order.rejected"]
    rejected = contents[1]
    assert (rejected["device_id"], rejected["order_id"]) == (scene.payer.id, scene.order_id)
    assert rejected["actor"] == f"device:{scene.payer.id}"
    independent.check(bundle, scene.ca())
    code, output = kym_verify(tmp_path, bundle, scene.ca())
    assert code == 0, output


def test_an_approved_order_brings_its_pending_result_and_entries(world: World) -> None:
    scene = SCENES["approval"](world)
    bundle = scene.bundle()
    statuses = [wire.decode(token)[1].get("status") for token in bundle["results"]]
    assert statuses == ["pending_approval", "approved"]
    actions = [e["content"]["action"] for e in bundle["audit"]["entries"]]
    assert actions == ["order.pending_approval", "approval.approve"]
    consent = wire.decode(bundle["consent"]["jws"])[1]
    owner = world.api.get("/v1/owners/me", headers=scene.payer.owner).json()["id"]
    assert consent["decided_by"] == owner and "rules_salt" not in bundle["consent"]


def test_who_may_have_a_bundle_and_who_sees_the_salt(world: World) -> None:
    scene = within_rules(world)
    assert "rules_salt" in scene.bundle(scene.payer.owner)["consent"]
    assert "rules_salt" in scene.bundle(ADMIN)["consent"]
    assert "rules_salt" not in scene.bundle(scene.payee_key)["consent"]  # the merchant paid
    url = f"/v1/payments/{scene.payment_id}/evidence"
    assert world.api.get(url, headers=scene.stranger.owner).status_code == 404
    assert world.api.get(url, headers=scene.payer.integrator).status_code == 403
    assert world.api.get(url).status_code == 401
    other_shop = world.party("merchants", {"name": "Other", "category": "retail"})
    assert world.api.get(url, headers=bearer(other_shop["api_key"])).status_code == 404
    missing = world.api.get("/v1/payments/pay_missing/evidence", headers=ADMIN)
    assert missing.status_code == 404


def test_payee_device_owner_may_have_the_bundle_without_the_salt(world: World) -> None:
    scene = SCENES["mandate"](world)
    bundle = scene.bundle(scene.payee_key)
    assert "rules_salt" not in bundle["consent"]
    independent.check(bundle, scene.ca())


def test_salt_opens_the_rules_digest(world: World) -> None:
    scene = within_rules(world)
    bundle = scene.bundle()
    consent = wire.decode(bundle["consent"]["jws"])[1]
    rules = world.api.get(f"/v1/devices/{scene.payer.id}/rules", headers=scene.payer.owner).json()
    opened = independent.jcs({"rules": rules, "salt": bundle["consent"]["rules_salt"]})
    assert consent["rules_sha256"] == hashlib.sha256(opened).hexdigest()


def test_rules_digest_from_cached_jcs_equals_the_rfc8785_one() -> None:
    from gateway.evidence import consent

    rules = {"currency": "EUR", "limits": [{"period": "day", "amount": 20000}], "x": "é\u2028"}
    salt = "ab" * 32
    fast = consent.rules_sha256_of_jcs(independent.jcs(rules), salt)
    assert fast == consent.rules_sha256(rules, salt)


def test_consent_payloads_name_their_basis_reference() -> None:
    from gateway.evidence import consent

    by = {
        basis: consent.payload("pay_1", "o-1", basis, "ref", "own_1", 5, plan_id=plan)
        for basis, plan in (
            ("rules", None),
            ("mandate", None),
            ("approval", None),
            ("instalments", "pln_1"),
        )
    }
    assert by["rules"]["rules_sha256"] == by["mandate"]["mandate_id"] == "ref"
    assert by["approval"]["approval_id"] == "ref"
    assert (by["instalments"]["approval_id"], by["instalments"]["plan_id"]) == ("ref", "pln_1")
    assert set(by["rules"]) == {
        "payment_id", "order_id", "basis", "rules_sha256", "decided_by", "decided_at"
    }  # fmt: skip
