"""Instalment plans (contract section 8): the owner lists them and repays one early."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from gateway.funding import collect, plans
from gateway.http.deps import Ctx, Owner
from gateway.http.public import Public
from gateway.http.schemas import PageCursor, PageLimit

router = APIRouter(tags=["funding"])


class InstalmentPublic(Public):
    """Instalment `n` of a plan: due `n` x interval after it opened."""

    n: int
    due: str
    amount: int
    status: Literal["scheduled", "paid", "overdue"]


class InstalmentPlanPublic(Public):
    """A payment paid by instalments from a credit line: what it owes and when."""

    id: str
    payment_id: str
    device_id: str
    source: str
    amount: int
    fee: int
    total: int
    status: Literal["active", "repaid", "overdue"]
    instalments: list[InstalmentPublic]


class InstalmentPlanPage(Public):
    items: list[InstalmentPlanPublic]
    next_cursor: str | None


@router.get("/v1/owners/me/instalment-plans")
def list_instalment_plans(
    ctx: Ctx, caller: Owner, limit: PageLimit = 200, cursor: PageCursor = None
) -> InstalmentPlanPage:
    """The owner's instalment plans, newest first, with their instalments."""
    items, next_cursor = plans.list_plans(ctx, caller, limit, cursor)
    return InstalmentPlanPage.model_validate({"items": items, "next_cursor": next_cursor})


@router.post("/v1/instalment-plans/{plan_id}/repay")
def repay_instalment_plan(plan_id: str, ctx: Ctx, caller: Owner) -> InstalmentPlanPublic:
    """Repay the plan's unpaid rest now from the balance sources (owner); no fee is added."""
    return InstalmentPlanPublic.model_validate(collect.repay(ctx, caller, plan_id))
