"""Mandates: an owner's standing consents for a device."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.consent import service as consent
from gateway.http.deps import Ctx, Owner
from gateway.http.public import MandateCreated, MandatePublic
from gateway.http.resources import OwnedDevice
from gateway.http.schemas import MandateCreate

router = APIRouter(tags=["mandates"])


@router.post("/v1/devices/{device_id}/mandates", status_code=201)
def create_mandate(
    device_id: OwnedDevice, body: MandateCreate, ctx: Ctx, caller: Owner
) -> MandateCreated:
    """Give a standing consent (owner)."""
    mandate_id = consent.create_mandate(ctx, caller, device_id, body.model_dump())
    return MandateCreated(id=mandate_id, status="active")


@router.delete("/v1/mandates/{mandate_id}")
def revoke_mandate(mandate_id: str, ctx: Ctx, caller: Owner) -> MandatePublic:
    """Revoke a mandate at once (owner)."""
    return MandatePublic.model_validate(consent.revoke_mandate(ctx, caller, mandate_id))
