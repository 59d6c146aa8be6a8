"""The console's sign-in, approvals inbox and freeze page.

Every action calls the same use case as the HTTP API's router for it; refusals (a decision on
an approval that is no longer pending, another owner's approval) are shown on the page with the
API's message and status code.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway import owners
from gateway.consent import service as consent
from gateway.console import sessions, views
from gateway.console.auth import (
    HOME,
    Acting,
    SignedIn,
    context,
    current_session,
    is_cross_site,
    read_form,
    return_path,
)
from gateway.console.money import format_amount, refusal
from gateway.console.render import page
from gateway.console.sessions import Session
from gateway.errors import REFUSAL_TYPES, refusal_of
from gateway.http.resources import owned_approval
from gateway.orders.approvals import decide_approval

router = APIRouter(include_in_schema=False)
POLL_S = 30  # the inbox follows the event stream; this poll is only a safety net
RECENT = 10  # decided approvals shown under the inbox
FROZEN = "Your payments are frozen: unfreeze them to approve this one, which keeps waiting."
# Why an approved payment can still be declined (the device, its rules and its funds are
# checked again when the owner approves), in the owner's words.
DECLINED_BECAUSE = {
    "device_not_active": "the device is no longer active",
    "unknown_payee": "the payee no longer takes payments",
    "payee_not_allowed": "the device's rules do not allow this payee",
    "currency_not_allowed": "the device's rules or wallet do not take this currency",
    "category_not_allowed": "the device's rules do not allow this category",
    "outside_active_hours": "it is outside the device's active hours",
    "amount_over_limit": "it is above the device's largest single payment",
    "period_limit_exceeded": "it would go over one of the device's spending limits",
    "payment_count_exceeded": "it would go over the device's number of payments",
    "insufficient_funds": "the wallet and your funding sources cannot cover it",
}


@router.get("/console")
def console_home(request: Request, next: str = "") -> Response:
    """The approvals inbox, or the sign-in page for a visitor without a session (`?next=`: the
    console page to return to once signed in)."""
    target = return_path(next)
    session = current_session(request)
    if session is None:
        return page(request, "signin.html", None, next=target)
    if target != HOME:  # signed in meanwhile (another tab): go where the link was going
        return RedirectResponse(target, status_code=303)
    return _inbox(request, session)


@router.post("/console/session")
async def sign_in(request: Request) -> Response:
    """Exchange an owner's API key for a session cookie; back to the page asked for."""
    if is_cross_site(request):
        return page(request, "signin.html", None, 403, error="Sign in from the console's own page.")
    form = await read_form(request)
    api_key, target = form.get("api_key", "").strip(), return_path(form.get("next"))
    session_id = await run_in_threadpool(sessions.sign_in, context(request), api_key)
    if session_id is None:
        message = "That is not an owner's API key. Check it and try again."
        return page(request, "signin.html", None, 401, error=message, next=target)
    return _signed_in(request, session_id, target)


@router.get("/console/link")
def sign_in_link_page(request: Request) -> HTMLResponse:
    """The page a sign-in link opens; its script posts the token from the URL's fragment.

    The token travels in the fragment (`/console/link#<token>`), which browsers never send, so
    it appears in no access log and no Referer.
    """
    return page(request, "link.html", None)


@router.post("/console/session/link")
async def sign_in_with_link(request: Request) -> Response:
    """Exchange a one-time sign-in link (`kym demo` prints one) for a session cookie."""
    if is_cross_site(request):
        return page(request, "signin.html", None, 403, error="Open sign-in links yourself.")
    token = (await read_form(request)).get("token", "").strip().lstrip("#")
    session_id = await run_in_threadpool(sessions.redeem_link, context(request), token)
    if session_id is None:
        message = "This sign-in link has expired or was used already. Sign in with your key."
        return page(request, "signin.html", None, 401, error=message)
    return _signed_in(request, session_id)


def _signed_in(request: Request, session_id: str, target: str = HOME) -> Response:
    answer = RedirectResponse(return_path(target), status_code=303)
    answer.set_cookie(
        sessions.COOKIE,
        session_id,
        max_age=int(sessions.LIFETIME.total_seconds()),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return answer


@router.post("/console/sign-out")
def sign_out(request: Request, acting: Acting) -> Response:
    """End this session."""
    sessions.sign_out(context(request), request.cookies[sessions.COOKIE])
    answer = RedirectResponse("/console", status_code=303)
    answer.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return answer


@router.get("/console/approvals/pending")
def pending_fragment(request: Request, session: SignedIn) -> HTMLResponse:
    """The inbox's list alone, for the page's live refresh."""
    labels = views.device_labels(context(request), session.owner)
    return page(
        request, "_approvals.html", session, approvals=_pending(request, session), labels=labels
    )


@router.post("/console/approvals/{approval_id}")
def decide(request: Request, approval_id: str, acting: Acting) -> HTMLResponse:
    """Approve (on a number of instalments when the approval offers them) or decline a waiting
    payment, as `POST /v1/approvals/{id}` does."""
    session, form = acting
    decision, count = form.get("decision", ""), form.get("instalments", "").strip()
    if decision not in ("approve", "decline") or not (count == "" or count.isdigit()):
        return _inbox(request, session, 422, error="Choose approve or decline.")
    instalments = int(count) if count else None
    ctx = context(request)
    try:
        owned_approval(approval_id, ctx, session.owner)
        approval, result = decide_approval(
            ctx, session.owner.id, approval_id, decision, instalments
        )
    except REFUSAL_TYPES as exc:
        error = FROZEN if getattr(exc, "reason", "") == "owner_frozen" else refusal(exc)
        return _inbox(request, session, refusal_of(exc)[0], error=error)
    amount = format_amount(approval["amount_minor"], approval["currency"])
    paid = f"{amount} to {views.payee_name(ctx, approval['payee'])}"
    if result.status.value == "approved" and instalments:
        notice = f"{paid} paid from your credit line: {instalments} "
        notice += "instalments, scheduled under Instalments. The device has been told."
    elif result.status.value == "approved":
        notice = f"{paid} approved: the device has been told."
    elif result.reason is None or result.reason.value == "approval_declined":
        notice = f"{paid} declined: the device has been told."
    else:
        why = DECLINED_BECAUSE.get(result.reason.value, result.reason.value.replace("_", " "))
        failed = f"{paid} was declined although you approved it: {why}. The device has been told."
        return _inbox(request, session, error=failed)  # an outcome to notice, not a success
    return _inbox(request, session, notice=notice)


@router.get("/console/freeze")
def freeze_page(request: Request, session: SignedIn) -> HTMLResponse:
    """The freeze switch: stop every payment of every device at once."""
    return page(request, "freeze.html", session, active="freeze")


@router.post("/console/freeze")
def freeze(request: Request, acting: Acting) -> HTMLResponse:
    """Freeze or unfreeze, as `POST /v1/owners/me/freeze` and `.../unfreeze` do."""
    session, form = acting
    action = form.get("action", "")
    if action not in ("freeze", "unfreeze"):
        return page(request, "freeze.html", session, 422, active="freeze", error="Choose one.")
    owners.set_frozen(context(request), session.owner, action == "freeze")
    notice = "Every payment is frozen." if action == "freeze" else "Payments flow again."
    return page(request, "freeze.html", session, active="freeze", notice=notice)


def _pending(request: Request, session: Session) -> list[dict[str, Any]]:
    return consent.list_approvals(context(request), session.owner, "pending")


def _inbox(request: Request, session: Session, status: int = 200, **values: Any) -> HTMLResponse:
    approvals = _pending(request, session)
    values["labels"] = views.device_labels(context(request), session.owner)
    everything = consent.list_approvals(context(request), session.owner, None)
    values["decided"] = [a for a in everything if a["status"] != "pending"][:RECENT]
    values["because"] = DECLINED_BECAUSE
    return page(
        request,
        "approvals.html",
        session,
        status,
        active="approvals",
        approvals=approvals,
        poll_s=POLL_S,
        **values,
    )
