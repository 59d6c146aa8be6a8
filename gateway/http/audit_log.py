"""The transparency log over HTTP (contract section 9): the latest signed tree head and
consistency proofs, for any party."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from gateway.audit import service as audit_service
from gateway.audit.service import LogContext


class ConsistencyProof(BaseModel):
    proof: list[str]  # lowercase hex hashes, RFC 9162 section 2.1.4


def audit_router(ctx: LogContext, authenticate: Callable[..., Any]) -> APIRouter:
    """Routes under /v1/audit; `authenticate` is the API's dependency that names the caller."""
    router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(authenticate)])

    @router.get(
        "/tree-head",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def tree_head() -> PlainTextResponse:
        """The latest signed tree head, a JWS (any party)."""
        return PlainTextResponse(audit_service.latest_tree_head(ctx))

    @router.get("/consistency")
    def consistency(
        first: Annotated[int, Query(alias="from", ge=0)],
        second: Annotated[int, Query(alias="to", ge=0)],
    ) -> ConsistencyProof:
        """The consistency proof between two signed tree sizes (any party)."""
        return ConsistencyProof(proof=audit_service.consistency(ctx, first, second))

    return router
