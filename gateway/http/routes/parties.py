"""Parties: the admin creates owners, integrators and merchants; integrators add their CAs."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import service
from gateway.errors import Invalid
from gateway.http.deps import Admin, Ctx, Integrator
from gateway.http.public import AttestationCaCreated, PartyCreated
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


@router.post("/v1/integrators", status_code=201)
def create_integrator(body: IntegratorCreate, ctx: Ctx, _: Admin) -> PartyCreated:
    """Create an integrator (admin)."""
    return _created(service.create_party(ctx, "integrator", body.model_dump()))


@router.post("/v1/merchants", status_code=201)
def create_merchant(body: MerchantCreate, ctx: Ctx, _: Admin) -> PartyCreated:
    """Create a merchant (admin)."""
    return _created(service.create_party(ctx, "merchant", body.model_dump()))


@router.post("/v1/integrators/me/attestation-cas", status_code=201)
def add_attestation_ca(
    body: AttestationCaCreate, ctx: Ctx, caller: Integrator
) -> AttestationCaCreated:
    """Trust a manufacturer CA for attested registrations (integrator)."""
    return AttestationCaCreated(id=service.add_attestation_ca(ctx, caller, body.certificate))


def _created(pair: tuple[str, str]) -> PartyCreated:
    return PartyCreated(id=pair[0], api_key=pair[1])
