"""A bundle's certificates are valid when `kym evidence verify` checks them: the device's at the
order's `ts` (after a renewal with the same key; an order stamped past its certificate's end is
refused, so that every payment's bundle can verify), the gateway's at the tree head's `ts`
(after the signer's renewal, a head signed since)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from devices import keystore, wire
from devices import store as device_store
from devices.registry import DeviceCertificate
from gateway.audit import store as audit_store
from gateway.evidence.bundle import evidence_bundle
from gateway.orders.decide import decide_messages
from gateway.orders.verified import Verified
from gateway.parties import Party
from tests.evidence import independent
from tests.support.evidence import kym_verify
from tests.support.world import Clock, Dev, World

DAY_S = 86_400
ADMIN_PARTY = Party("admin", "admin")


def certificates(world: World, dev: Dev) -> list[DeviceCertificate]:
    with world.ctx.db.read() as conn:
        return device_store.list_certificates(conn, dev.id)


def renew_with_the_same_key(world: World, dev: Dev) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, dev.id)]))
        .sign(dev.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    renewed = world.api.post(
        f"/v1/devices/{dev.id}/certificates", json={"csr": csr}, headers=dev.integrator
    )
    assert renewed.status_code == 201, renewed.text


def verified_bundle(world: World, tmp_path: Path, dev: Dev, payment_id: str) -> dict[str, Any]:
    bundle = world.api.get(f"/v1/payments/{payment_id}/evidence", headers=dev.owner).json()
    ca = world.api.get("/v1/ca").content
    independent.check(bundle, ca)
    code, output = kym_verify(tmp_path, bundle, ca)
    assert code == 0, output
    return dict(bundle)


def serial_of(pem: str) -> str:
    return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")


def pay(dev: Dev, payee: str, **changes: Any) -> dict[str, Any]:
    return {**dev.order(type="pay", payee=payee, amount=100, currency="EUR"), **changes}


def test_after_a_same_key_renewal_the_bundle_names_the_certificate_valid_at_the_order(
    world: World, clock: Clock, tmp_path: Path
) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    before = car.send(pay(car, shop["id"]))
    clock.advance(80 * DAY_S)
    renew_with_the_same_key(world, car)
    first, renewed = sorted(certificates(world, car), key=lambda c: c.issued_at)
    both = car.send(pay(car, shop["id"]))  # both valid: the latest issued
    clock.advance(15 * DAY_S)  # the first certificate (90 days) has ended
    after = car.send(pay(car, shop["id"]))
    expected = [(before, first), (both, renewed), (after, renewed)]
    for result, certificate in expected:
        assert result["status"] == "approved", result
        bundle = verified_bundle(world, tmp_path, car, result["payment_id"])
        assert serial_of(bundle["order"]["certificate"]) == certificate.serial


def test_an_order_stamped_after_its_certificate_ends_is_refused(
    world: World, clock: Clock, tmp_path: Path
) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    [certificate] = certificates(world, car)
    end = int(certificate.not_after.timestamp())
    clock.advance(end - clock().timestamp() - 60)  # its last minute
    late = pay(car, shop["id"], ts=end + 140)  # the device's clock 200 s ahead: fresh enough
    refused = car.send(late)
    assert (refused["status"], refused["reason"]) == ("rejected", "invalid_signature")
    ahead = Verified("ES256", frozenset({certificate.serial}), frozenset({certificate.serial}))
    entries = decide_messages(
        world.ctx, world.keyring, [(car.topic, car.sign(late))], clock(), None, [ahead]
    )
    [answer] = [wire.decode(token)[1] for _id, _topic, token in entries]
    assert answer["reason"] == "invalid_signature"  # the same, when checked ahead
    stale = pay(car, shop["id"], ts=end + 400)  # stale first, whatever its certificate
    assert car.send(stale)["reason"] == "stale_order"
    within = car.send(pay(car, shop["id"], ts=end - 10))
    assert within["status"] == "approved", within
    verified_bundle(world, tmp_path, car, within["payment_id"])


def test_after_the_signer_is_renewed_a_bundle_carries_a_head_signed_since(
    world: World, clock: Clock, tmp_path: Path
) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    paid = car.send(pay(car, shop["id"]))
    verified_bundle(world, tmp_path, car, paid["payment_id"])  # a head covering it is signed
    clock.advance(710 * DAY_S)  # `kym serve` starts again: its signer is renewed, same key
    pki = world.ctx.pki
    renewed = keystore.load_or_create_pki(pki.paths.ca_dir.parent, pki.trust_domain, clock())
    assert renewed.signer.certificate != pki.signer.certificate
    ctx = replace(world.ctx, pki=renewed)
    ca = world.api.get("/v1/ca").content
    bundle = evidence_bundle(ctx, ADMIN_PARTY, paid["payment_id"])  # the log has not grown
    code, output = kym_verify(tmp_path, bundle, ca)  # (the tests' verifier checks at today)
    assert code == 0, output
    car.send(pay(car, shop["id"]))  # it has grown: a head of its new size is signed and kept
    again = evidence_bundle(ctx, ADMIN_PARTY, paid["payment_id"])
    code, output = kym_verify(tmp_path, again, ca)
    assert code == 0, output
    with world.ctx.db.read() as conn:
        latest = audit_store.latest_head(conn)
    assert latest is not None and latest[1] == again["audit"]["tree_head"]
