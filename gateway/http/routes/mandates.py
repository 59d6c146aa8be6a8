"""Mandates: an owner's standing consents for a device."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter

from gateway.consent import service as consent
from gateway.consent import views
from gateway.http.deps import Ctx, Owner
from gateway.http.public import MandateCreated, MandatePage, MandatePublic
from gateway.http.resources import OwnedDevice
from gateway.http.schemas import MandateCreate, PageCursor, PageLimit

router = APIRouter(tags=["mandates"])


@router.post("/v1/devices/{device_id}/mandates", status_code=201)
def create_mandate(
    device_id: OwnedDevice, body: MandateCreate, ctx: Ctx, caller: Owner
) -> MandateCreated:
    """Give a standing consent (owner)."""
    mandate_id = consent.create_mandate(ctx, caller, device_id, body.model_dump())
    return MandateCreated(id=mandate_id, status="active")


@router.get("/v1/devices/{device_id}/mandates")
def list_mandates(
    device_id: OwnedDevice,
    ctx: Ctx,
    caller: Owner,
    status: Literal["active", "revoked", "expired"] | None = None,
    limit: PageLimit = 200,
    cursor: PageCursor = None,
) -> MandatePage:
    """The device's mandates, newest first, with each limit's use in its current period."""
    page = views.mandates_page(ctx, caller, device_id, status, limit, cursor)
    return MandatePage.model_validate(asdict(page))


@router.delete("/v1/mandates/{mandate_id}")
def revoke_mandate(mandate_id: str, ctx: Ctx, caller: Owner) -> MandatePublic:
    """Revoke a mandate at once (owner)."""
    revoked = consent.revoke_mandate(ctx, caller, mandate_id)
    return MandatePublic(id=revoked["id"], status="revoked")
