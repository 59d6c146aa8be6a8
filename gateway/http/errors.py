"""Every refusal becomes the contract's error body: `{"error": {"code", "message"}}`.

    Exception                         where it comes from              HTTP
    ├── gateway.errors.REFUSALS       use cases, devices, the ledger    the table's status
    ├── RequestValidationError        a body, path or query that does not validate   422
    ├── HTTPException                 routing (404, 405) and unparseable bodies      as is / 422
    └── OperationalError              the database is unreachable       503 database_unavailable

`gateway.errors.REFUSALS` is the one table from a refusal to its status and code, shared with
the MQTT results; this module only answers with it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.db_faults import one_line, resource_fault
from gateway.errors import REFUSAL_TYPES, refusal_of

log = logging.getLogger("kym.http")

HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}
NOT_JSON = "send the body as JSON with the header Content-Type: application/json"


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """What every refusal answers."""

    error: ErrorDetail


def error_body(code: str, message: str) -> dict[str, Any]:
    """The contract's error shape."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """A JSON error answer; a message quoting a lone surrogate from the request is escaped."""
    safe = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(error_body(code, safe), status_code=status)


def validation_message(exc: RequestValidationError) -> str:
    """One line naming each field that failed, or why the body could not be read at all."""
    if isinstance(exc.body, bytes | bytearray):
        return NOT_JSON  # FastAPI leaves the body unparsed when it is not sent as JSON
    parts = []
    for error in exc.errors():
        if error["type"] == "json_invalid":
            return f"the body is not valid JSON: {error.get('ctx', {}).get('error', '')}".strip()
        where = ".".join(str(p) for p in error["loc"][1:]) or str(error["loc"][0])
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


async def _on_refusal(_: Request, exc: Exception) -> JSONResponse:
    status, code = refusal_of(exc)
    return error_response(status, code, str(exc))


async def _on_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", validation_message(exc))


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not decode the body (bad UTF-8, too deep)
        return error_response(422, "invalid_request", "the body is not valid UTF-8 JSON")
    code = HTTP_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    where = f"{request.method} {request.url.path}"
    if resource_fault(exc):  # it answers, but cannot write (a full disk)
        log.warning("database cannot write during %s: %s", where, one_line(exc))
        message = f"the database cannot write now ({one_line(exc)}); retry"
        return error_response(503, "database_unavailable", message)
    log.warning("database unreachable during %s: %s", where, one_line(exc))
    return error_response(503, "database_unavailable", "the database is unreachable; retry")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every refusal in the contract's shape."""
    for kind in REFUSAL_TYPES:
        app.add_exception_handler(kind, _on_refusal)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(OperationalError, _on_database_down)
    app.add_exception_handler(InterfaceError, _on_database_down)


DESCRIPTIONS = {
    401: "Missing or unknown API key (`unauthorized`)",
    403: "This kind of party may never make this call (`forbidden`)",
    404: "No such resource, or another party's (`not_found`)",
    409: "The request conflicts with the current state; `code` names why",
    413: "The body is over 1 MiB (`body_too_large`)",
    422: "The body, path or query is not valid (`invalid_request` or a specific code)",
    503: "The database is unreachable (`database_unavailable`)",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the error body as JSON.

    The schema is named by reference, not by `model`, so that a route answering another media
    type (PEM) still documents its errors as JSON; `KEYED_ERRORS` puts the model in the document.
    """
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {s: {"description": DESCRIPTIONS[s], "content": content} for s in statuses}


KEYED_ERRORS = {
    status: {**response, "model": ErrorBody}
    for status, response in documented(401, 403, 404, 409, 413, 422, 503).items()
}
PUBLIC_ERRORS = documented(413, 422)
