"""The audit trail, as an owner sees it for one device."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from gateway import fleet
from gateway.http.deps import Ctx, Owner
from gateway.http.public import AuditList
from gateway.http.resources import OwnedDevice
from gateway.http.schemas import PageCursor, PageLimit

router = APIRouter(tags=["audit"])


@router.get("/v1/devices/{device_id}/audit")
def device_audit(
    device_id: OwnedDevice,
    ctx: Ctx,
    caller: Owner,
    limit: PageLimit = 200,
    cursor: PageCursor = None,
) -> AuditList:
    """The audit entries about a device, newest first (owner)."""
    page = fleet.audit_page(ctx, caller, device_id, limit, cursor)
    return AuditList.model_validate(asdict(page))
