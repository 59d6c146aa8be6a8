"""Contract section 10 at the HTTP edge: body size, unparseable bodies, text and list limits,
NUL characters (which PostgreSQL cannot store), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from gateway.server import free_port
from tests.support.gateway import ADMIN, bearer, create
from tests.support.openssl import make_openssl_csr

MIB = 1 << 20
JSON = {"Content-Type": "application/json"}


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_body_over_one_mib_is_413_before_authentication(sqlite_api: TestClient) -> None:
    big = b'{"name": "' + b"a" * MIB + b'", "timezone": "UTC"}'
    for headers in ({}, ADMIN, bearer("nonsense")):
        response = sqlite_api.post("/v1/owners", content=big, headers={**JSON, **headers})
        assert_error(response, 413, "body_too_large")
    approve = sqlite_api.post("/v1/devices/x/approve", content=big, headers=JSON)
    assert_error(approve, 413, "body_too_large")


def test_a_chunked_body_over_one_mib_is_413(sqlite_api: TestClient) -> None:
    response = sqlite_api.post("/v1/owners", content=chunks(2 * MIB), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")


def test_a_body_of_exactly_one_mib_is_read(sqlite_api: TestClient) -> None:
    body = b'{"name": "Ada", "timezone": "UTC"}'
    padded = body + b" " * (MIB - len(body))
    assert len(padded) == MIB
    response = sqlite_api.post("/v1/owners", content=padded, headers={**ADMIN, **JSON})
    assert response.status_code == 201, response.text


def test_unparseable_bodies_are_422_invalid_request_before_authentication(
    sqlite_api: TestClient,
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    not_utf8 = b'{"name": "\xff\xfe", "timezone": "UTC"}'
    for body in (deep, not_utf8, b'{"name": "a"', b"\x00"):
        for headers in ({}, ADMIN):
            response = sqlite_api.post("/v1/owners", content=body, headers={**JSON, **headers})
            assert_error(response, 422, "invalid_request")
    # Python's reader takes these three; RFC 8259 has no such values
    named = b'{"name": "n", "timezone": "UTC", "note": '
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        for body in (constant, named + constant + b"}"):
            for headers in ({}, ADMIN):
                response = sqlite_api.post("/v1/owners", content=body, headers={**JSON, **headers})
                assert_error(response, 422, "invalid_request")
                assert constant.decode() in response.json()["error"]["message"]


def test_an_api_body_is_json_whatever_its_content_type_says(sqlite_api: TestClient) -> None:
    """Contract section 10: a body that is not UTF-8 JSON is 422 before authentication, also
    sent as text or with no Content-Type, and also to a route that reads no body (a key was
    created from `{nope`); the console's forms are not the API."""
    for content_type in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "x-www-form"}):
        for headers in ({}, ADMIN):
            response = sqlite_api.post(
                "/v1/owners", content=b"{bad", headers={**content_type, **headers}
            )
            assert_error(response, 422, "invalid_request")
    owner = create(sqlite_api, "owners", {"name": "Ada", "timezone": "UTC"})
    key = bearer(owner["api_key"])
    before = sqlite_api.get("/v1/keys", headers=key).json()["items"]
    refused = sqlite_api.post("/v1/keys", content=b"{nope", headers=key)
    assert_error(refused, 422, "invalid_request")
    assert sqlite_api.get("/v1/keys", headers=key).json()["items"] == before
    made = sqlite_api.post("/v1/keys", headers=key)  # no body at all: still a key
    assert made.status_code == 201, made.text
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    signing_in = sqlite_api.post("/console/session", content=b"api_key=nope", headers=form)
    assert signing_in.status_code == 401  # the console's page saying so, not a JSON refusal
    assert "not an owner" in signing_in.text


def test_nul_in_any_string_is_422_on_every_database(api: TestClient, tmp_path: Path) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    integrator = create(api, "integrators", {"name": "ACME"})
    _, csr = make_openssl_csr(tmp_path, "car")
    device = {
        "owner_id": owner["id"],
        "kind": "car",
        "manufacturer": "ACME",
        "model": "M",
        "serial_number": "SN-1",
        "csr": csr,
    }
    for body in (
        {"name": "A\x00da", "timezone": "UTC"},
        {"name": "Ada", "timezone": "Europe/\x00Berlin"},
        {"name": "Ada", "timezone": "UTC", "ignored\x00": 1},
    ):
        assert_error(api.post("/v1/owners", json=body, headers=ADMIN), 422, "invalid_request")
    as_integrator = bearer(integrator["api_key"])
    for field in ("manufacturer", "model", "serial_number", "csr"):
        poisoned = {**device, field: device[field][:3] + "\x00" + device[field][3:]}
        response = api.post("/v1/devices", json=poisoned, headers=as_integrator)
        assert_error(response, 422, "invalid_request")
    registered = api.post("/v1/devices", json=device, headers=as_integrator)
    assert registered.status_code == 201, registered.text
    rules = f"/v1/devices/{registered.json()['id']}/rules"
    as_owner = bearer(owner["api_key"])
    refused = api.put(rules, json={"allowed_payees": ["mer\x00x"]}, headers=as_owner)
    assert_error(refused, 422, "invalid_request")
    assert_error(api.get(f"{rules}%00", headers=as_owner), 422, "invalid_request")
    assert_error(
        api.get("/v1/approvals?status=pe%00nding", headers=as_owner), 422, "invalid_request"
    )
    assert api.get(rules, headers=as_owner).json() == {}


def test_lists_and_strings_have_limits(api: TestClient, tmp_path: Path) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    integrator = create(api, "integrators", {"name": "ACME"})
    _, csr = make_openssl_csr(tmp_path, "car")
    device = {
        "owner_id": owner["id"],
        "kind": "car",
        "manufacturer": "ACME",
        "model": "M",
        "serial_number": "SN-1",
        "csr": csr,
    }
    as_integrator = bearer(integrator["api_key"])
    long_pem = {**device, "csr": csr + " " * (64 * 1024 - len(csr) + 1)}
    assert_error(
        api.post("/v1/devices", json=long_pem, headers=as_integrator), 422, "invalid_request"
    )
    within = {**device, "csr": csr + "\n" * (64 * 1024 - len(csr))}
    registered = api.post("/v1/devices", json=within, headers=as_integrator)
    assert registered.status_code == 201, registered.text
    as_owner = bearer(owner["api_key"])
    rules = f"/v1/devices/{registered.json()['id']}/rules"
    payees = [f"mer_{i}" for i in range(1000)]
    assert api.put(rules, json={"blocked_payees": payees}, headers=as_owner).status_code == 200
    too_many = api.put(rules, json={"blocked_payees": [*payees, "mer_x"]}, headers=as_owner)
    assert_error(too_many, 422, "invalid_request")
    mandates = f"/v1/devices/{registered.json()['id']}/mandates"
    limits = [{"period": "day", "amount": 1}] * 1001
    mandate = {"max_amount": 100, "limits": limits}
    assert_error(api.post(mandates, json=mandate, headers=as_owner), 422, "invalid_request")
    long_name = {"name": "A" * 1001, "timezone": "UTC"}
    assert_error(api.post("/v1/owners", json=long_name, headers=ADMIN), 422, "invalid_request")
    long_timezone = {"name": "Ada", "timezone": "Europe/" + "B" * 1000}
    assert_error(api.post("/v1/owners", json=long_timezone, headers=ADMIN), 422, "invalid_request")


@pytest.fixture
def live_api(sqlite_api: TestClient) -> Iterator[str]:
    """The same app behind a real uvicorn on a free port."""
    app = sqlite_api.app
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_real_server_reads_an_oversized_body_then_answers_413(live_api: str) -> None:
    with httpx.Client(base_url=live_api, timeout=30) as client:
        for body in (b"x" * (20 * MIB), chunks(20 * MIB)):
            response = client.post("/v1/owners", content=body, headers=JSON)
            assert_error(response, 413, "body_too_large")
        after = client.post("/v1/owners", json={"name": "Ada", "timezone": "UTC"}, headers=ADMIN)
        assert after.status_code == 201
        garbled = client.post("/v1/owners", content=b'{"name": "\xc3\x28"}', headers=JSON)
        assert_error(garbled, 422, "invalid_request")


def test_a_lone_surrogate_is_422_on_every_database(api: TestClient, tmp_path: Path) -> None:
    """Valid JSON, but not Unicode: no database can store it and no answer can quote it."""
    owner = create(api, "owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    integrator = create(api, "integrators", {"name": "ACME"})
    _, csr = make_openssl_csr(tmp_path, "car")
    device = {
        "owner_id": owner["id"],
        "kind": "car",
        "manufacturer": "ACME",
        "model": "M",
        "serial_number": "SN-1",
        "csr": csr,
    }
    registered = api.post("/v1/devices", json=device, headers=bearer(integrator["api_key"]))
    rules = f"/v1/devices/{registered.json()['id']}/rules"
    as_owner = {**bearer(owner["api_key"]), **JSON}
    for path, raw, headers in (
        ("/v1/owners", b'{"name": "A\\ud800", "timezone": "UTC"}', ADMIN),
        ("/v1/owners", b'{"name": "Ada", "timezone": "UTC", "\\udfff": 1}', ADMIN),
        ("/v1/integrators", b'{"name": "ACME \\ud83d"}', ADMIN),
    ):
        response = api.post(path, content=raw, headers={**JSON, **headers})
        assert_error(response, 422, "invalid_request")
    for raw in (b'{"\\ud800": 1}', b'{"blocked_payees": ["mer_\\udc00"]}'):
        assert_error(api.put(rules, content=raw, headers=as_owner), 422, "invalid_request")
    emoji = api.post(
        "/v1/integrators", content=b'{"name": "ACME \\ud83d\\ude97"}', headers={**JSON, **ADMIN}
    )
    assert emoji.status_code == 201


def test_unparseable_json_is_422_on_a_route_that_reads_no_body(sqlite_api: TestClient) -> None:
    for body in (b"[" * 100_000, b"\xff", b'{"a":', b'{"a": ' + b"9" * 5000 + b"}"):
        response = sqlite_api.post("/v1/devices/x/approve", content=body, headers=JSON)
        assert_error(response, 422, "invalid_request")
    no_key = sqlite_api.post("/v1/devices/x/approve", content=b"{}", headers=JSON)
    assert_error(no_key, 401, "unauthorized")
