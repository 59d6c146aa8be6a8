"""Refusals a person reads: in the contract's shape, in plain English, without library text."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN, bearer, create
from tests.support.openssl import make_openssl_csr


def registered(api: TestClient, tmp_path: Path) -> tuple[dict[str, str], dict[str, str], str]:
    owner = create(api, "owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    integrator = create(api, "integrators", {"name": "ACME"})
    _, csr = make_openssl_csr(tmp_path, "car")
    body = {
        "owner_id": owner["id"],
        "kind": "car",
        "manufacturer": "ACME",
        "model": "M",
        "serial_number": "SN-1",
        "csr": csr,
    }
    response = api.post("/v1/devices", json=body, headers=bearer(integrator["api_key"]))
    assert response.status_code == 201, response.text
    return owner, integrator, response.json()["id"]


def test_forbidden_messages_use_the_right_article(sqlite_api: TestClient, tmp_path: Path) -> None:
    _, integrator, device_id = registered(sqlite_api, tmp_path)
    refused = sqlite_api.post(
        f"/v1/devices/{device_id}/approve", headers=bearer(integrator["api_key"])
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "forbidden",
        "message": "an integrator may not approve devices",
    }
    admin = sqlite_api.get("/v1/approvals", headers=ADMIN).json()["error"]["message"]
    assert admin == "an admin may not make this call"
    merchant = create(sqlite_api, "merchants", {"name": "Shell", "category": "fuel"})
    answer = sqlite_api.get("/v1/approvals", headers=bearer(merchant["api_key"])).json()
    assert answer["error"]["message"] == "a merchant may not make this call"


def test_a_garbage_csr_is_refused_without_the_librarys_words(
    sqlite_api: TestClient, tmp_path: Path
) -> None:
    owner = create(sqlite_api, "owners", {"name": "Ada", "timezone": "UTC"})
    integrator = create(sqlite_api, "integrators", {"name": "ACME"})
    for garbage in (
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ):
        body = {
            "owner_id": owner["id"],
            "kind": "car",
            "manufacturer": "ACME",
            "model": "M",
            "serial_number": "SN-1",
            "csr": garbage,
        }
        response = sqlite_api.post("/v1/devices", json=body, headers=bearer(integrator["api_key"]))
        assert response.status_code == 422
        assert response.json()["error"] == {
            "code": "csr_invalid",
            "message": "the CSR does not parse as a PEM certificate signing request",
        }


def test_a_body_sent_without_json_content_type_says_what_to_send(sqlite_api: TestClient) -> None:
    body = b'{"name":"Ada","timezone":"Europe/Berlin"}'
    for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
        response = sqlite_api.post("/v1/owners", content=body, headers={**ADMIN, **headers})
        assert response.status_code == 422, headers
        assert response.json()["error"] == {
            "code": "invalid_request",
            "message": "send the body as JSON with the header Content-Type: application/json",
        }
    sent = sqlite_api.post(
        "/v1/owners", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert sent.status_code == 201


def test_validation_errors_name_the_field(sqlite_api: TestClient) -> None:
    response = sqlite_api.post("/v1/owners", json={"name": 5, "timezone": "UTC"}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["message"].startswith("name: ")


def test_invalid_json_is_422_invalid_request(sqlite_api: TestClient) -> None:
    response = sqlite_api.post(
        "/v1/owners", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert "not valid JSON" in response.json()["error"]["message"]


def test_an_unknown_path_and_method_answer_in_the_contracts_shape(sqlite_api: TestClient) -> None:
    assert sqlite_api.get("/v1/nothing").json()["error"]["code"] == "not_found"
    wrong = sqlite_api.put("/v1/owners", json={}, headers=ADMIN)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
