"""Contract sections 2 and 3 over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN, bearer, create, register
from tests.support.openssl import make_openssl_csr


def test_admin_creates_parties_with_keys_shown_once(api: TestClient) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    assert owner["id"].startswith("own_") and owner["api_key"]
    merchant = create(api, "merchants", {"name": "Shell", "category": "fuel"})
    assert merchant["id"].startswith("mer_")
    assert create(api, "integrators", {"name": "Bosch"})["id"].startswith("int_")


def test_wrong_key_is_401_and_wrong_party_kind_is_403(api: TestClient) -> None:
    response = api.post("/v1/owners", json={"name": "x", "timezone": "UTC"}, headers=bearer("nope"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert api.post("/v1/owners", json={"name": "x", "timezone": "UTC"}).status_code == 401
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    response = api.post("/v1/integrators", json={"name": "x"}, headers=bearer(owner["api_key"]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_bad_bodies_are_422_with_a_code(api: TestClient) -> None:
    for body in ({"name": "Ada", "timezone": "Mars/Olympus"}, {"name": 5, "timezone": "UTC"}, {}):
        response = api.post("/v1/owners", json=body, headers=ADMIN)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] in ("invalid_request", "invalid_timezone")
    response = api.post("/v1/merchants", json={"name": "x", "category": "drugs"}, headers=ADMIN)
    assert response.status_code == 422


def test_an_owners_timezone_is_a_name_of_the_iana_database(api: TestClient) -> None:
    """Files that zoneinfo reads but that are not IANA names are refused: `right/...` has leap
    seconds, which Python reads as an offset an hour off in winter (periods and active hours
    would move); the database's own names and links are taken."""
    for name in ("posix/Europe/Berlin", "right/Europe/Berlin", "Europe/../UTC", "/etc/localtime"):
        response = api.post("/v1/owners", json={"name": "x", "timezone": name}, headers=ADMIN)
        assert response.status_code == 422, name
        assert response.json()["error"]["code"] == "invalid_timezone", name
    for name in ("Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC", "GMT", "Japan"):
        response = api.post("/v1/owners", json={"name": "x", "timezone": name}, headers=ADMIN)
        assert response.status_code == 201, (name, response.text)


def test_device_registers_from_an_openssl_csr_and_owner_approves(
    api: TestClient, tmp_path: Path
) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    _, csr = make_openssl_csr(tmp_path, "car1")
    response = register(api, integrator, owner["id"], csr)
    assert response.status_code == 201, response.text
    device = response.json()
    assert device["status"] == "pending" and device["attested"] is False
    certificate = x509.load_pem_x509_certificate(device["certificate"].encode())
    cn = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == device["id"]
    shown = api.get(f"/v1/devices/{device['id']}", headers=bearer(owner["api_key"])).json()
    assert shown["certificate_serial"] == format(certificate.serial_number, "x")
    assert shown["owner_id"] == owner["id"] and shown["kind"] == "car"
    approved = api.post(f"/v1/devices/{device['id']}/approve", headers=bearer(owner["api_key"]))
    assert approved.json()["status"] == "active"


def test_lifecycle_transitions_and_invalid_state(api: TestClient, tmp_path: Path) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    device_id = register(api, integrator, owner["id"], make_openssl_csr(tmp_path, "d")[1]).json()[
        "id"
    ]
    key = bearer(owner["api_key"])

    def act(action: str, headers: dict[str, str] = key) -> Any:
        return api.post(f"/v1/devices/{device_id}/{action}", headers=headers)

    assert act("suspend").status_code == 409
    assert act("suspend").json()["error"]["code"] == "invalid_state"
    assert act("approve").json()["status"] == "active"
    assert act("approve").status_code == 200  # already there
    assert act("suspend").json()["status"] == "suspended"
    assert act("approve").status_code == 409
    assert act("resume").json()["status"] == "active"
    assert act("approve", bearer(integrator["api_key"])).status_code == 403
    assert act("revoke", bearer(integrator["api_key"])).json()["status"] == "revoked"
    assert act("revoke").status_code == 200
    assert act("resume").status_code == 409


def test_revocation_lists_the_certificate_in_the_crl(api: TestClient, tmp_path: Path) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    device = register(api, integrator, owner["id"], make_openssl_csr(tmp_path, "d")[1]).json()
    serial = x509.load_pem_x509_certificate(device["certificate"].encode()).serial_number
    before = x509.load_pem_x509_crl(api.get("/v1/ca/crl").content)
    assert before.get_revoked_certificate_by_serial_number(serial) is None
    api.post(f"/v1/devices/{device['id']}/revoke", headers=bearer(owner["api_key"]))
    after = x509.load_pem_x509_crl(api.get("/v1/ca/crl").content)
    assert after.get_revoked_certificate_by_serial_number(serial) is not None
    number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert after.next_update_utc is not None


def test_registration_refusals(api: TestClient, tmp_path: Path) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    other_owner = create(api, "owners", {"name": "Bob", "timezone": "UTC"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    bad = register(api, integrator, owner["id"], "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "csr_invalid"
    _, csr = make_openssl_csr(tmp_path, "d")
    first = register(api, integrator, owner["id"], csr).json()
    duplicate = register(api, integrator, owner["id"], make_openssl_csr(tmp_path, "e")[1])
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "device_exists"
    hidden = api.get(f"/v1/devices/{first['id']}", headers=bearer(other_owner["api_key"]))
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "not_found"
    merchant = create(api, "merchants", {"name": "m", "category": "fuel"})
    assert (
        api.get(f"/v1/devices/{first['id']}", headers=bearer(merchant["api_key"])).status_code
        == 403
    )
    assert (
        api.post(
            f"/v1/devices/{first['id']}/approve", headers=bearer(other_owner["api_key"])
        ).status_code
        == 404
    )


def test_ca_endpoints_need_no_key(api: TestClient) -> None:
    bundle = api.get("/v1/ca")
    assert bundle.status_code == 200
    assert len(x509.load_pem_x509_certificates(bundle.content)) >= 3
    signer = x509.load_pem_x509_certificate(api.get("/v1/ca/gateway").content)
    assert "kym-gateway-signer" in signer.subject.rfc4514_string()
