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

from tests.security.contract import (
    HOLD_PATHS,
    OWNED_BY_A,
    PARAMS,
    WHO,
    expected,
    live_document,
    operations,
)
from tests.support.seeded import PARTIES, Seeded, seeded_gateway

FORBIDDEN_TO_OTHER_OWNER = "404: another owner's resource must look as if it did not exist"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over the operations of the document the app serves at collection time."""
    if not {"operation", "body_operation"} & set(metafunc.fixturenames):
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        doc = live_document(Path(tmp))
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
    body = valid_body(seeded, method, path) if "requestBody" in op else None
    return seeded.api.request(method, url, headers=seeded.headers[party], json=body)


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
    code = {401: "unauthorized", 403: "forbidden"}.get(response.status_code)
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
