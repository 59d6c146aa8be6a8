"""Who is using the console, and whether a request may change anything.

Every console page needs a session (the cookie); every state-changing request also needs the
session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`) and must not come from
another site (its `Origin` and `Sec-Fetch-Site`). The cookie is `SameSite=Strict` on top.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from gateway.console import sessions
from gateway.console.sessions import Session
from gateway.context import Context

Form = dict[str, str]
MAX_FIELDS = 200
HOME = "/console"
MAX_RETURN = 2000  # characters of a path to return to after signing in


class SignedOut(Exception):
    """No live session: the sign-in page answers instead."""


class CrossSite(Exception):
    """A state-changing request that another site sent, or without this session's CSRF token."""


class StaleForm(CrossSite):
    """A form from this site whose token is not this session's: typically one opened before
    the owner signed out and in again in another tab. Refused as well; what was typed in it
    is kept in the tab for the form's page (`page_of`)."""


def context(request: Request) -> Context:
    """The gateway's context, set once when the app is built."""
    ctx: Context = request.app.state.ctx
    return ctx


def is_cross_site(request: Request) -> bool:
    """Whether the browser says that another site (or an opaque origin) sent this request."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    return origin.rstrip("/").lower() != own.lower()


def current_session(request: Request) -> Session | None:
    """The request's session, if its cookie names a live one."""
    return sessions.session_of(context(request), request.cookies.get(sessions.COOKIE))


def signed_in(request: Request) -> Session:
    """A page's dependency: the session, else the sign-in page."""
    session = current_session(request)
    if session is None:
        raise SignedOut()
    return session


async def read_form(request: Request) -> Form:
    """The urlencoded form of a POST (the last value of a repeated field wins)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FIELDS))
    except ValueError:  # more fields than any console form has: read as an empty form
        return {}


async def acting(request: Request) -> tuple[Session, Form]:
    """A state-changing request's dependency: same site, signed in, with the CSRF token."""
    if is_cross_site(request):
        raise CrossSite("this request came from another site")
    form = await read_form(request)
    session = await run_in_threadpool(current_session, request)
    if session is None:
        raise SignedOut()
    token = form.get("csrf_token") or request.headers.get("x-csrf-token")
    if not token:
        raise CrossSite("this request was not sent by the console's own form: reload the page")
    if not session.csrf_ok(token):
        raise StaleForm(
            "This form was opened before your latest sign-in, so it was not sent: nothing was "
            "changed."
        )
    return session, form


SignedIn = Annotated[Session, Depends(signed_in)]
Acting = Annotated[tuple[Session, Form], Depends(acting)]


def return_path(target: str | None) -> str:
    """Where signing in leads: `target` when it is a path inside the console (`/console/...`,
    with its query), else the console's home. Never another site: an absolute URL, `//host`,
    a backslash (which browsers read as a slash), a scheme, dot segments, control or non-ASCII
    characters and anything outside /console all give the home."""
    if not target or len(target) > MAX_RETURN or not target.isascii():
        return HOME
    if not target.isprintable() or " " in target or "\\" in unquote(target):
        return HOME
    parts = urlsplit(target)
    path = unquote(parts.path)
    if parts.scheme or parts.netloc or target.startswith("//") or parts.fragment:
        return HOME
    if not (path == HOME or path.startswith(f"{HOME}/")) or "//" in path:
        return HOME
    if any(segment in (".", "..") for segment in path.split("/")):
        return HOME
    return target


# A console form's answer is a page at the form's own (POST-only) address: a form sent from there
# returns, after signing in, to the page that shows that form, which a GET can open.
POSTED_FROM = (
    (re.compile(r"/console/devices/([^/]+)/(?:rules|mandates)"), r"/console/devices/\1"),
    (re.compile(r"/console/devices/[^/]+/top-ups"), "/console/wallets"),
    (re.compile(r"/console/(?:devices/[^/]+/status|mandates/[^/]+/revoke)"), "/console/devices"),
    (
        re.compile(r"/console/(?:funding-sources(?:/[^/]+/top-ups)?|instalment-policy)"),
        "/console/funding",
    ),
    (re.compile(r"/console/instalment-plans/[^/]+/repay"), "/console/instalment-plans"),
    (re.compile(r"/console/payments/([^/]+)/disputes"), r"/console/disputes?payment=\1"),
    (re.compile(r"/console/disputes/[^/]+/response"), "/console/disputes"),
    (re.compile(r"/console/(?:approvals/[^/]+|session(?:/link)?|sign-out)"), HOME),
)


def page_of(path: str) -> str:
    """The page that shows the form whose answer is at `path`, else `path` itself."""
    for pattern, page in POSTED_FROM:
        if pattern.fullmatch(path):
            return pattern.sub(page, path)
    return path


def asked_for(request: Request) -> str:
    """The console page a signed-out request was for, to return to after signing in: the page
    itself for a GET, else the page the browser was on (htmx says which; a form's is its
    same-origin Referer)."""
    if request.method == "GET" and "hx-request" not in request.headers:
        return return_path(
            request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
    page = request.headers.get("hx-current-url") or request.headers.get("referer") or ""
    parts = urlsplit(page)
    own = request.headers.get("host", request.url.netloc)
    if parts.netloc.lower() != own.lower() or parts.scheme not in ("http", "https"):
        return HOME
    return return_path(page_of(parts.path) + (f"?{parts.query}" if parts.query else ""))


def sign_in_url(target: str) -> str:
    """The sign-in page that returns to `target` afterwards."""
    return HOME if target == HOME else f"{HOME}?next={quote(target, safe='')}"
