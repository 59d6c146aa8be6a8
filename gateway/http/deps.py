"""What routes depend on: the gateway's context and who is calling (`Caller`, `Owner`, ...).

The caller is checked before the body is validated, so that a refusal comes in the contract's
order: 401 (no or unknown key), then 403 (a kind of party that may never make the call).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway import keys
from gateway.context import Context
from gateway.errors import Forbidden, Unauthorized
from gateway.parties import ADMIN, Party

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="A party's API key (`POST /v1/keys`), or the admin token.",
)


def context(request: Request) -> Context:
    """The gateway's context, set once when the app is built."""
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


def caller(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Party:
    """The party the request's key acts for; a deleted key is unknown at once (no cache)."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("send Authorization: Bearer <api_key>")
    api_key = credentials.credentials
    admin_token = ctx.settings.admin_token or ""
    if admin_token and hmac.compare_digest(api_key.encode(), admin_token.encode()):
        return ADMIN
    party = keys.authenticate(ctx, api_key)
    if party is None:
        raise Unauthorized("unknown API key")
    return party


Caller = Annotated[Party, Depends(caller)]


def kind_of(*kinds: str) -> Callable[[Party], Party]:
    """A dependency admitting only these kinds of party (else 403)."""

    def admit(party: Caller) -> Party:
        if party.kind not in kinds:
            raise Forbidden(f"{party.described} may not make this call")
        return party

    return admit


Admin = Annotated[Party, Depends(kind_of("admin"))]
Owner = Annotated[Party, Depends(kind_of("owner"))]
Integrator = Annotated[Party, Depends(kind_of("integrator"))]
Merchant = Annotated[Party, Depends(kind_of("merchant"))]
OwnerOrIntegrator = Annotated[Party, Depends(kind_of("owner", "integrator"))]
KeyHolder = Annotated[Party, Depends(kind_of("owner", "integrator", "merchant"))]
