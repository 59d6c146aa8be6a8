"""`GET /openapi.json` as CONTRACT.md section 10 fixes it: every operation that needs a key says
so with the bearer scheme, documents a schema for its success answer (the event stream as
`text/event-stream`) and the contract's error body for 401, 403, 404, 409 and 422."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.security.contract import CONSOLE, PUBLIC, WHO, live_document, operations

ERRORS = ("401", "403", "404", "409", "422")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return live_document(Path(tmp_path_factory.mktemp("openapi")))


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        _, _, name = schema["$ref"].rpartition("/")
        schema = doc["components"]["schemas"][name]
    return schema


def _needs_key(method: str, path: str) -> bool:
    return WHO.get(f"{method} {path}") not in (PUBLIC, CONSOLE)


def test_every_keyed_operation_names_the_bearer_scheme(document: dict[str, Any]) -> None:
    schemes = document.get("components", {}).get("securitySchemes", {})
    bearer = {name for name, s in schemes.items() if s.get("scheme", "").lower() == "bearer"}
    assert bearer, "no bearer security scheme in the document"
    missing = [
        f"{m} {p}"
        for m, p, op in operations(document)
        if _needs_key(m, p) and not any(set(r) & bearer for r in op.get("security", []))
    ]
    assert not missing, f"operations that need a key but do not say so: {missing}"


def test_every_operation_documents_its_success_schema(document: dict[str, Any]) -> None:
    missing = []
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            content = response.get("content") or {}
            if not any(media.get("schema") for media in content.values()):
                missing.append(f"{method} {path} {status}")
    assert not missing, f"success answers without a schema: {missing}"


def test_every_keyed_operation_documents_the_contracts_error_body(
    document: dict[str, Any],
) -> None:
    wrong = []
    for method, path, op in operations(document):
        if not _needs_key(method, path):
            continue
        for status in ERRORS:
            media = (op["responses"].get(status, {}).get("content") or {}).get("application/json")
            if media is None or not _is_error_body(document, media.get("schema", {})):
                wrong.append(f"{method} {path} {status}")
    assert not wrong, f"error answers not documented as the contract's error body: {wrong}"


def _is_error_body(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    body = _resolve(doc, schema)
    if "error" not in body.get("required", []):
        return False
    error = _resolve(doc, body.get("properties", {}).get("error", {}))
    fields = error.get("properties", {})
    return {"code", "message"} <= set(error.get("required", [])) and all(
        _resolve(doc, fields.get(name, {})).get("type") == "string" for name in ("code", "message")
    )
