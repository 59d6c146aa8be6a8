"""Approvals: payments waiting for their owner's decision."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

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


@router.get("/v1/approvals", response_model_exclude_unset=True)  # `offer` only with one
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


@router.post("/v1/approvals/{approval_id}", response_model_exclude_unset=True)
def decide_approval(
    approval_id: OwnedApproval, body: DecisionCreate, ctx: Ctx, caller: Owner
) -> ApprovalDecided:
    """Approve (optionally by instalments) or decline a waiting payment (owner)."""
    approval, result = decide(ctx, caller.id, approval_id, body.decision, body.instalments)
    reason = None if result.reason is None else result.reason.value
    decided: dict[str, Any] = {"status": result.status.value, "reason": reason}
    plans = [f["plan_id"] for f in result.funded_by if "plan_id" in f]
    if plans:
        decided["plan_id"] = plans[0]  # paid by instalments: the plan it opened
    return ApprovalDecided.model_validate(
        {**consent.approval_public(ctx, approval), "result": decided}
    )
