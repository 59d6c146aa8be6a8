"""One public key is at most one device's identity, forever ("know your machine"): registering
or rotating to a key that another device holds or once held is 409 `device_exists` and changes
nothing; renewing a device's certificate with its own key goes on working."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from devices import ca
from devices import store as device_store
from gateway import service
from gateway.context import Context
from gateway.errors import REFUSAL_TYPES, refusal_of
from gateway.parties import Party
from gateway.service import Registration
from tests.support.concurrency import at_once
from tests.support.gateway import bearer, create, register

TABLES = ("devices", "device_certificates", "wallet_accounts", "audit_log")
DeviceKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def csr_of(key: DeviceKey, name: str = "device") -> str:
    """A CSR for `key`, as a device would send it."""
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def counts(ctx: Context) -> dict[str, int]:
    """How many rows each table a registration or rotation writes to holds."""
    with ctx.db.read() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def rotate(api: TestClient, integrator: dict[str, Any], device_id: str, csr: str) -> Any:
    body = {"csr": csr}
    headers = bearer(integrator["api_key"])
    return api.post(f"/v1/devices/{device_id}/certificates", json=body, headers=headers)


@pytest.fixture
def parties(api: TestClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An owner and two integrators that do not know each other."""
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    bosch = create(api, "integrators", {"name": "Bosch"})
    mallory = create(api, "integrators", {"name": "Mallory Devices"})
    return owner, bosch, mallory


def assert_refused(response: Any) -> None:
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "device_exists"


@pytest.mark.parametrize("kind", ["p256", "ed25519"])
def test_registering_a_second_device_with_another_device_s_key_is_refused_and_changes_nothing(
    api: TestClient, ctx: Context, parties: tuple[dict[str, Any], ...], kind: str
) -> None:
    owner, bosch, mallory = parties
    key: DeviceKey = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "p256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    first = register(api, bosch, owner["id"], csr_of(key, "a"), serial="SN-A")
    assert first.status_code == 201, first.text
    before = counts(ctx)
    for integrator in (bosch, mallory):  # the same integrator or another: one key, one device
        assert_refused(register(api, integrator, owner["id"], csr_of(key, "b"), serial="SN-B"))
    assert counts(ctx) == before
    listed = api.get("/v1/devices", headers=bearer(owner["api_key"])).json()["items"]
    assert [d["id"] for d in listed] == [first.json()["id"]]


def test_rotating_a_device_to_another_device_s_key_is_refused_and_changes_nothing(
    api: TestClient, ctx: Context, parties: tuple[dict[str, Any], ...]
) -> None:
    owner, bosch, mallory = parties
    key_a = ec.generate_private_key(ec.SECP256R1())
    assert register(api, bosch, owner["id"], csr_of(key_a), serial="SN-A").status_code == 201
    b = register(api, bosch, owner["id"], csr_of(ec.generate_private_key(ec.SECP256R1())), "SN-B")
    m = register(api, mallory, owner["id"], csr_of(ec.generate_private_key(ec.SECP256R1())), "SN-M")
    url_b = f"/v1/devices/{b.json()['id']}"
    shown = api.get(url_b, headers=bearer(owner["api_key"])).json()
    before = counts(ctx)
    assert_refused(rotate(api, bosch, b.json()["id"], csr_of(key_a)))
    assert_refused(rotate(api, mallory, m.json()["id"], csr_of(key_a)))
    assert counts(ctx) == before
    assert api.get(url_b, headers=bearer(owner["api_key"])).json() == shown


def test_a_same_key_renewal_of_one_device_is_still_allowed(
    api: TestClient, ctx: Context, parties: tuple[dict[str, Any], ...]
) -> None:
    owner, bosch, _ = parties
    key = ec.generate_private_key(ec.SECP256R1())
    device = register(api, bosch, owner["id"], csr_of(key), serial="SN-A").json()
    renewed = rotate(api, bosch, device["id"], csr_of(key))
    assert renewed.status_code == 201, renewed.text
    again = rotate(api, bosch, device["id"], csr_of(key))
    assert again.status_code == 201, again.text
    with ctx.db.read() as conn:
        query = text("SELECT count(*) FROM device_certificates WHERE device_id = :d")
        assert conn.execute(query, {"d": device["id"]}).scalar_one() == 3


def test_a_key_stays_its_device_s_after_rotation_away_and_revocation(
    api: TestClient, parties: tuple[dict[str, Any], ...]
) -> None:
    owner, bosch, mallory = parties
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    device = register(api, bosch, owner["id"], csr_of(old), serial="SN-A").json()
    assert rotate(api, bosch, device["id"], csr_of(new)).status_code == 201
    assert_refused(register(api, mallory, owner["id"], csr_of(old), serial="SN-B"))
    # the device may go back to a key of its own: it never was anyone else's
    assert rotate(api, bosch, device["id"], csr_of(old)).status_code == 201
    revoked = api.post(f"/v1/devices/{device['id']}/revoke", headers=bearer(owner["api_key"]))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    for key in (old, new):
        assert_refused(register(api, mallory, owner["id"], csr_of(key), serial="SN-C"))
    other = register(
        api, bosch, owner["id"], csr_of(ec.generate_private_key(ec.SECP256R1())), "SN-D"
    )
    assert_refused(rotate(api, bosch, other.json()["id"], csr_of(new)))


def test_two_registrations_of_one_key_at_once_make_one_device(
    ctx: Context, parties: tuple[dict[str, Any], ...]
) -> None:
    """Both may pass the lookup before either commits; the unique key decides, and the loser
    gets the same refusal as a late one."""
    owner, bosch, mallory = parties
    csr = csr_of(ec.generate_private_key(ec.SECP256R1()))

    def registration(integrator: dict[str, Any], serial: str) -> Any:
        def call() -> Any:
            reg = Registration(owner["id"], "car", "ACME", "M1", serial, csr)
            try:
                return service.register_device(ctx, Party("integrator", integrator["id"]), reg)
            except REFUSAL_TYPES as exc:
                return exc

        return call

    for attempt in range(3):
        before = counts(ctx)
        outcomes = at_once(
            [registration(bosch, f"SN-{attempt}-1"), registration(mallory, f"SN-{attempt}-2")]
        )
        refused = [o for o in outcomes if isinstance(o, REFUSAL_TYPES)]
        assert len(refused) == 2 if attempt else len(refused) == 1, outcomes
        assert all(refusal_of(r) == (409, "device_exists") for r in refused)
        added = {t: n - before[t] for t, n in counts(ctx).items()}
        assert added["devices"] == added["device_certificates"] == (0 if attempt else 1)


def test_the_database_itself_refuses_to_bind_one_key_to_a_second_device(
    api: TestClient, ctx: Context, parties: tuple[dict[str, Any], ...]
) -> None:
    """What decides a race that both lookups passed: the key's row, not the code before it."""
    owner, bosch, _ = parties
    key = ec.generate_private_key(ec.SECP256R1())
    assert register(api, bosch, owner["id"], csr_of(key), serial="SN-A").status_code == 201
    other = register(api, bosch, owner["id"], csr_of(ec.generate_private_key(ec.SECP256R1())), "B")
    fingerprint = ca.key_fingerprint(key.public_key())
    with pytest.raises(IntegrityError), ctx.db.transaction() as conn:
        device_store.bind_key(conn, fingerprint, other.json()["id"], datetime.now(UTC))
