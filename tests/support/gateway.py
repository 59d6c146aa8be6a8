"""The gateway as the tests drive it over HTTP: the admin token and the calls parties make."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for an API key."""
    return {"Authorization": f"Bearer {key}"}


def create(api: TestClient, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create a party as the admin (`kind`: owners, integrators, merchants); 201 expected."""
    response = api.post(f"/v1/{kind}", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


def register(
    api: TestClient,
    integrator: dict[str, Any],
    owner_id: str,
    csr: str,
    serial: str = "SN-1",
    **extra: Any,
) -> Any:
    """POST /v1/devices as `integrator`; the response, whatever it is."""
    body = {
        "owner_id": owner_id,
        "kind": "car",
        "manufacturer": "ACME",
        "model": "Roadster",
        "serial_number": serial,
        "csr": csr,
        **extra,
    }
    return api.post("/v1/devices", json=body, headers=bearer(integrator["api_key"]))
