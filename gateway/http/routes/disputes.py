"""Disputes (contract section 9): the payer's owner opens one, the payee answers, the admin
resolves contested ones; every party lists its own."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from devices import store as device_store
from gateway.disputes import service
from gateway.disputes import store as dispute_store
from gateway.disputes.rules import REASONS
from gateway.errors import NotFound
from gateway.http.deps import Admin, Ctx, Owner, kind_of
from gateway.http.schemas import MAX_MINOR, Body, PageCursor, PageLimit
from gateway.parties import Party
from wallet import store as wallet_store

router = APIRouter(tags=["recourse"])
Payee = Annotated[Party, Depends(kind_of("owner", "merchant"))]


# Path resources checked before the body (404 before 422, as in gateway.http.resources).
def paid_by_caller(payment_id: str, ctx: Ctx, caller: Owner) -> str:
    """A payment made by one of the caller's devices."""
    with ctx.db.read() as conn:
        payment = wallet_store.get_payment(conn, payment_id)
        payer = device_store.get_device(conn, payment.payer_id) if payment else None
    if payer is None or payer.owner_id != caller.id:
        raise NotFound("no such payment")
    return payment_id


def answerable_dispute(dispute_id: str, ctx: Ctx, caller: Payee) -> str:
    """A dispute about a payment to the caller (a merchant) or to the caller's device."""
    with ctx.db.read() as conn:
        row = dispute_store.get(conn, dispute_id)
    if row is None or row["payee_party"] != caller.id:
        raise NotFound("no such dispute")
    return dispute_id


def any_dispute(dispute_id: str, ctx: Ctx, _: Admin) -> str:
    """A dispute that exists (for the admin)."""
    with ctx.db.read() as conn:
        if dispute_store.get(conn, dispute_id) is None:
            raise NotFound("no such dispute")
    return dispute_id


PaidByCaller = Annotated[str, Depends(paid_by_caller)]
AnswerableDispute = Annotated[str, Depends(answerable_dispute)]
AnyDispute = Annotated[str, Depends(any_dispute)]
Lister = Annotated[Party, Depends(kind_of("owner", "merchant", "admin"))]
Text = Annotated[str, Field(min_length=1, max_length=1000)]


class DisputeCreate(Body):
    reason: Literal[REASONS]  # type: ignore[valid-type]
    message: Text
    amount: Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR)] | None = None


class ResponseCreate(Body):
    decision: Literal["accept", "contest"]
    message: Text


class ResolutionCreate(Body):
    outcome: Literal["owner", "payee"]
    message: Text | None = None


class DisputePublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    payment_id: str
    status: str
    reason: str
    amount: int
    currency: str
    respond_by: str
    refund_pending: bool


class DisputePage(BaseModel):
    items: list[DisputePublic]
    next_cursor: str | None


@router.post("/v1/payments/{payment_id}/disputes", status_code=201)
def open_dispute(
    payment_id: PaidByCaller, body: DisputeCreate, ctx: Ctx, caller: Owner
) -> DisputePublic:
    """Dispute a payment (the paying device's owner, within 120 days)."""
    return DisputePublic(**service.open_dispute(ctx, caller, payment_id, body.model_dump()))


@router.post("/v1/disputes/{dispute_id}/response")
def answer_dispute(
    dispute_id: AnswerableDispute, body: ResponseCreate, ctx: Ctx, caller: Payee
) -> DisputePublic:
    """Accept (refund at once) or contest a dispute (the merchant or payee device's owner)."""
    answered = service.respond(ctx, caller, dispute_id, body.decision, body.message)
    return DisputePublic(**answered)


@router.post("/v1/disputes/{dispute_id}/resolution")
def resolve_dispute(
    dispute_id: AnyDispute, body: ResolutionCreate, ctx: Ctx, caller: Admin
) -> DisputePublic:
    """Decide an open or contested dispute (admin)."""
    resolved = service.resolve(ctx, caller.actor, dispute_id, body.outcome, body.message)
    return DisputePublic(**resolved)


@router.get("/v1/disputes")
def list_disputes(
    ctx: Ctx, caller: Lister, limit: PageLimit = 200, cursor: PageCursor = None
) -> DisputePage:
    """The caller's disputes, newest first (owner, merchant or admin)."""
    page = service.list_page(ctx, caller, limit, cursor)
    return DisputePage(items=[DisputePublic(**d) for d in page.items], next_cursor=page.next_cursor)
