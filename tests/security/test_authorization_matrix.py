"""Every operation of the live OpenAPI document × every kind of party, against the contract.

The cases are generated from `GET /openapi.json`, so a new endpoint is covered without anyone
remembering to add it; `WHO` below is the contract's "who may call what" (sections 2 to 10),
written once, and an operation it does not know fails `test_every_documented_operation_is_in_the
_contract_table` (add it to `WHO` with the contract's rule).

The rule (CONTRACT.md section 2): no key or an unknown key → 401 `unauthorized` (except the public
calls); a kind of party that may never make the call → 403 `forbidden`; another party's resource
→ 404; checks run in the order 401, 403, 404, 422, 409, so a refused party sends an invalid body
(`{}`) and must still get its 401, 403 or 404; a 5xx is always a bug.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.server import build_context
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.security.conftest import PARTIES, Seeded, seeded_gateway

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
FORBIDDEN_TO_OTHER_OWNER = "404: another owner's resource must look as if it did not exist"


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    methods = {"get", "put", "post", "delete", "patch"}
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in methods
    ]


def _live_document(tmp: Path) -> dict[str, Any]:
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over the operations of the document the app serves at collection time."""
    if not {"operation", "body_operation"} & set(metafunc.fixturenames):
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        doc = _live_document(Path(tmp))
    ops = [pytest.param((m, p), id=f"{m} {p}") for m, p, _ in operations(doc)]
    if "body_operation" in metafunc.fixturenames:  # only those that read a body
        ops = [pytest.param((m, p), id=f"{m} {p}") for m, p, o in operations(doc) if _body(o)]
        metafunc.parametrize("body_operation", ops)
    else:
        metafunc.parametrize("operation", ops)
    metafunc.parametrize("party", PARTIES)


def _body(op: dict[str, Any]) -> bool:
    return "application/json" in (op.get("requestBody") or {}).get("content", {})


@pytest.fixture(scope="module")
def document(seeded: Seeded) -> dict[str, Any]:
    return dict(seeded.api.get("/openapi.json").json())


def test_every_documented_operation_is_in_the_contract_table(document: dict[str, Any]) -> None:
    unknown = [f"{m} {p}" for m, p, _ in operations(document) if f"{m} {p}" not in WHO]
    assert not unknown, f"operations the contract table (WHO) does not know: {unknown}"
    params = {name for _, p, _ in operations(document) for name in re.findall(r"{(\w+)}", p)} - set(
        PARAMS
    )
    assert not params, f"path parameters with no seeded id (PARAMS): {sorted(params)}"


def _path(seeded: Seeded, method: str, path: str) -> tuple[str, set[str]]:
    """The path with seeded ids filled in, and the kinds of id it names."""
    named: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        what = PARAMS[match.group(1)]
        if match.group(1) == "payment_id" and path.endswith(HOLD_PATHS):
            what = "hold"
        named.add(what)
        return seeded.ids.get(what, "kym-missing-0000")

    return re.sub(r"{(\w+)}", fill, path), named


def valid_body(seeded: Seeded, method: str, path: str) -> dict[str, Any]:
    """A body that passes validation, so that only who is calling decides the answer."""
    csr = seeded.csr
    money = {"amount": 100, "currency": "EUR", "idempotency_key": "matrix-1"}
    adjust = "POST /v1/merchants/me/payments/{payment_id}"
    bodies: dict[str, dict[str, Any]] = {
        "POST /v1/owners": {"name": "Eve", "timezone": "Europe/Berlin"},
        "POST /v1/integrators": {"name": "Mallory Devices"},
        "POST /v1/merchants": {"name": "Shop", "category": "retail"},
        "POST /v1/integrators/me/attestation-cas": {"certificate": seeded.ca_pem},
        "POST /v1/devices": {
            "owner_id": seeded.ids["owner"],
            **{"kind": "car", "manufacturer": "ACME", "model": "M", "serial_number": "SN-m"},
            "csr": csr,
        },
        "POST /v1/devices/{device_id}/certificates": {"csr": csr},
        "POST /v1/devices/{device_id}/wallet/top-ups": money,
        f"{adjust}/capture": {"amount": 9, "idempotency_key": "c"},
        f"{adjust}/void": {"idempotency_key": "v"},
        f"{adjust}/refunds": {"amount": 1, "idempotency_key": "r"},
        "PUT /v1/devices/{device_id}/rules": {"currency": "EUR", "max_amount": 1},
        "POST /v1/devices/{device_id}/mandates": {"max_amount": 100},
        "POST /v1/approvals/{approval_id}": {"decision": "approve"},
        "POST /v1/webhooks": {"url": "https://example.com/kym"},
        "POST /v1/owners/me/funding-sources": {"name": "s", "kind": "balance", "currency": "EUR"},
        "POST /v1/funding-sources/{source_id}/top-ups": money,
        "POST /v1/payments/{payment_id}/disputes": {"reason": "not_received", "message": "m"},
        "POST /v1/disputes/{dispute_id}/response": {"decision": "accept", "message": "m"},
        "POST /v1/disputes/{dispute_id}/resolution": {"outcome": "owner"},
        "PUT /v1/owners/me/instalment-policy": {
            **{"source": "kym-missing-0000", "min_amount": 1, "max_amount": 100},
            **{"counts": [2], "interval_days": 30},
        },
        "POST /v1/keys": {},
    }
    key = f"{method} {path}"
    assert key in bodies, f"{key} takes a body: add a valid one to valid_body()"
    return bodies[key]


def _call(seeded: Seeded, method: str, path: str, op: dict[str, Any], party: str) -> Any:
    url, _ = _path(seeded, method, path)
    body = {"json": valid_body(seeded, method, path)} if "requestBody" in op else {}
    return seeded.api.request(method, url, headers=seeded.headers[party], **body)


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


def _snapshot(seeded: Seeded) -> str:
    """What a refused call must not change: A's device, wallet, approvals and M's payments."""
    ids, h = seeded.ids, seeded.headers
    reads = [
        seeded.api.get(f"/v1/devices/{ids['device']}", headers=h["owner"]),
        seeded.api.get(f"/v1/devices/{ids['device']}/wallet", headers=h["owner"]),
        seeded.api.get(f"/v1/devices/{ids['device']}/rules", headers=h["owner"]),
        seeded.api.get("/v1/approvals?status=pending", headers=h["owner"]),
        seeded.api.get("/v1/merchants/me/payments", headers=h["merchant"]),
        seeded.api.get("/v1/merchants/me/wallet", headers=h["merchant"]),
    ]
    return json.dumps([(r.status_code, r.json()) for r in reads], sort_keys=True)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Seeded]:
    """A gateway of its own, for the calls that are allowed to change things."""
    with seeded_gateway(tmp_path) as gateway:
        yield gateway


def test_party_gets_the_contracts_answer(
    request: pytest.FixtureRequest, seeded: Seeded, operation: tuple[str, str], party: str
) -> None:
    method, path = operation
    assert f"{method} {path}" in WHO, f"{method} {path} is not in the contract table (WHO)"
    document = request.getfixturevalue("document")
    op = document["paths"][path][method.lower()]
    _, named = _path(seeded, method, path)
    want = expected(method, path, party, named)
    if want == "allowed" and _is_stream(op):
        pytest.skip("an event stream never ends in-process; its refusals are checked")
    # A call that may succeed gets a gateway of its own; a refused one must change nothing.
    changes = want in ("allowed", "public") and method != "GET"
    gateway = request.getfixturevalue("fresh") if changes else seeded
    url, _ = _path(gateway, method, path)
    before = _snapshot(gateway) if want != "allowed" and method != "GET" else None
    response = _call(gateway, method, path, op, party)
    where = f"{method} {url} as {party}: {response.status_code} {response.text[:300]}"
    assert response.status_code < 500, where
    if want == "public":
        return
    if want == "allowed":
        assert response.status_code not in (401, 403), where
        if named & OWNED_BY_A and "missing" not in named:
            assert response.status_code != 404, where
        if party == "other_owner" and response.status_code < 300:
            _assert_nothing_of_a(gateway, response.text, where)
        return
    assert response.status_code == want, (
        where if want != 404 or party != "other_owner" else f"{FORBIDDEN_TO_OTHER_OWNER}: {where}"
    )
    code = {401: "unauthorized", 403: "forbidden"}.get(want)
    if code:
        assert response.json()["error"]["code"] == code, where
    if before is not None:
        assert _snapshot(gateway) == before, f"a refused call changed something: {where}"


def _is_stream(op: dict[str, Any]) -> bool:
    return any(
        "text/event-stream" in (r.get("content") or {}) for r in op.get("responses", {}).values()
    )


def _assert_nothing_of_a(seeded: Seeded, text: str, where: str) -> None:
    for what in OWNED_BY_A:
        assert seeded.ids[what] not in text, f"owner B sees A's {what}: {where}"


def test_refusal_comes_before_body_validation(
    seeded: Seeded, document: dict[str, Any], body_operation: tuple[str, str], party: str
) -> None:
    """401, 403 and 404 are decided before the body is read: `{}` changes no refusal."""
    method, path = body_operation
    url, named = _path(seeded, method, path)
    want = expected(method, path, party, named)
    if not isinstance(want, int):
        return  # this party may make the call: its `{}` is a 422, tested by schemathesis
    response = seeded.api.request(method, url, headers=seeded.headers[party], json={})
    where = f"{method} {url} as {party} with {{}}: {response.status_code} {response.text[:200]}"
    assert response.status_code == want, where
