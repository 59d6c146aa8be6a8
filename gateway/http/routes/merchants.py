"""The merchant's side: its wallet, its payments, and capture, void and refund over HTTP."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from gateway import wallets
from gateway.context import Context
from gateway.errors import Conflict
from gateway.http.deps import Ctx, Merchant
from gateway.http.public import MerchantWalletPublic, PaymentList, PaymentPublic
from gateway.http.resources import MerchantPayment
from gateway.http.schemas import CaptureCreate, PageCursor, PageLimit, PaymentStatus, VoidCreate
from gateway.orders.merchants import merchant_adjust
from gateway.parties import Party

router = APIRouter(tags=["merchants"])


@router.get("/v1/merchants/me/wallet")
def merchant_wallet(ctx: Ctx, caller: Merchant) -> MerchantWalletPublic:
    """The merchant's wallet."""
    wallet = wallets.wallet_of(ctx, caller, None)
    return MerchantWalletPublic(currency=wallet["currency"], balance=wallet["balance"])


@router.get("/v1/merchants/me/payments")
def merchant_payments(
    ctx: Ctx,
    caller: Merchant,
    status: PaymentStatus | None = None,
    limit: PageLimit = 200,
    cursor: PageCursor = None,
) -> PaymentList:
    """The merchant's payments, newest first."""
    page = wallets.payments_page(ctx, caller, None, status, limit, cursor)
    return PaymentList.model_validate(asdict(page))


@router.post("/v1/merchants/me/payments/{payment_id}/capture")
def merchant_capture(
    payment_id: MerchantPayment, body: CaptureCreate, ctx: Ctx, caller: Merchant
) -> PaymentPublic:
    """Capture up to the held amount (merchant)."""
    return _adjust(ctx, caller, payment_id, "capture", body.amount, body.idempotency_key)


@router.post("/v1/merchants/me/payments/{payment_id}/void")
def merchant_void(
    payment_id: MerchantPayment, body: VoidCreate, ctx: Ctx, caller: Merchant
) -> PaymentPublic:
    """Release a hold (merchant)."""
    return _adjust(ctx, caller, payment_id, "void", None, body.idempotency_key)


@router.post("/v1/merchants/me/payments/{payment_id}/refunds")
def merchant_refund(
    payment_id: MerchantPayment, body: CaptureCreate, ctx: Ctx, caller: Merchant
) -> PaymentPublic:
    """Refund part or all of a payment (merchant)."""
    return _adjust(ctx, caller, payment_id, "refund", body.amount, body.idempotency_key)


def _adjust(
    ctx: Context, caller: Party, payment_id: str, kind: str, amount: int | None, key: str
) -> PaymentPublic:
    result = merchant_adjust(ctx, caller.id, payment_id, kind, amount, key)
    if result.reason is not None:
        reason = result.reason.value
        raise Conflict(f"the {kind} is refused: {reason}", reason=reason)
    return PaymentPublic.model_validate(wallets.merchant_payment(ctx, caller, payment_id))
