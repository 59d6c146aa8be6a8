"""The certificates a device needs to trust the broker and the gateway, and the CRL; no key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.http.deps import Ctx

router = APIRouter(tags=["ca"])


class PemResponse(Response):
    media_type = "application/x-pem-file"


def _pem_doc(what: str) -> dict[int | str, dict[str, Any]]:
    content = {PemResponse.media_type: {"schema": {"type": "string", "format": "pem"}}}
    return {200: {"description": what, "content": content}}


@router.get("/v1/ca", response_class=PemResponse, responses=_pem_doc("A PEM bundle"))
def ca_bundle(ctx: Ctx) -> PemResponse:
    """The CA certificates behind devices, the broker and the gateway's signatures."""
    return PemResponse(ctx.pki.paths.bundle.read_text())


@router.get("/v1/ca/gateway", response_class=PemResponse, responses=_pem_doc("A certificate"))
def gateway_certificate(ctx: Ctx) -> PemResponse:
    """The gateway's result-signing certificate."""
    return PemResponse(ctx.pki.paths.signer_cert.read_text())


@router.get("/v1/ca/crl", response_class=PemResponse, responses=_pem_doc("A PEM CRL"))
def crl(ctx: Ctx) -> PemResponse:
    """The device CRL."""
    return PemResponse(ctx.pki.paths.crl.read_text())
