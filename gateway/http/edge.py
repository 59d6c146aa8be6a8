"""The HTTP edge, before routing and authentication: body size, UTF-8, NUL in the URL.

A body over `max_body_bytes` is read and discarded (chunked or not) and answered 413
`body_too_large`; a body sent to the API (`/v1/...`, whatever its Content-Type, even to a route
that reads none) or sent as JSON that is not UTF-8 JSON (bad bytes, bad syntax, nesting too
deep for the parser), and a path or query holding a NUL character, are 422
`invalid_request`, whatever the route and before anyone is authenticated. Anything else
reaches the app with its body replayed from memory.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http.errors import error_response

MAX_BODY_BYTES = 1 << 20
DRAIN_LIMIT_BYTES = 64 << 20  # past this a client is only wasting our time: stop reading


class Edge:
    """ASGI middleware enforcing the contract's limits on every request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, too_large, gone = await self._read_body(scope, receive)
        if gone:
            return  # the client disconnected before sending its whole body
        refusal = _refusal(scope, body, too_large)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, bool, bool]:
        declared = _content_length(scope)
        too_large = declared is not None and declared > self.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"", too_large, True
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > self.max_body_bytes
            if not too_large:
                chunks.append(chunk)
            if not message.get("more_body", False) or size > DRAIN_LIMIT_BYTES:
                break
        return b"".join(chunks), too_large, False


def _refusal(scope: Scope, body: bytes, too_large: bool) -> ASGIApp | None:
    if too_large:
        return error_response(413, "body_too_large", "the request body is over 1 MiB")
    if "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(scope["query_string"]):
        return error_response(422, "invalid_request", "the URL holds a NUL character")
    fault = _json_fault(body) if body and (_is_json(scope) or _is_api(scope)) else None
    if fault is not None:
        return error_response(422, "invalid_request", fault)
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def _is_api(scope: Scope) -> bool:
    """The JSON API (`/v1/...`): its bodies are JSON whatever Content-Type says, or none (the
    console's forms are the only other bodies, and they are not JSON)."""
    return str(scope.get("path", "")).startswith("/v1/")


def _is_json(scope: Scope) -> bool:
    content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    return content_type == b"application/json" or content_type.endswith(b"+json")


class _NotJson(ValueError):
    pass


def _not_json(constant: str) -> Any:
    """Python's JSON reader takes NaN, Infinity and -Infinity, which RFC 8259 does not."""
    raise _NotJson(constant)


def _json_fault(body: bytes) -> str | None:
    """Why the body does not parse as JSON from UTF-8, if it does not (a route may never read
    it; the answer is the same)."""
    try:
        json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError:
        return "the body is not valid UTF-8"
    except _NotJson as exc:
        return f"the body is not valid JSON: {exc} is not a JSON value"
    except json.JSONDecodeError as exc:
        return f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return "the body is not valid JSON: nested too deeply"
    except ValueError:  # a number of more than 4,300 digits
        return "the body is not valid JSON: a number is too long"
    return None
