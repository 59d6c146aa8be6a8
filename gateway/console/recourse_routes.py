"""The console's disputes and audit trail pages.

Opening and answering a dispute call the use cases behind `POST /v1/payments/{id}/disputes`
and `POST /v1/disputes/{id}/response`, with the bodies validated by the API's own models; the
audit trail is the use case behind `GET /v1/devices/{id}/audit`, beside the transparency log's
latest signed tree head (`GET /v1/audit/tree-head`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from gateway.console import forms, money_forms, views
from gateway.console.auth import Acting, SignedIn, context
from gateway.console.money import format_amount, major_units, refusal
from gateway.console.render import SECURITY_HEADERS, page
from gateway.console.sessions import Session
from gateway.disputes import service as disputes
from gateway.disputes.rules import OPEN, REASONS, UNDER_REVIEW
from gateway.errors import REFUSAL_TYPES, refusal_of
from gateway.evidence.bundle import evidence_bundle
from gateway.http.routes.evidence import EvidenceBundle

router = APIRouter(include_in_schema=False)


@router.get("/console/disputes")
def disputes_page(request: Request, session: SignedIn, payment: str = "") -> HTMLResponse:
    """The owner's disputes; with `?payment=`, the form that disputes that payment."""
    return _disputes(request, session, payment_id=payment)


@router.post("/console/payments/{payment_id}/disputes")
def open_dispute(request: Request, payment_id: str, acting: Acting) -> HTMLResponse:
    """Dispute a payment, as `POST /v1/payments/{id}/disputes` does."""
    session, form = acting
    payment = views.disputable_payment(context(request), session.owner, payment_id)
    body, errors = money_forms.validate_dispute(form, payment["currency"] if payment else "")
    if body is None:
        return _disputes(request, session, 422, payment_id, form=form, errors=errors)
    try:
        dispute = disputes.open_dispute(context(request), session.owner, payment_id, body)
    except REFUSAL_TYPES as exc:
        status = refusal_of(exc)[0]
        errors = {forms.FORM_ERROR: refusal(exc, payment["currency"] if payment else None)}
        if status == 422 and body.get("amount") is not None:  # a check the schema cannot make
            errors = {
                "amount": _amount_error(request, session, payment_id) or errors[forms.FORM_ERROR]
            }
        return _disputes(request, session, status, payment_id, form=form, errors=errors)
    amount = format_amount(dispute["amount"], dispute["currency"])
    notice = f"Your dispute of {amount} is open: the payee must answer by the date shown below."
    return _disputes(request, session, notice=notice)


@router.post("/console/disputes/{dispute_id}/response")
def answer_dispute(request: Request, dispute_id: str, acting: Acting) -> HTMLResponse:
    """Accept or contest a dispute about a payment to one of the owner's devices, as
    `POST /v1/disputes/{id}/response` does."""
    session, form = acting
    body, errors = money_forms.validate_response(form)
    status_code = 422
    if body is not None:
        try:
            answered = disputes.respond(
                context(request), session.owner, dispute_id, body.decision, body.message
            )
        except REFUSAL_TYPES as exc:
            status_code = refusal_of(exc)[0]
            errors = {"message": _refused_answer(request, session, dispute_id, exc)}
    if body is None or errors:  # the answer stays as typed, the reason beside it
        typed = {"dispute_id": dispute_id, "message": form.get("message", "")}
        error = errors.pop("message", "")
        answer = {**typed, "error": "; ".join(filter(None, [error, money_forms.one_line(errors)]))}
        return _disputes(request, session, status_code, answer=answer)
    status = answered["status"].replace("_", " ")
    return _disputes(request, session, notice=f"The dispute is now {status}.")


@router.get("/console/payments/{payment_id}/evidence")
def evidence(request: Request, session: SignedIn, payment_id: str) -> Response:
    """A payment's evidence bundle to save, as `GET /v1/payments/{id}/evidence` answers it (for
    `kym evidence verify`, or to hand to whoever judges a dispute)."""
    try:
        bundle = EvidenceBundle(**evidence_bundle(context(request), session.owner, payment_id))
    except REFUSAL_TYPES as exc:
        return _disputes(request, session, refusal_of(exc)[0], error=refusal(exc))
    name = f"evidence-{bundle.payment_id}.json"  # a stored id: no quote or path in it
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    body = bundle.model_dump_json(exclude_unset=True, indent=1)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/console/notifications")
def notifications_page(request: Request, session: SignedIn) -> HTMLResponse:
    """What happened to the owner's devices and money lately, as their events tell it."""
    items = views.notifications(context(request), session.owner)
    return page(request, "notifications.html", session, active="notifications", items=items)


@router.get("/console/audit")
def audit_page(
    request: Request, session: SignedIn, device: str = "", cursor: str = ""
) -> HTMLResponse:
    """A device's audit trail, newest first and paged, beside the latest signed tree head."""
    ctx = context(request)
    labels = views.device_labels(ctx, session.owner)
    device_id = device or next(iter(labels), "")
    values: dict[str, Any] = {"labels": labels, "device_id": device_id, "cursor": cursor}
    status = 200
    if device_id:
        try:
            values.update(views.audit_trail(ctx, session.owner, device_id, cursor or None))
        except REFUSAL_TYPES as exc:
            status, values["error"] = refusal_of(exc)[0], refusal(exc)
    head = views.tree_head(ctx)
    return page(request, "audit.html", session, status, active="audit", head=head, **values)


def _refused_answer(request: Request, session: Session, dispute_id: str, exc: Exception) -> str:
    """Why an answer was refused, in the owner's words where the API's are for developers."""
    ctx = context(request)
    found = [d for d in views.disputes_view(ctx, session.owner) if d["id"] == dispute_id]
    if getattr(exc, "reason", "") != "insufficient_funds" or not found:
        return refusal(exc, found[0]["currency"] if found else None)
    d = found[0]
    label = views.device_labels(ctx, session.owner).get(d["payee"], d["payee"])
    amount = format_amount(d["amount"] - d["refunded_amount"], d["currency"])
    return (
        f"{label}'s wallet cannot refund {amount} now: top it up under Wallets and accept "
        "again, or contest."
    )


def _amount_error(request: Request, session: Session, payment_id: str) -> str | None:
    payment = views.disputable_payment(context(request), session.owner, payment_id)
    if payment is None:
        return None
    left = payment["amount"] - payment["refunded_amount"]
    shown, typed = format_amount(left, payment["currency"]), major_units(left, payment["currency"])
    return f"Dispute at most {shown} (write {typed} or less): what was paid, less refunds."


def _disputes(
    request: Request, session: Session, status: int = 200, payment_id: str = "", **values: Any
) -> HTMLResponse:
    ctx = context(request)
    mine = views.disputes_view(ctx, session.owner)
    payment = None
    if payment_id and payment_id not in {d["payment_id"] for d in mine}:
        payment = views.disputable_payment(ctx, session.owner, payment_id)
    if payment_id and payment is None and status == 200:
        status, values["error"] = 404, "That payment cannot be disputed (again) from here."
    answer = values.get("answer")
    shown = {d["id"] for d in mine if d["answerable"] and d["status"] in (OPEN, UNDER_REVIEW)}
    if answer and answer["dispute_id"] not in shown:  # no form left to show it beside
        values["error"] = answer["error"]
    values.setdefault("form", {})
    values.setdefault("errors", {})
    return page(
        request,
        "disputes.html",
        session,
        status,
        active="disputes",
        disputes=mine,
        labels=views.device_labels(ctx, session.owner),
        payment=payment,
        reasons=REASONS,
        **values,
    )
