"""The console's funding page: the owner's funding sources, their top-ups, the instalment policy.

Each action calls the use case that `POST /v1/funding-sources/{id}/top-ups` calls; the form
carries an idempotency key that the page made, so sending it twice moves the money once.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from gateway.console import forms, views
from gateway.console.auth import Acting, SignedIn, context
from gateway.console.money import format_amount
from gateway.console.render import page
from gateway.console.sessions import Session
from gateway.errors import REFUSAL_TYPES, refusal_of
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
    body, errors = forms.validate_top_up(form)
    if body is None:
        message = "; ".join(f"{field}: {text}" for field, text in errors.items())
        return _funding(request, session, 422, error=message)
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
        return _funding(request, session, refusal_of(exc)[0], error=str(exc))
    amount = format_amount(body.amount, body.currency)
    balance = format_amount(source["balance"], source["currency"])
    notice = f"{source['name']} topped up by {amount}: its balance is {balance}."
    return _funding(request, session, notice=notice)


def _funding(request: Request, session: Session, status: int = 200, **values: Any) -> HTMLResponse:
    view = views.funding_view(context(request), session.owner)
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
