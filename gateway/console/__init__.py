"""The owner's console in the browser (contract section 7, "Console").

Server-rendered pages (Jinja2) and a vendored htmx for the inbox's live refresh, all served from
this package: no build step, nothing fetched from the network at run time. `mount(app)` adds
the pages, the static files and the answers for a visitor without a session or a request from
another site.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.console import device_routes, funding_routes, recourse_routes, routes, sessions
from gateway.console.auth import (
    CrossSite,
    SignedOut,
    StaleForm,
    asked_for,
    current_session,
    page_of,
    return_path,
    sign_in_url,
)
from gateway.console.render import HERE, page
from gateway.context import Context


def sign_in_link(ctx: Context, api_key: str, base_url: str) -> str | None:
    """A one-time URL (ten minutes) that opens a console session for this owner's key.

    The token is the URL's fragment, which the browser keeps to itself: no access log sees it.
    """
    token = sessions.sign_in(ctx, api_key, purpose="link")
    return None if token is None else f"{base_url.rstrip('/')}/console/link#{token}"


def mount(app: FastAPI) -> None:
    """Serve the console under /console on this app."""
    app.include_router(routes.router)
    app.include_router(device_routes.router)
    app.include_router(funding_routes.router)
    app.include_router(recourse_routes.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignedOut, _signed_out)
    app.add_exception_handler(CrossSite, _cross_site)


async def _signed_out(request: Request, _: Exception) -> Response:
    """The sign-in page, which leads back to the page that was asked for."""
    target = asked_for(request)
    if request.method == "GET" and "hx-request" not in request.headers:
        return RedirectResponse(sign_in_url(target), status_code=303)
    message = "Your session has ended: sign in again."
    answer = page(request, "signin.html", None, 401, error=message, next=target)
    answer.headers["HX-Redirect"] = sign_in_url(target)
    return answer


async def _cross_site(request: Request, exc: Exception) -> HTMLResponse:
    session = await run_in_threadpool(current_session, request)
    back = return_path(page_of(request.url.path)) if isinstance(exc, StaleForm) else None
    return page(request, "refused.html", session, 403, error=str(exc), back=back)


__all__ = ["mount", "sign_in_link"]
