"""The audit trail, as an owner sees it for one device."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import service
from gateway.http.deps import Ctx, Owner
from gateway.http.public import AuditList

router = APIRouter(tags=["audit"])


@router.get("/v1/devices/{device_id}/audit")
def device_audit(device_id: str, ctx: Ctx, caller: Owner) -> AuditList:
    """The audit entries about a device, oldest first (owner)."""
    return AuditList.model_validate({"items": service.device_audit(ctx, caller, device_id)})
