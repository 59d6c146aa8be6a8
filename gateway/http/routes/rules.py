"""The owner's rules for a device."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.consent import service as consent
from gateway.http.deps import Ctx, Owner
from gateway.http.public import RulesPublic
from gateway.http.resources import OwnedDevice
from gateway.http.schemas import RulesIn

router = APIRouter(tags=["rules"])


@router.put("/v1/devices/{device_id}/rules", response_model_exclude_none=True)
def put_rules(device_id: OwnedDevice, body: RulesIn, ctx: Ctx, caller: Owner) -> RulesPublic:
    """Replace the device's rules; `{}` removes them, and then every payment needs approval.

    With rules, payments within them flow without approval unless approval_above is set and
    exceeded (so `{"currency": "EUR"}` alone lets every payment within the rules through);
    without rules, every payment needs the owner's approval unless a mandate covers it.
    """
    return RulesPublic.model_validate(consent.put_rules(ctx, caller, device_id, body.to_rules()))


@router.get("/v1/devices/{device_id}/rules", response_model_exclude_none=True)
def get_rules(device_id: str, ctx: Ctx, caller: Owner) -> RulesPublic:
    """The device's rules, `{}` when it has none (owner)."""
    return RulesPublic.model_validate(consent.get_rules(ctx, caller, device_id))
