"""Approvals: payments waiting for their owner's decision."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter

from gateway.consent import service as consent
from gateway.consent import views
from gateway.http.deps import Ctx, Owner
from gateway.http.public import ApprovalDecided, ApprovalList
from gateway.http.resources import OwnedApproval
from gateway.http.schemas import DecisionCreate, PageCursor, PageLimit
from gateway.orders.approvals import decide_approval as decide

router = APIRouter(tags=["approvals"])
ApprovalStatus = Literal["pending", "approved", "declined", "expired"]


@router.get("/v1/approvals")
def list_approvals(
    ctx: Ctx,
    caller: Owner,
    status: ApprovalStatus | None = None,
    limit: PageLimit = 200,
    cursor: PageCursor = None,
) -> ApprovalList:
    """The owner's approvals, newest first, e.g. ?status=pending."""
    page = views.approvals_page(ctx, caller, status, limit, cursor)
    return ApprovalList.model_validate(asdict(page))


@router.post("/v1/approvals/{approval_id}")
def decide_approval(
    approval_id: OwnedApproval, body: DecisionCreate, ctx: Ctx, caller: Owner
) -> ApprovalDecided:
    """Approve or decline a waiting payment (owner); approving runs steps 2-4 again."""
    approval, result = decide(ctx, caller.id, approval_id, body.decision)
    reason = None if result.reason is None else result.reason.value
    return ApprovalDecided.model_validate(
        {
            **consent.approval_public(ctx, approval),
            "result": {"status": result.status.value, "reason": reason},
        }
    )
