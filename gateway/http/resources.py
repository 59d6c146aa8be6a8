"""Path resources checked before the body: another party's device, payment or approval is 404.

The contract orders refusals 401, 403, 404, 422, 409. FastAPI resolves dependencies before it
reports an invalid body, so each route that takes a body names its path resource through one
of these, and a stranger learns nothing from a well- or ill-formed body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from devices import store as device_store
from gateway import service, wallets
from gateway.consent import store as consent_store
from gateway.errors import NotFound
from gateway.http.deps import Ctx, Integrator, Merchant, Owner


def owned_device(device_id: str, ctx: Ctx, caller: Owner) -> str:
    """The id of one of the caller's devices."""
    with ctx.db.read() as conn:
        return service.owned_device_id(conn, caller, device_id)


def integrated_device(device_id: str, ctx: Ctx, caller: Integrator) -> str:
    """The id of a device the calling integrator registered."""
    with ctx.db.read() as conn:
        device = device_store.get_device(conn, device_id)
    if device is None or device.integrator_id != caller.id:
        raise NotFound("no such device")
    return device.id


def merchant_payment(payment_id: str, ctx: Ctx, caller: Merchant) -> str:
    """The id of a payment to the calling merchant."""
    wallets.merchant_payment(ctx, caller, payment_id)
    return payment_id


def owned_approval(approval_id: str, ctx: Ctx, caller: Owner) -> str:
    """The id of an approval for one of the caller's devices."""
    with ctx.db.read() as conn:
        row = consent_store.get_approval(conn, approval_id)
        device = device_store.get_device(conn, row["device_id"]) if row else None
    if row is None or device is None or device.owner_id != caller.id:
        raise NotFound("no such approval")
    return approval_id


OwnedDevice = Annotated[str, Depends(owned_device)]
IntegratedDevice = Annotated[str, Depends(integrated_device)]
MerchantPayment = Annotated[str, Depends(merchant_payment)]
OwnedApproval = Annotated[str, Depends(owned_approval)]
