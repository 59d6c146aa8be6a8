"""Parties: the admin creates owners, integrators and merchants; integrators add their CAs."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import owners, service
from gateway.currencies import is_active_currency
from gateway.errors import Invalid
from gateway.http.deps import Admin, Ctx, Integrator, Owner
from gateway.http.public import AttestationCaCreated, FreezePublic, OwnerPublic, PartyCreated
from gateway.http.schemas import AttestationCaCreate, IntegratorCreate, MerchantCreate, OwnerCreate
from gateway.parties import is_timezone

router = APIRouter(tags=["parties"])


@router.post("/v1/owners", status_code=201)
def create_owner(body: OwnerCreate, ctx: Ctx, _: Admin) -> PartyCreated:
    """Create an owner (admin)."""
    if not is_timezone(body.timezone):
        raise Invalid(
            "timezone must be an IANA name such as Europe/Berlin", reason="invalid_timezone"
        )
    return _created(service.create_party(ctx, "owner", body.model_dump()))


@router.get("/v1/owners/me")
def get_owner(ctx: Ctx, caller: Owner) -> OwnerPublic:
    """The calling owner: name, timezone, and whether their payments are frozen."""
    return OwnerPublic.model_validate(owners.owner_profile(ctx, caller))


@router.post("/v1/owners/me/freeze")
def freeze(ctx: Ctx, caller: Owner) -> FreezePublic:
    """Stop every pay and hold of the owner's devices (`owner_frozen`) until unfrozen."""
    return FreezePublic.model_validate(owners.set_frozen(ctx, caller, True))


@router.post("/v1/owners/me/unfreeze")
def unfreeze(ctx: Ctx, caller: Owner) -> FreezePublic:
    """Let the owner's devices pay again (pending approvals can then be approved)."""
    return FreezePublic.model_validate(owners.set_frozen(ctx, caller, False))


@router.post("/v1/integrators", status_code=201)
def create_integrator(body: IntegratorCreate, ctx: Ctx, _: Admin) -> PartyCreated:
    """Create an integrator (admin)."""
    return _created(service.create_party(ctx, "integrator", body.model_dump()))


@router.post("/v1/merchants", status_code=201)
def create_merchant(body: MerchantCreate, ctx: Ctx, _: Admin) -> PartyCreated:
    """Create a merchant (admin)."""
    check_currency(body.currency)
    return _created(service.create_party(ctx, "merchant", body.model_dump()))


@router.post("/v1/integrators/me/attestation-cas", status_code=201)
def add_attestation_ca(
    body: AttestationCaCreate, ctx: Ctx, caller: Integrator
) -> AttestationCaCreated:
    """Trust a manufacturer CA for attested registrations (integrator)."""
    return AttestationCaCreated(id=service.add_attestation_ca(ctx, caller, body.certificate))


def check_currency(code: str) -> None:
    """An active ISO 4217 currency, else 422 `currency_not_allowed` (new wallets)."""
    if not is_active_currency(code):
        raise Invalid(f"{code} is not an active ISO 4217 currency", reason="currency_not_allowed")


def _created(pair: tuple[str, str]) -> PartyCreated:
    return PartyCreated(id=pair[0], api_key=pair[1])
