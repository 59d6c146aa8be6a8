"""The console's devices, rules, mandates, wallets and payments pages.

Each action calls the use case that the HTTP API's router for it calls; a refusal is shown on
the page with the API's message, and a form that does not validate shows the API's messages
next to its fields.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from gateway import service, wallets
from gateway.consent import service as consent
from gateway.console import forms, money_forms, views
from gateway.console.auth import Acting, SignedIn, context
from gateway.console.money import format_amount, refusal
from gateway.console.render import page
from gateway.console.sessions import Session
from gateway.errors import REFUSAL_TYPES, NotFound, refusal_of

router = APIRouter(include_in_schema=False)
ACTIONS = ("approve", "suspend", "resume", "revoke")


@router.get("/console/devices")
def devices_page(request: Request, session: SignedIn) -> HTMLResponse:
    """The owner's devices, with their state and the actions it allows."""
    return _devices(request, session)


@router.post("/console/devices/{device_id}/status")
def change_device(request: Request, device_id: str, acting: Acting) -> HTMLResponse:
    """Approve, suspend, resume or revoke a device, as `POST /v1/devices/{id}/{action}` does."""
    session, form = acting
    action = form.get("action", "")
    if action not in ACTIONS:
        return _devices(request, session, 422, error="Choose approve, suspend, resume or revoke.")
    try:
        device = service.change_device_status(context(request), session.owner, device_id, action)
    except REFUSAL_TYPES as exc:
        return _devices(request, session, refusal_of(exc)[0], error=refusal(exc))
    label = views.label_of(device)
    return _devices(request, session, notice=f"{label} is now {device.status.value}.")


@router.get("/console/devices/{device_id}")
def device_page(request: Request, session: SignedIn, device_id: str) -> HTMLResponse:
    """One device: its wallet, rules, limits and mandates."""
    try:
        return _device(
            request, session, device_id, rules_form=_rules_form(request, session, device_id)
        )
    except NotFound:
        return _devices(request, session, 404, error="No such device.")


@router.post("/console/devices/{device_id}/rules")
def put_rules(request: Request, device_id: str, acting: Acting) -> HTMLResponse:
    """Replace the device's rules, as `PUT /v1/devices/{id}/rules` does."""
    session, form = acting
    try:
        current = views.rules_of(context(request), session.owner, device_id)
        wallet_currency = views.device_currency(context(request), session.owner, device_id)
    except NotFound:
        return _devices(request, session, 404, error="No such device.")
    body, errors = forms.validate_rules(form, current, wallet_currency)
    if body is None:
        return _device(request, session, device_id, 422, rules_form=form, rules_errors=errors)
    try:
        consent.put_rules(context(request), session.owner, device_id, body.to_rules())
    except REFUSAL_TYPES as exc:
        errors = {forms.FORM_ERROR: refusal(exc, forms.rules_currency(form, wallet_currency))}
        return _device(
            request, session, device_id, refusal_of(exc)[0], rules_form=form, rules_errors=errors
        )
    rules = views.rules_of(context(request), session.owner, device_id)
    notice = "Rules saved." if rules else "Rules removed: every payment now needs your approval."
    shown = forms.rules_form(rules, wallet_currency)
    return _device(request, session, device_id, rules_form=shown, notice=notice)


@router.post("/console/devices/{device_id}/mandates")
def create_mandate(request: Request, device_id: str, acting: Acting) -> HTMLResponse:
    """Give a standing consent, as `POST /v1/devices/{id}/mandates` does."""
    session, form = acting
    try:
        rules_form = _rules_form(request, session, device_id)
        wallet_currency = views.device_currency(context(request), session.owner, device_id)
    except NotFound:
        return _devices(request, session, 404, error="No such device.")
    currency = forms.rules_currency(rules_form, wallet_currency)  # the mandate's amounts are in it
    body, errors = forms.validate_mandate(form, currency, context(request).clock())
    status = 422
    if body is not None:
        try:
            mandate_id = consent.create_mandate(context(request), session.owner, device_id, body)
        except REFUSAL_TYPES as exc:
            field = "payee" if getattr(exc, "reason", "") == "unknown_payee" else forms.FORM_ERROR
            status, errors = refusal_of(exc)[0], {field: refusal(exc, currency)}
        else:
            notice = f"Mandate {mandate_id} is active."
            return _device(request, session, device_id, rules_form=rules_form, notice=notice)
    return _device(
        request,
        session,
        device_id,
        status,
        rules_form=rules_form,
        mandate_form=form,
        mandate_errors=errors,
    )


@router.post("/console/mandates/{mandate_id}/revoke")
def revoke_mandate(request: Request, mandate_id: str, acting: Acting) -> HTMLResponse:
    """Take a standing consent back, as `DELETE /v1/mandates/{id}` does."""
    session, _ = acting
    try:
        revoked = consent.revoke_mandate(context(request), session.owner, mandate_id)
    except REFUSAL_TYPES as exc:
        return _devices(request, session, refusal_of(exc)[0], error=refusal(exc))
    device_id = revoked["device_id"]  # the mandate's own, whatever the form says
    rules_form = _rules_form(request, session, device_id)
    notice = f"Mandate {mandate_id} is revoked."
    return _device(request, session, device_id, rules_form=rules_form, notice=notice)


@router.get("/console/wallets")
def wallets_page(request: Request, session: SignedIn) -> HTMLResponse:
    """Each device's wallet, with a top-up form."""
    return _wallets(request, session)


@router.post("/console/devices/{device_id}/top-ups")
def top_up(request: Request, device_id: str, acting: Acting) -> HTMLResponse:
    """Top up a wallet, as `POST /v1/devices/{id}/wallet/top-ups` does (idempotent by form)."""
    session, form = acting
    body, errors = money_forms.validate_top_up(form)
    if body is None:
        failed = money_forms.failed_top_up(device_id, form, errors)
        return _wallets(request, session, 422, failed_top_up=failed)
    try:
        wallets.top_up(
            context(request),
            session.owner,
            device_id,
            body.amount,
            body.currency,
            body.idempotency_key,
        )
    except REFUSAL_TYPES as exc:
        return _wallets(request, session, refusal_of(exc)[0], error=refusal(exc, body.currency))
    amount = format_amount(body.amount, body.currency)
    label = views.device_labels(context(request), session.owner).get(device_id, device_id)
    return _wallets(request, session, notice=f"{label} topped up by {amount}.")


@router.get("/console/payments")
def payments_page(request: Request, session: SignedIn) -> HTMLResponse:
    """Every payment of the owner's devices, newest first."""
    ctx = context(request)
    payments = views.payments_view(ctx, session.owner)
    disputed = {d["payment_id"] for d in views.disputes_view(ctx, session.owner)}
    labels = views.device_labels(ctx, session.owner)
    values: dict[str, Any] = {"payments": payments, "disputed": disputed, "labels": labels}
    return page(request, "payments.html", session, active="payments", **values)


def _rules_form(request: Request, session: Session, device_id: str) -> dict[str, str]:
    """The rules form's fields for the device's rules as stored (NotFound for another's)."""
    ctx = context(request)
    rules = views.rules_of(ctx, session.owner, device_id)
    return forms.rules_form(rules, views.device_currency(ctx, session.owner, device_id))


def _devices(request: Request, session: Session, status: int = 200, **values: Any) -> HTMLResponse:
    devices = views.devices_view(context(request), session.owner)
    return page(
        request, "devices.html", session, status, active="devices", devices=devices, **values
    )


def _wallets(request: Request, session: Session, status: int = 200, **values: Any) -> HTMLResponse:
    devices = views.devices_view(context(request), session.owner)
    return page(
        request,
        "wallets.html",
        session,
        status,
        active="wallets",
        devices=devices,
        new_key=secrets.token_hex(8),
        **values,
    )


def _device(
    request: Request, session: Session, device_id: str, status: int = 200, **values: Any
) -> HTMLResponse:
    ctx = context(request)
    try:
        view = views.device_view(ctx, session.owner, device_id)
    except NotFound:
        return _devices(request, session, 404, error="No such device.")
    values.setdefault("mandate_form", {})
    return page(
        request,
        "device.html",
        session,
        status,
        active="devices",
        mandates=views.mandates_of(ctx, session.owner, device_id),
        rules=views.rules_of(ctx, session.owner, device_id),
        audit=views.audit_of(ctx, session.owner, device_id),
        spending=views.spending_of(ctx, session.owner, device_id),
        **view,
        **values,
    )
