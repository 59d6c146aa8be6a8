"""The contract's "who may call what" (CONTRACT.md sections 2 to 10), written once for the
security suite, and the live OpenAPI document it is checked against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gateway.server import build_context
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN

A, O, I, M = "admin", "owner", "integrator", "merchant"  # noqa: E741 - the contract's four kinds
PUBLIC: tuple[str, ...] = ()  # no key needed
ANY = (A, O, I, M)  # any party, but a key is needed
CONSOLE = ("console",)  # the console's pages: a session cookie, never the bearer key

# The contract's table: "METHOD path" → the kinds of party that may make the call.
WHO: dict[str, tuple[str, ...]] = {
    # section 1, 2 and 10: the public calls
    "GET /healthz": PUBLIC,
    "GET /openapi.json": PUBLIC,
    "GET /v1/ca": PUBLIC,
    "GET /v1/ca/gateway": PUBLIC,
    "GET /v1/ca/crl": PUBLIC,
    # section 2: parties
    "POST /v1/owners": (A,),
    "POST /v1/integrators": (A,),
    "POST /v1/merchants": (A,),
    "POST /v1/integrators/me/attestation-cas": (I,),
    # section 3: devices
    "POST /v1/devices": (I,),
    "GET /v1/devices": (O, I),
    "GET /v1/devices/{device_id}": (O, I),
    "POST /v1/devices/{device_id}/approve": (O,),
    "POST /v1/devices/{device_id}/suspend": (O,),
    "POST /v1/devices/{device_id}/resume": (O,),
    "POST /v1/devices/{device_id}/revoke": (O, I),
    "POST /v1/devices/{device_id}/certificates": (I,),  # an extension: rotation by its integrator
    # section 4: wallets
    "POST /v1/devices/{device_id}/wallet/top-ups": (O,),
    "GET /v1/devices/{device_id}/wallet": (O,),
    "GET /v1/devices/{device_id}/payments": (O,),
    "GET /v1/merchants/me/wallet": (M,),
    "GET /v1/merchants/me/payments": (M,),
    "POST /v1/merchants/me/payments/{payment_id}/capture": (M,),
    "POST /v1/merchants/me/payments/{payment_id}/void": (M,),
    "POST /v1/merchants/me/payments/{payment_id}/refunds": (M,),
    # section 5: rules and consent
    "PUT /v1/devices/{device_id}/rules": (O,),
    "GET /v1/devices/{device_id}/rules": (O,),
    "POST /v1/devices/{device_id}/mandates": (O,),
    "GET /v1/devices/{device_id}/mandates": (O,),
    "DELETE /v1/mandates/{mandate_id}": (O,),
    "GET /v1/approvals": (O,),
    "POST /v1/approvals/{approval_id}": (O,),
    # section 7: the owner's side
    "GET /v1/devices/{device_id}/audit": (O,),
    "GET /v1/devices/{device_id}/spending": (O,),
    "POST /v1/owners/me/freeze": (O,),
    "POST /v1/owners/me/unfreeze": (O,),
    "GET /v1/owners/me": (O,),
    "POST /v1/webhooks": (O, M),
    "GET /v1/webhooks": (O, M),
    "DELETE /v1/webhooks/{webhook_id}": (O, M),
    "GET /v1/webhooks/{webhook_id}/deliveries": (O, M),
    "GET /v1/events/stream": (O, M),
    "GET /metrics": (A,),
    "GET /console": CONSOLE,
    "POST /console/session": CONSOLE,
    # section 8: funding
    "POST /v1/owners/me/funding-sources": (O,),
    "GET /v1/owners/me/funding-sources": (O,),
    "POST /v1/funding-sources/{source_id}/top-ups": (O,),
    "PUT /v1/owners/me/instalment-policy": (O,),
    "GET /v1/owners/me/instalment-policy": (O,),
    "DELETE /v1/owners/me/instalment-policy": (O,),
    "GET /v1/owners/me/instalment-plans": (O,),
    "POST /v1/instalment-plans/{plan_id}/repay": (O,),
    # section 9: recourse and evidence
    "GET /v1/payees/{payee_id}": ANY,
    "GET /v1/payments/{payment_id}/evidence": (O, M, A),
    "POST /v1/payments/{payment_id}/disputes": (O,),
    "GET /v1/disputes": (O, M, A),
    "POST /v1/disputes/{dispute_id}/response": (O, M),
    "POST /v1/disputes/{dispute_id}/resolution": (A,),
    "GET /v1/audit/tree-head": ANY,
    "GET /v1/audit/consistency": ANY,
    # section 10: keys
    "POST /v1/keys": (O, I, M),
    "GET /v1/keys": (O, I, M),
    "DELETE /v1/keys/{key_id}": (O, I, M),
}

# Which seeded id a path parameter gets. "missing" is a well-formed id that names nothing:
# the party allowed to make the call then gets 404. A parameter not listed here fails loudly.
PARAMS = {
    "device_id": "device",
    "mandate_id": "mandate",
    "approval_id": "approval",
    "payment_id": "payment",
    "payee_id": "merchant",
    "webhook_id": "missing",
    "source_id": "missing",
    "plan_id": "missing",
    "dispute_id": "missing",
    "key_id": "missing",
}
HOLD_PATHS = ("/capture", "/void")  # a capture or a void names the open hold, not the pay
OWNED_BY_A = {"device", "mandate", "approval", "payment", "hold"}  # owner A's, and I's, and M's


def expected(method: str, path: str, party: str, named: set[str]) -> int | str:
    """The contract's answer: a status code, or "allowed" (anything but 401, 403 and 5xx)."""
    who = WHO[f"{method} {path}"]
    if who == CONSOLE:
        return "public"  # the console signs in with a form, not a bearer key: never a 5xx
    if who == PUBLIC:
        return "allowed"
    if party in ("none", "wrong"):
        return 401
    kind = "owner" if party == "other_owner" else party
    if kind not in who:
        return 403
    if "missing" in named:
        return 404
    if party == "other_owner" and named & OWNED_BY_A:
        return 404
    return "allowed"


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation of an OpenAPI document."""
    methods = {"get", "put", "post", "delete", "patch"}
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in methods
    ]


def live_document(tmp: Path) -> dict[str, Any]:
    """The OpenAPI document that a gateway built on `tmp` serves."""
    from gateway.http.app import create_app

    settings = Settings(
        data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'kym.db'}", admin_token=ADMIN_TOKEN
    )
    ctx = build_context(settings)
    try:
        with TestClient(create_app(ctx)) as api:
            response = api.get("/openapi.json")
            assert response.status_code == 200, response.text
            return dict(response.json())
    finally:
        ctx.db.dispose()
