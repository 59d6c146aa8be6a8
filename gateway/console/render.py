"""Rendering console pages: Jinja2 templates shipped in the package, with money and time filters.

Templates autoescape everything; amounts go through `money` so that every page shows them the
same way. A page for a signed-in owner gets the session's CSRF token for its forms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from starlette.responses import HTMLResponse

from gateway.console import views
from gateway.console.money import (
    AmountRefused,
    decimals,
    example,
    format_amount,
    format_time,
    major_units,
    parse_amount,
)
from gateway.console.sessions import Session
from gateway.currencies import ACTIVE

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["money"] = lambda amount, currency: format_amount(amount, currency)
templates.env.filters["when"] = pass_context(lambda context, at: format_time(at, context.get("tz")))
templates.env.filters["major"] = lambda amount, currency: major_units(amount, currency)
templates.env.filters["typed_money"] = lambda text, currency: typed_money(str(text), currency)
templates.env.filters["example"] = lambda currency: example(currency)
templates.env.filters["decimals"] = lambda currency: decimals(currency)
# For the script that keeps a form's amount hints in the currency chosen in it: each active
# currency whose minor unit is not the usual 2 digits (JPY 0, KWD 3), as `money.decimals` has it.
templates.env.globals["currency_decimals"] = json.dumps(
    {code: decimals(code) for code in sorted(ACTIVE) if decimals(code) != 2},
    separators=(",", ":"),
)


def typed_money(text: str, currency: str) -> str:
    """An amount typed in a form as the console writes it (`12.5` EUR: `€12.50`), or ""."""
    try:
        return format_amount(parse_amount(text, currency), currency) if text.strip() else ""
    except AmountRefused:
        return ""


# The console's pages load nothing but their own files, run no inline script, cannot be framed
# (an approve button under someone else's page), and are not cached (they show balances).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NAV = [
    ("approvals", "/console", "Approvals"),
    ("devices", "/console/devices", "Devices"),
    ("wallets", "/console/wallets", "Wallets"),
    ("funding", "/console/funding", "Funding"),
    ("plans", "/console/instalment-plans", "Instalments"),
    ("payments", "/console/payments", "Payments"),
    ("disputes", "/console/disputes", "Disputes"),
    ("notifications", "/console/notifications", "Activity"),
    ("audit", "/console/audit", "Audit trail"),
    ("freeze", "/console/freeze", "Freeze"),
]


def page(
    request: Request,
    template: str,
    session: Session | None,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """A rendered template; `values` fill it, `session` gives its owner and CSRF token."""
    profile = views.owner_profile(request.app.state.ctx, session.owner) if session else {}
    context = {
        "nav": NAV,
        "frozen": profile.get("frozen", False),
        "tz": profile.get("timezone"),
        "owner_name": profile.get("name"),
        "owner_id": session.owner.id if session else None,
        "csrf_token": session.csrf_token if session else "",
        **values,
    }
    answer = templates.TemplateResponse(request, template, context, status_code=status_code)
    answer.headers.update(SECURITY_HEADERS)
    return answer
