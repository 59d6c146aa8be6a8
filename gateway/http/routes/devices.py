"""Devices: registration from a CSR, their life (approve, suspend, resume, revoke), rotation."""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter

from devices.registry import Device, DeviceCertificate
from gateway import fleet, service
from gateway.context import Context
from gateway.http.deps import Caller, Ctx, Integrator, OwnerOrIntegrator
from gateway.http.public import CertificateIssued, DevicePage, DevicePublic, DeviceRegistered
from gateway.http.resources import IntegratedDevice
from gateway.http.routes.parties import check_currency
from gateway.http.schemas import CertificateCreate, DeviceCreate, PageCursor, PageLimit

router = APIRouter(tags=["devices"])
DeviceStatus = Literal["pending", "active", "suspended", "revoked"]


@router.post("/v1/devices", status_code=201)
def register_device(body: DeviceCreate, ctx: Ctx, caller: Integrator) -> DeviceRegistered:
    """Register a device from its CSR (integrator)."""
    check_currency(body.currency)
    registration = service.Registration(
        owner_id=body.owner_id,
        kind=body.kind,
        manufacturer=body.manufacturer,
        model=body.model,
        serial_number=body.serial_number,
        csr_pem=body.csr,
        currency=body.currency,
        category=body.category,
        attestation_pem=body.attestation,
    )
    device, certificate = service.register_device(ctx, caller, registration)
    return DeviceRegistered(
        id=device.id,
        status=device.status.value,
        attested=device.attested,
        certificate=_pem(certificate),
        ca_chain=_ca_chain(ctx),
    )


@router.get("/v1/devices")
def list_devices(
    ctx: Ctx,
    caller: OwnerOrIntegrator,
    status: DeviceStatus | None = None,
    limit: PageLimit = 200,
    cursor: PageCursor = None,
) -> DevicePage:
    """The owner's devices, or those the integrator registered, newest first."""
    page = fleet.devices_page(ctx, caller, status, limit, cursor)
    items = [device_public(*pair) for pair in page.items]
    return DevicePage(items=items, next_cursor=page.next_cursor)


@router.get("/v1/devices/{device_id}")
def get_device(device_id: str, ctx: Ctx, caller: OwnerOrIntegrator) -> DevicePublic:
    """A device as its owner or integrator sees it."""
    return device_public(*service.get_device(ctx, caller, device_id))


@router.post("/v1/devices/{device_id}/approve")
def approve_device(device_id: str, ctx: Ctx, caller: Caller) -> DevicePublic:
    """Consent to the device acting for its owner: pending → active (owner)."""
    return _change(ctx, caller, device_id, "approve")


@router.post("/v1/devices/{device_id}/suspend")
def suspend_device(device_id: str, ctx: Ctx, caller: Caller) -> DevicePublic:
    """Stop the device's payments for now: active → suspended (owner)."""
    return _change(ctx, caller, device_id, "suspend")


@router.post("/v1/devices/{device_id}/resume")
def resume_device(device_id: str, ctx: Ctx, caller: Caller) -> DevicePublic:
    """Let a suspended device pay again: suspended → active (owner)."""
    return _change(ctx, caller, device_id, "resume")


@router.post("/v1/devices/{device_id}/revoke")
def revoke_device(device_id: str, ctx: Ctx, caller: Caller) -> DevicePublic:
    """Revoke the device and its certificates, for good (owner or integrator)."""
    return _change(ctx, caller, device_id, "revoke")


@router.post("/v1/devices/{device_id}/certificates", status_code=201)
def rotate_certificate(
    device_id: IntegratedDevice, body: CertificateCreate, ctx: Ctx, caller: Integrator
) -> CertificateIssued:
    """Issue a further certificate from a new CSR (integrator); with `attestation` for the
    new key the device stays attested, without it it is not any more."""
    certificate = service.rotate_certificate(ctx, caller, device_id, body.csr, body.attestation)
    return CertificateIssued(
        certificate=_pem(certificate),
        ca_chain=_ca_chain(ctx),
        certificate_serial=format(certificate.serial_number, "x"),
    )


def device_public(device: Device, certificate: DeviceCertificate) -> DevicePublic:
    """A device as `GET /v1/devices/{id}` shows it."""
    return DevicePublic(
        id=device.id,
        status=device.status.value,
        kind=device.kind,
        owner_id=device.owner_id,
        integrator_id=device.integrator_id,
        attested=device.attested,
        certificate_serial=certificate.serial,
        manufacturer=device.manufacturer,
        model=device.model,
        serial_number=device.serial_number,
        currency=device.currency,
        category=device.category,
        created_at=device.created_at.isoformat(),
    )


def _change(ctx: Context, caller: Caller, device_id: str, action: str) -> DevicePublic:
    service.change_device_status(ctx, caller, device_id, action)
    return device_public(*service.get_device(ctx, caller, device_id))


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _ca_chain(ctx: Context) -> str:
    return ctx.pki.paths.device_cafile.read_text()
