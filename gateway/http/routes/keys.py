"""API keys: a party adds, lists and deletes its own keys (never its last one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from gateway import keys
from gateway.http.deps import Ctx, KeyHolder
from gateway.http.public import KeyCreated, KeyPage

router = APIRouter(tags=["keys"])


@router.post("/v1/keys", status_code=201)
def create_key(ctx: Ctx, caller: KeyHolder) -> KeyCreated:
    """Another API key for the caller's own party, shown only in this answer."""
    key_id, api_key = keys.create_key(ctx, caller)
    return KeyCreated(id=key_id, api_key=api_key)


@router.get("/v1/keys")
def list_keys(
    ctx: Ctx,
    caller: KeyHolder,
    limit: Annotated[int, Query(ge=1, le=200)] = 200,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> KeyPage:
    """The caller's keys, newest first (never the key itself, only its first 12 characters)."""
    items, next_cursor = keys.list_keys(ctx, caller, limit, cursor)
    return KeyPage.model_validate({"items": items, "next_cursor": next_cursor})


@router.delete("/v1/keys/{key_id}", status_code=204, response_class=Response)
def delete_key(key_id: str, ctx: Ctx, caller: KeyHolder) -> Response:
    """Delete one of the caller's keys; from then on it is 401 everywhere (409 for the last)."""
    keys.delete_key(ctx, caller, key_id)
    return Response(status_code=204)
