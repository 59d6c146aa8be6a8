"""Attested registration over HTTP and certificate rotation (contract section 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from devices import store as device_store
from devices.registry import valid_certificates
from gateway.context import Context
from tests.support.gateway import bearer, create, register
from tests.support.openssl import make_openssl_csr
from tests.support.pki import leaf_for, make_manufacturer, pem


def test_attested_registration_needs_the_csr_key_in_the_chain(
    api: TestClient, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    key_path, csr = make_openssl_csr(tmp_path, "pump")
    device_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    acme = make_manufacturer("ACME", now)
    uploaded = api.post(
        "/v1/integrators/me/attestation-cas",
        json={"certificate": pem(acme.root).decode()},
        headers=bearer(integrator["api_key"]),
    )
    assert uploaded.status_code == 201 and uploaded.json()["id"]
    good_chain = pem(leaf_for(acme, device_key.public_key(), now), acme.intermediate)
    attested = register(api, integrator, owner["id"], csr, attestation=good_chain.decode())
    assert attested.status_code == 201, attested.text
    assert attested.json()["attested"] is True
    other_key = ec.generate_private_key(ec.SECP256R1())
    wrong = pem(leaf_for(acme, other_key.public_key(), now), acme.intermediate)
    _, csr2 = make_openssl_csr(tmp_path, "pump2")
    refused = register(
        api, integrator, owner["id"], csr2, serial="SN-2", attestation=wrong.decode()
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "attestation_invalid"
    foreign = make_manufacturer("Evil", now)
    _, csr3 = make_openssl_csr(tmp_path, "pump3")
    chain3 = pem(leaf_for(foreign, other_key.public_key(), now), foreign.intermediate)
    assert (
        register(
            api, integrator, owner["id"], csr3, serial="SN-3", attestation=chain3.decode()
        ).status_code
        == 422
    )


def test_rotation_keeps_at_most_two_valid_and_retires_the_old_one_on_use(
    api: TestClient, ctx: Context, tmp_path: Path
) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    first = register(api, integrator, owner["id"], make_openssl_csr(tmp_path, "a")[1]).json()
    path = f"/v1/devices/{first['id']}/certificates"
    second = api.post(
        path,
        json={"csr": make_openssl_csr(tmp_path, "b")[1]},
        headers=bearer(integrator["api_key"]),
    )
    assert second.status_code == 201, second.text
    third = api.post(
        path,
        json={"csr": make_openssl_csr(tmp_path, "c")[1]},
        headers=bearer(integrator["api_key"]),
    )
    assert third.status_code == 201
    assert (
        api.post(
            path, json={"csr": make_openssl_csr(tmp_path, "d")[1]}, headers=bearer(owner["api_key"])
        ).status_code
        == 403
    )
    now, grace = datetime.now(UTC), timedelta(days=7)
    with ctx.db.read() as conn:
        certs = device_store.list_certificates(conn, first["id"])
    assert len(certs) == 3
    valid = valid_certificates(certs, now, grace)
    assert [c.serial for c in valid] == [
        third.json()["certificate_serial"],
        second.json()["certificate_serial"],
    ]
    with ctx.db.transaction() as conn:
        device_store.mark_certificate_used(conn, valid[0].serial, now)
        certs = device_store.list_certificates(conn, first["id"])
    assert [c.serial for c in valid_certificates(certs, now, grace)] == [valid[0].serial]
    shown = api.get(f"/v1/devices/{first['id']}", headers=bearer(owner["api_key"])).json()
    assert shown["certificate_serial"] == third.json()["certificate_serial"]
    unused_new = [c for c in certs if c.serial != valid[0].serial]
    assert valid_certificates(unused_new, now + grace, grace)[:1]  # grace passed: newest only
    x509.load_pem_x509_certificate(second.json()["certificate"].encode())


def test_a_rotated_key_is_attested_only_with_an_attestation_of_its_own(
    api: TestClient, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    by_integrator = bearer(integrator["api_key"])
    acme = make_manufacturer("ACME", now)
    ca_upload = {"certificate": pem(acme.root).decode()}
    assert api.post("/v1/integrators/me/attestation-cas", json=ca_upload, headers=by_integrator)

    def key_and_chain(name: str) -> tuple[str, str]:
        key_path, csr = make_openssl_csr(tmp_path, name)
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        return csr, pem(leaf_for(acme, key.public_key(), now), acme.intermediate).decode()

    csr, chain = key_and_chain("pump")
    device = register(api, integrator, owner["id"], csr, attestation=chain).json()
    assert device["attested"] is True
    url = f"/v1/devices/{device['id']}"

    def rotate(body: dict[str, str]) -> bool:
        rotated = api.post(f"{url}/certificates", json=body, headers=by_integrator)
        assert rotated.status_code == 201, rotated.text
        shown = api.get(url, headers=by_integrator).json()
        assert shown["certificate_serial"] == rotated.json()["certificate_serial"]
        return bool(shown["attested"])

    csr2, chain2 = key_and_chain("pump2")
    assert rotate({"csr": csr2, "attestation": chain2}) is True  # the new key vouched for
    csr3, _ = key_and_chain("pump3")
    assert rotate({"csr": csr3}) is False  # a key nobody vouched for
    csr4, chain4 = key_and_chain("pump4")
    _, other_chain = key_and_chain("pump5")
    wrong = api.post(
        f"{url}/certificates", json={"csr": csr4, "attestation": other_chain}, headers=by_integrator
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "attestation_invalid"
    assert rotate({"csr": csr4, "attestation": chain4}) is True
