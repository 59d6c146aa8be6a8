"""A device's wallet, seen and funded by its owner."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from gateway import wallets
from gateway.consent import views
from gateway.http.deps import Ctx, Owner
from gateway.http.public import BalancePublic, PaymentList, SpendingPublic, WalletPublic
from gateway.http.resources import OwnedDevice
from gateway.http.schemas import PageCursor, PageLimit, PaymentStatus, TopUpCreate

router = APIRouter(tags=["wallets"])


@router.post("/v1/devices/{device_id}/wallet/top-ups", status_code=201)
def top_up(device_id: OwnedDevice, body: TopUpCreate, ctx: Ctx, caller: Owner) -> BalancePublic:
    """Top up a device's wallet (owner); idempotent by key."""
    balance = wallets.top_up(
        ctx, caller, device_id, body.amount, body.currency, body.idempotency_key
    )
    return BalancePublic.model_validate(balance)


@router.get("/v1/devices/{device_id}/wallet")
def device_wallet(device_id: str, ctx: Ctx, caller: Owner) -> WalletPublic:
    """A device's wallet (owner)."""
    return WalletPublic.model_validate(wallets.wallet_of(ctx, caller, device_id))


@router.get("/v1/devices/{device_id}/payments")
def device_payments(
    device_id: OwnedDevice,
    ctx: Ctx,
    caller: Owner,
    status: PaymentStatus | None = None,
    limit: PageLimit = 200,
    cursor: PageCursor = None,
) -> PaymentList:
    """A device's payments, made or received, newest first (owner)."""
    page = wallets.payments_page(ctx, caller, device_id, status, limit, cursor)
    return PaymentList.model_validate(asdict(page))


@router.get("/v1/devices/{device_id}/spending")
def device_spending(device_id: OwnedDevice, ctx: Ctx, caller: Owner) -> SpendingPublic:
    """The device's limits in their current periods: spent, remaining, when each resets."""
    return SpendingPublic.model_validate(views.spending(ctx, caller, device_id))
