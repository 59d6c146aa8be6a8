"""Contract section 7 at the HTTP edge: every list's paging parameters, their refusals in the
contract's order (401, 403, 404, then 422), and the OpenAPI document that describes them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN, bearer, create
from tests.support.openssl import make_openssl_csr

LISTS = [
    "/v1/devices",
    "/v1/devices/{device}/payments",
    "/v1/devices/{device}/mandates",
    "/v1/devices/{device}/audit",
    "/v1/merchants/me/payments",
    "/v1/approvals",
]
FILTERED = {
    "/v1/devices": ["pending", "active", "suspended", "revoked"],
    "/v1/devices/{device_id}/payments": ["completed", "held", "captured", "voided", "expired"],
    "/v1/merchants/me/payments": ["completed", "held", "captured", "voided", "expired"],
    "/v1/approvals": ["pending", "approved", "declined", "expired"],
    "/v1/devices/{device_id}/mandates": ["active", "revoked", "expired"],
}


def forged(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.fixture
def scene(sqlite_api: TestClient, tmp_path: Path) -> dict[str, Any]:
    owner = create(sqlite_api, "owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    maker = create(sqlite_api, "integrators", {"name": "ACME"})
    shop = create(sqlite_api, "merchants", {"name": "Shop", "category": "fuel"})
    stranger = create(sqlite_api, "owners", {"name": "Eve", "timezone": "UTC"})
    _key, csr = make_openssl_csr(tmp_path, "lists")
    body = {"owner_id": owner["id"], "kind": "car", "manufacturer": "ACME", "model": "R"}
    body |= {"serial_number": "SN-lists", "csr": csr}
    device = sqlite_api.post("/v1/devices", json=body, headers=bearer(maker["api_key"]))
    assert device.status_code == 201, device.text
    return {
        "api": sqlite_api,
        "device": device.json()["id"],
        "owner": bearer(owner["api_key"]),
        "integrator": bearer(maker["api_key"]),
        "merchant": bearer(shop["api_key"]),
        "stranger": bearer(stranger["api_key"]),
    }


def who_lists(path: str, scene: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = scene["merchant" if path.startswith("/v1/merchants") else "owner"]
    return headers


@pytest.mark.parametrize("path", LISTS)
def test_every_list_answers_a_page_and_refuses_bad_paging(scene: dict[str, Any], path: str) -> None:
    api, url = scene["api"], path.format(device=scene["device"])
    headers = who_lists(path, scene)
    page = api.get(url, headers=headers)
    assert page.status_code == 200, page.text
    assert set(page.json()) == {"items", "next_cursor"} and page.json()["next_cursor"] is None
    other_list = forged("keys", "2026-01-01T00:00:00+00:00", "key_x")
    for params in (
        {"limit": 0},
        {"limit": 201},
        {"limit": "ten"},
        {"cursor": "%%%"},
        {"cursor": forged("devices", 5)},
        {"cursor": forged("payments", 2**70)},
        {"cursor": forged("approvals", "2026-01-01T00:00:00", "x")},
        {"cursor": other_list},
        {"status": "bogus"},
    ):
        if params.get("status") and path == "/v1/devices/{device}/audit":
            continue  # the audit trail has no filter (an unknown parameter is ignored)
        refused = api.get(url, headers=headers, params=params)
        assert refused.status_code == 422, (url, params, refused.text)
        assert refused.json()["error"]["code"] == "invalid_request"
    assert api.get(url, headers=headers, params={"limit": 200}).status_code == 200


@pytest.mark.parametrize("path", [p for p in LISTS if "{device}" in p])
def test_another_owners_device_is_404_before_a_bad_limit(scene: dict[str, Any], path: str) -> None:
    api, url = scene["api"], path.format(device=scene["device"])
    assert api.get(url, params={"limit": 0}).status_code == 401
    assert api.get(url, headers=scene["merchant"], params={"limit": 0}).status_code == 403
    hidden = api.get(url, headers=scene["stranger"], params={"limit": 0})
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"


def test_devices_are_listed_for_owners_and_integrators_only(scene: dict[str, Any]) -> None:
    api = scene["api"]
    for headers in (ADMIN, scene["merchant"]):
        refused = api.get("/v1/devices", headers=headers, params={"limit": 0})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    for who in ("owner", "integrator"):
        [item] = api.get("/v1/devices", headers=scene[who]).json()["items"]
        assert item == api.get(f"/v1/devices/{scene['device']}", headers=scene[who]).json()


def test_owner_profile_and_freeze_over_http(scene: dict[str, Any]) -> None:
    api, owner = scene["api"], scene["owner"]
    me = api.get("/v1/owners/me", headers=owner).json()
    assert me == {"id": me["id"], "name": "Ada", "timezone": "Europe/Berlin", "frozen": False}
    assert api.post("/v1/owners/me/freeze", headers=owner).json() == {"frozen": True}
    assert api.get("/v1/owners/me", headers=owner).json()["frozen"] is True
    assert api.get("/v1/owners/me", headers=scene["stranger"]).json()["frozen"] is False
    assert api.post("/v1/owners/me/unfreeze", headers=owner).json() == {"frozen": False}
    spending = api.get(f"/v1/devices/{scene['device']}/spending", headers=owner)
    assert spending.json() == {"currency": "EUR", "limits": [], "max_payments": []}


def test_the_openapi_document_describes_paging_and_filters(sqlite_api: TestClient) -> None:
    doc = sqlite_api.get("/openapi.json").json()
    for path, statuses in FILTERED.items():
        params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}
        limit = params["limit"]["schema"]
        assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 200, 200), path
        assert "cursor" in params, path
        status = params["status"]["schema"]["anyOf"][0]
        assert status["enum"] == statuses, path
    approval = doc["components"]["schemas"]["ApprovalPublic"]["properties"]
    assert {"kind", "payee_name", "category", "description", "why"} <= set(approval)
    for path in ("/v1/devices/{device_id}/spending", "/v1/owners/me", "/v1/owners/me/freeze"):
        assert path in doc["paths"]
