"""The console's funding pages: the owner's funding sources, their top-ups, the instalment
policy, and the instalment plans with their schedules.

Each action calls the use case that the API's call for it calls (`POST /v1/funding-sources/{id}
/top-ups`, `POST /v1/instalment-plans/{id}/repay`); a top-up form carries an idempotency key
that the page made, so sending it twice moves the money once.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from gateway.console import money_forms, views
from gateway.console.auth import Acting, SignedIn, context
from gateway.console.money import format_amount, refusal
from gateway.console.render import page
from gateway.console.sessions import Session
from gateway.errors import REFUSAL_TYPES, refusal_of
from gateway.funding import collect
from gateway.funding import policy as instalment_policy
from gateway.funding import service as funding

router = APIRouter(include_in_schema=False)


@router.get("/console/funding")
def funding_page(request: Request, session: SignedIn) -> HTMLResponse:
    """The owner's funding sources in the order they are drawn on, and the instalment policy."""
    return _funding(request, session)


@router.post("/console/funding-sources/{source_id}/top-ups")
def top_up_source(request: Request, source_id: str, acting: Acting) -> HTMLResponse:
    """Top up a balance source, as `POST /v1/funding-sources/{id}/top-ups` does."""
    session, form = acting
    body, errors = money_forms.validate_top_up(form)
    if body is None:
        failed = money_forms.failed_top_up(source_id, form, errors)
        return _funding(request, session, 422, failed_top_up=failed)
    try:
        source = funding.top_up_source(
            context(request),
            session.owner,
            source_id,
            body.amount,
            body.currency,
            body.idempotency_key,
        )
    except REFUSAL_TYPES as exc:
        return _funding(request, session, refusal_of(exc)[0], error=refusal(exc, body.currency))
    amount = format_amount(body.amount, body.currency)
    balance = format_amount(source["balance"], source["currency"])
    notice = f"{source['name']} topped up by {amount}: its balance is {balance}."
    return _funding(request, session, notice=notice)


@router.post("/console/funding-sources")
def create_source(request: Request, acting: Acting) -> HTMLResponse:
    """Add a balance source or a credit line, as `POST /v1/owners/me/funding-sources` does."""
    session, form = acting
    body, errors = money_forms.validate_source(form)
    if body is None:
        return _funding(request, session, 422, source_form=form, source_errors=errors)
    try:
        source = funding.create_source(context(request), session.owner, body)
    except REFUSAL_TYPES as exc:
        field = "currency" if getattr(exc, "reason", "") == "currency_not_allowed" else "_form"
        errors = {field: refusal(exc, body["currency"])}
        status = refusal_of(exc)[0]
        return _funding(request, session, status, source_form=form, source_errors=errors)
    kind = "credit line" if source["kind"] == "credit_line" else "balance source"
    return _funding(request, session, notice=f"{source['name']} added as a {kind}.")


@router.post("/console/instalment-policy")
def put_policy(request: Request, acting: Acting) -> HTMLResponse:
    """Set or remove the instalment policy, as `PUT` and `DELETE /v1/owners/me/instalment-policy`
    do."""
    session, form = acting
    ctx = context(request)
    if form.get("action") == "remove":
        instalment_policy.delete_policy(ctx, session.owner)
        notice = "Instalment policy removed: a pay your balances cannot cover is declined."
        return _funding(request, session, notice=notice)
    currency = _line_currency(views.funding_view(ctx, session.owner), form.get("source"))
    body, errors = money_forms.validate_policy(form, currency)
    if body is None:
        return _funding(request, session, 422, policy_form=form, policy_errors=errors)
    try:
        instalment_policy.put_policy(ctx, session.owner, body)
    except REFUSAL_TYPES as exc:
        errors, status = {"source": refusal(exc, currency)}, refusal_of(exc)[0]
        return _funding(request, session, status, policy_form=form, policy_errors=errors)
    return _funding(request, session, notice="Instalment policy saved.")


@router.get("/console/instalment-plans")
def plans_page(request: Request, session: SignedIn) -> HTMLResponse:
    """The owner's instalment plans, newest first, with their schedules."""
    return _plans(request, session)


@router.post("/console/instalment-plans/{plan_id}/repay")
def repay_plan(request: Request, plan_id: str, acting: Acting) -> HTMLResponse:
    """Repay what a plan has left now, as `POST /v1/instalment-plans/{id}/repay` does."""
    session, _ = acting
    ctx = context(request)
    try:
        before = {p["id"]: p for p in views.plans_view(ctx, session.owner)}.get(plan_id)
        plan = collect.repay(ctx, session.owner, plan_id)
    except REFUSAL_TYPES as exc:
        return _plans(request, session, refusal_of(exc)[0], error=refusal(exc))
    if before is None or before["left"] == 0:
        return _plans(request, session, notice="This plan was repaid already.")
    left = format_amount(before["left"], plan["currency"])
    notice = f"Plan repaid: {left} collected from your balance sources, no fee added."
    return _plans(request, session, notice=notice)


def _plans(request: Request, session: Session, status: int = 200, **values: Any) -> HTMLResponse:
    ctx = context(request)
    plans = views.plans_view(ctx, session.owner)
    labels = views.device_labels(ctx, session.owner)
    return page(
        request, "plans.html", session, status, active="plans", plans=plans, labels=labels, **values
    )


def _line_currency(view: dict[str, Any], source_id: str | None) -> str:
    """The currency of the credit line `source_id`, else of the first one: the policy's amounts
    are typed in it (the form offers the credit lines, the first chosen)."""
    lines = [s for s in view["sources"] if s["kind"] == "credit_line"]
    chosen = [s for s in lines if s["id"] == source_id] or lines
    return str(chosen[0]["currency"]) if chosen else "EUR"


def _funding(request: Request, session: Session, status: int = 200, **values: Any) -> HTMLResponse:
    view = views.funding_view(context(request), session.owner)
    policy = view["policy"]
    currency = _line_currency(view, policy["source"] if policy else None)
    values.setdefault("policy_form", money_forms.policy_form(policy, currency))
    values.setdefault("source_form", {"kind": "balance", "currency": "EUR"})
    return page(
        request,
        "funding.html",
        session,
        status,
        active="funding",
        new_key=secrets.token_hex(8),
        **view,
        **values,
    )
