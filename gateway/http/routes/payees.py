"""Disclosure (contract section 9): whom a payment goes to and whom to contact (any party)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from gateway import payees
from gateway.errors import NotFound
from gateway.http.deps import Caller, Ctx

router = APIRouter(tags=["recourse"])


class SupportPublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    email: str | None
    url: str | None


class PayeePublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    name: str
    legal_name: str
    category: str
    support: SupportPublic


@router.get("/v1/payees/{payee_id}")
def get_payee(payee_id: str, ctx: Ctx, _: Caller) -> PayeePublic:
    """A payee's name, legal name, category and support contact (any party)."""
    with ctx.db.read() as conn:
        found = payees.disclosures(conn, [payee_id]).get(payee_id)
    if found is None:
        raise NotFound("no such payee")
    return PayeePublic(**found)
