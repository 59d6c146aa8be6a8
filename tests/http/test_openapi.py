"""The OpenAPI document says what the API does, for every operation it lists (new ones too)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from gateway.http import app as app_module
from gateway.http.app import create_app
from gateway.http.deps import Owner
from gateway.http.public import Health
from tests.support.gateway import ADMIN_TOKEN

ERROR_STATUSES = ("401", "403", "404", "409", "422")
ERROR_REF = "#/components/schemas/ErrorBody"


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]


@pytest.fixture
def document(sqlite_api: TestClient) -> dict[str, Any]:
    response = sqlite_api.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def test_the_document_lists_the_contracts_operations(document: dict[str, Any]) -> None:
    listed = {(method, path) for method, path, _ in operations(document)}
    assert {
        ("POST", "/v1/owners"),
        ("POST", "/v1/devices"),
        ("GET", "/v1/devices/{device_id}"),
        ("PUT", "/v1/devices/{device_id}/rules"),
        ("POST", "/v1/approvals/{approval_id}"),
        ("GET", "/v1/ca"),
        ("POST", "/v1/keys"),
        ("GET", "/v1/keys"),
        ("DELETE", "/v1/keys/{key_id}"),
        ("GET", "/healthz"),
    } <= listed
    assert len(listed) >= 31


def test_every_success_response_has_a_schema(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert len(successes) == 1, (method, path, successes)
        [(status, response)] = successes.items()
        if status == "204":
            assert not response.get("content"), (method, path)
            continue
        [(media_type, content)] = response["content"].items()
        schema = content.get("schema")
        assert schema, (method, path)
        if media_type == "application/json":
            assert "$ref" in schema or schema.get("type") == "object", (method, path, schema)


def test_the_bearer_scheme_is_declared(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["apiKey"]["description"],
        }
    }


def test_every_operation_that_needs_a_key_declares_the_scheme(
    document: dict[str, Any], sqlite_api: TestClient
) -> None:
    for method, path, operation in operations(document):
        url = re.sub(r"\{[^}]+\}", "x", path)
        answer = sqlite_api.request(method, url, json={} if "requestBody" in operation else None)
        declared = operation.get("security") == [{"apiKey": []}]
        assert declared == (answer.status_code == 401), (method, path, answer.status_code)
        if declared:
            assert answer.json()["error"]["code"] == "unauthorized"


def test_error_bodies_are_documented_in_the_contracts_shape(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        needs_key = "security" in operation
        for status in ERROR_STATUSES if needs_key else ("422",):
            response = operation["responses"].get(status)
            assert response, (method, path, status)
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (method, path, status, schema)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["error"]
    detail = schemas["ErrorDetail"]
    assert detail["required"] == ["code", "message"]
    assert detail["properties"]["code"]["type"] == "string"


def test_docs_page_is_served(sqlite_api: TestClient) -> None:
    assert sqlite_api.get("/docs").status_code == 200


def test_a_new_router_is_covered_without_anyone_remembering(sqlite_api: TestClient) -> None:
    """The properties hold for an endpoint that the tests above never named."""
    extra = APIRouter()

    @extra.get("/v1/extra")
    def extra_op(_: Owner) -> Health:
        """An operation added later."""
        return Health(status="ok")

    ctx = sqlite_api.app.state.ctx  # type: ignore[attr-defined]
    app_module.KEYED.append(extra)
    try:
        app = create_app(ctx)
    finally:
        app_module.KEYED.remove(extra)
    with TestClient(app) as client:
        operation = client.get("/openapi.json").json()["paths"]["/v1/extra"]["get"]
        assert operation["security"] == [{"apiKey": []}]
        assert set(ERROR_STATUSES) <= set(operation["responses"])
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.get("/v1/extra", headers=headers).json()["error"]["code"] == "forbidden"


def test_operation_ids_are_the_route_names(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert {"create_owner", "register_device", "create_key", "delete_key"} <= set(ids)
    assert all(re.fullmatch(r"[a-z][a-z_]*", operation_id) for operation_id in ids)


PEM_FIELDS = {"csr", "certificate", "attestation"}


def walk_limits(
    schema: dict[str, Any], components: dict[str, Any], name: str, seen: set[str]
) -> Iterator[str]:
    """Every string or list in a request schema that has no limit or a limit over the contract's."""
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[1]
        if ref not in seen:
            yield from walk_limits(components[ref], components, name, seen | {ref})
        return
    for option in schema.get("anyOf", []) + schema.get("allOf", []):
        yield from walk_limits(option, components, name, seen)
    kind = schema.get("type")
    bounded = "enum" in schema or "const" in schema or schema.get("format") == "date-time"
    if kind == "string" and not bounded:  # an RFC 3339 time longer than 1,000 never parses
        limit = 64 * 1024 if name in PEM_FIELDS else 1000
        if not 0 < schema.get("maxLength", limit + 1) <= limit:
            yield f"{name}: maxLength {schema.get('maxLength')}"
    if kind == "array":
        if not 0 < schema.get("maxItems", 1001) <= 1000:
            yield f"{name}: maxItems {schema.get('maxItems')}"
        yield from walk_limits(schema["items"], components, name, seen)
    for field, inner in schema.get("properties", {}).items():
        yield from walk_limits(inner, components, field, seen)


def test_every_string_and_list_in_a_request_body_has_the_contracts_limit(
    document: dict[str, Any],
) -> None:
    components = document["components"]["schemas"]
    for method, path, operation in operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        unlimited = list(walk_limits(body["schema"], components, "body", set()))
        assert not unlimited, (method, path, unlimited)
