"""An owner's funding sources (contract section 8): created, listed in draw order, topped up."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from gateway.funding import policy, service
from gateway.http.deps import Ctx, Owner
from gateway.http.schemas import FundingSourceCreate, InstalmentPolicyIn, TopUpCreate

router = APIRouter(tags=["funding"])


def owned_source(source_id: str, ctx: Ctx, caller: Owner) -> str:
    """One of the caller's sources, checked before the body (see gateway.http.resources)."""
    service.owned_source(ctx, caller, source_id)
    return source_id


OwnedSource = Annotated[str, Depends(owned_source)]


@router.post("/v1/owners/me/funding-sources", status_code=201)
def create_funding_source(body: FundingSourceCreate, ctx: Ctx, caller: Owner) -> dict[str, Any]:
    """Add a balance source or a credit line (owner)."""
    return service.create_source(ctx, caller, body.model_dump(exclude_none=True))


@router.get("/v1/owners/me/funding-sources")
def list_funding_sources(ctx: Ctx, caller: Owner) -> dict[str, Any]:
    """The owner's funding sources in the order they are drawn on (priority, then creation),
    shaped as every list is (section 7) and always one page: an owner has a handful, listed
    in draw order rather than newest first."""
    return {"items": service.list_sources(ctx, caller), "next_cursor": None}


@router.post("/v1/funding-sources/{source_id}/top-ups", status_code=201)
def top_up_funding_source(
    source_id: OwnedSource, body: TopUpCreate, ctx: Ctx, caller: Owner
) -> dict[str, Any]:
    """Top up a balance source (owner); idempotent by key, scoped to the source."""
    return service.top_up_source(
        ctx, caller, source_id, body.amount, body.currency, body.idempotency_key
    )


@router.put("/v1/owners/me/instalment-policy")
def put_instalment_policy(body: InstalmentPolicyIn, ctx: Ctx, caller: Owner) -> dict[str, Any]:
    """Set the owner's instalment policy (owner); answers it with its defaults."""
    return policy.put_policy(ctx, caller, body.model_dump())


@router.get("/v1/owners/me/instalment-policy")
def get_instalment_policy(ctx: Ctx, caller: Owner) -> dict[str, Any]:
    """The owner's instalment policy (404 without one)."""
    return policy.get_policy(ctx, caller)


@router.delete("/v1/owners/me/instalment-policy", status_code=204)
def delete_instalment_policy(ctx: Ctx, caller: Owner) -> Response:
    """Remove the owner's instalment policy."""
    policy.delete_policy(ctx, caller)
    return Response(status_code=204)
