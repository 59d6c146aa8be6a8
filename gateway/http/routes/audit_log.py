"""The transparency log (contract section 9): the latest signed tree head and consistency
proofs, for any party."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from gateway.audit import service as audit_service
from gateway.http.deps import Caller, Ctx
from gateway.http.public import ConsistencyProof
from gateway.http.schemas import MAX_MINOR

router = APIRouter(prefix="/v1/audit", tags=["audit"])
JWS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}


@router.get("/tree-head", response_class=PlainTextResponse, responses=JWS_TEXT)
def tree_head(ctx: Ctx, _: Caller) -> PlainTextResponse:
    """The latest signed tree head, a JWS (any party)."""
    return PlainTextResponse(audit_service.latest_tree_head(ctx))


@router.get("/consistency")
def consistency(
    ctx: Ctx,
    _: Caller,
    first: Annotated[int, Query(alias="from", ge=0, le=MAX_MINOR)],  # a tree size: 422 above
    second: Annotated[int, Query(alias="to", ge=0, le=MAX_MINOR)],
) -> ConsistencyProof:
    """The consistency proof between two signed tree sizes (any party)."""
    return ConsistencyProof(proof=audit_service.consistency(ctx, first, second))
