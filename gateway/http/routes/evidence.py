"""Evidence (contract section 9): one bundle that proves who ordered, who consented, what was
decided, and that the record was not changed afterwards."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from gateway.evidence.bundle import evidence_bundle
from gateway.http.deps import Ctx, kind_of
from gateway.parties import Party

router = APIRouter(tags=["recourse"])
Involved = Annotated[Party, Depends(kind_of("owner", "merchant", "admin"))]


class Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class OrderPart(Part):
    jws: str | None
    certificate: str | None
    chain: str


class GatewayPart(Part):
    certificate: str
    chain: str


class ConsentPart(Part):
    basis: str
    jws: str
    rules_salt: str | None = None


class AuditPart(Part):
    entries: list[dict[str, Any]]
    proofs: list[list[str]]
    tree_head: str


class EvidenceBundle(Part):
    payment_id: str
    order: OrderPart
    gateway: GatewayPart
    consent: ConsentPart | None
    results: list[str]
    audit: AuditPart


@router.get("/v1/payments/{payment_id}/evidence", response_model_exclude_unset=True)
def get_evidence(payment_id: str, ctx: Ctx, caller: Involved) -> EvidenceBundle:
    """The evidence bundle about a payment (its payer's owner, its payee, or the admin)."""
    return EvidenceBundle(**evidence_bundle(ctx, caller, payment_id))
