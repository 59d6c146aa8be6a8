"""Use cases of parties and devices: creating parties, registering devices and changing their
status, rotating certificates, the CRL, and the audit trail's views.

Each function runs one database transaction. Side effects outside the database (the CRL file,
the broker) happen after the commit. Orders are decided in `gateway.orders`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from devices import ca, keystore
from devices import store as device_store
from devices.attestation import check_attestation_ca, verify_attestation
from devices.crl import build_crl
from devices.registry import (
    Device,
    DeviceCertificate,
    Status,
    claim_key,
    new_device_id,
    transition,
)
from devices.wire import PublicKey
from gateway import store
from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.db import Database
from gateway.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.events import collect as events
from gateway.parties import ADMIN, Party, new_api_key, new_party_id
from wallet import store as wallet_store

log = logging.getLogger("kym.service")


# --- parties ---------------------------------------------------------------------------------


def create_party(ctx: Context, kind: str, values: dict[str, Any]) -> tuple[str, str]:
    """Create an owner, integrator or merchant; returns (id, api_key), the key shown only once."""
    party = Party(kind=kind, id=new_party_id(kind))
    api_key, now = new_api_key(), ctx.clock()

    def work(conn: Connection) -> None:
        store.insert_party(conn, kind, {"id": party.id, "created_at": now, **values})
        store.insert_api_key(conn, api_key, party, now)
        if kind == "merchant":
            wallet_store.open_wallet(conn, holder_id=party.id, currency=values["currency"], now=now)
        audit_store.append(
            conn, now, [(ADMIN.actor, f"{kind}.created", None, {"id": party.id, **values})]
        )

    ctx.db.run(work)
    return party.id, api_key


def add_attestation_ca(ctx: Context, integrator: Party, pem: str) -> str:
    """Trust a manufacturer CA for this integrator's attested registrations."""
    check_attestation_ca(pem.encode())
    ca_id, now = f"aca_{secrets.token_hex(8)}", ctx.clock()

    def work(conn: Connection) -> None:
        device_store.add_attestation_ca(conn, ca_id, integrator.id, pem, now)
        audit_store.append(
            conn, now, [(integrator.actor, "attestation_ca.added", None, {"id": ca_id})]
        )

    ctx.db.run(work)
    return ca_id


# --- devices ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    owner_id: str
    kind: str
    manufacturer: str
    model: str
    serial_number: str
    csr_pem: str
    currency: str = "EUR"
    category: str | None = None
    attestation_pem: str | None = None


def register_device(
    ctx: Context, integrator: Party, reg: Registration
) -> tuple[Device, x509.Certificate]:
    """Register a device from its CSR (and attestation), issuing its first certificate."""
    csr = ca.load_csr(reg.csr_pem.encode())
    now, key = ctx.clock(), _fingerprint(csr)
    attested = _check_attestation(ctx, integrator, reg.attestation_pem, csr, now)
    device = Device(
        id=new_device_id(),
        owner_id=reg.owner_id,
        integrator_id=integrator.id,
        kind=reg.kind,
        manufacturer=reg.manufacturer,
        model=reg.model,
        serial_number=reg.serial_number,
        currency=reg.currency,
        category=reg.category,
        status=Status.PENDING,
        attested=attested,
        created_at=now,
    )
    certificate = _issue(ctx, device.id, csr, now)

    def work(conn: Connection) -> None:
        if store.get_party_row(conn, "owner", reg.owner_id) is None:
            raise Invalid("owner_id names no owner", reason="unknown_owner")
        if device_store.serial_exists(conn, reg.manufacturer, reg.serial_number):
            raise Conflict(
                "a device with this manufacturer and serial number exists", reason="device_exists"
            )
        claim_key(device_store.key_holder(conn, key), device.id)
        device_store.insert_device(conn, device)
        device_store.bind_key(conn, key, device.id, now)
        device_store.insert_certificate(conn, _record(device.id, certificate, now))
        wallet_store.open_wallet(conn, holder_id=device.id, currency=device.currency, now=now)
        audit_store.append(
            conn,
            now,
            [
                (
                    integrator.actor,
                    "device.registered",
                    device.id,
                    {
                        "owner_id": device.owner_id,
                        "kind": device.kind,
                        "category": device.category,
                        "manufacturer": device.manufacturer,
                        "model": device.model,
                        "serial_number": device.serial_number,
                        "attested": attested,
                        "certificate_serial": _hex(certificate.serial_number),
                    },
                )
            ],
        )

    try:
        ctx.db.run(work)
    except IntegrityError as exc:  # two registrations of one serial or of one key racing
        with ctx.db.read() as conn:  # KeyInUse when the key is what the other one took
            claim_key(device_store.key_holder(conn, key), device.id)
        raise Conflict(
            "a device with this manufacturer and serial number exists", reason="device_exists"
        ) from exc
    if ctx.broker is not None:
        ctx.broker.allow_device(device.id)  # logs rather than raises when the broker is away
    return device, certificate


def visible_device(conn: Connection, party: Party, device_id: str, *, lock: bool = False) -> Device:
    """The device if this party may see it (its owner or its integrator), else NotFound;
    `lock`: its row locked, for a change that depends on its status."""
    device = device_store.get_device(conn, device_id, lock=lock)
    if device is None or party.id not in (device.owner_id, device.integrator_id):
        raise NotFound("no such device")
    return device


def owned_device_id(conn: Connection, owner: Party, device_id: str) -> str:
    """The device id if `owner` owns it, else NotFound (also for its integrator)."""
    device = visible_device(conn, owner, device_id)
    if device.owner_id != owner.id:
        raise NotFound("no such device")
    return device.id


def get_device(ctx: Context, party: Party, device_id: str) -> tuple[Device, DeviceCertificate]:
    """The device and its newest certificate, as its owner or integrator sees them."""
    with ctx.db.read() as conn:
        device = visible_device(conn, party, device_id)
        return device, device_store.list_certificates(conn, device_id)[-1]


OWNER_ACTIONS = {"approve", "suspend", "resume", "revoke"}
INTEGRATOR_ACTIONS = {"revoke"}


def change_device_status(ctx: Context, party: Party, device_id: str, action: str) -> Device:
    """Approve, suspend, resume or revoke a device; revocation also reaches the CRL and broker."""
    allowed = OWNER_ACTIONS if party.kind == "owner" else INTEGRATOR_ACTIONS
    if party.kind not in ("owner", "integrator") or action not in allowed:
        raise Forbidden(f"{party.described} may not {action} devices")
    now = ctx.clock()

    def work(conn: Connection) -> tuple[Device, bool]:
        # locked: a revoke and a resume at once must not both start from "suspended" (the
        # later write won, and a revoked device came back active)
        device = visible_device(conn, party, device_id, lock=True)
        if party.kind == "integrator" and party.id != device.integrator_id:
            raise NotFound("no such device")
        if party.kind == "owner" and party.id != device.owner_id:
            raise NotFound("no such device")
        target = transition(device.status, action)
        if target == device.status:
            return device, False
        device_store.set_status(conn, device_id, target, now)
        events.record_status_change(conn, device, target.value, now)
        if target == Status.REVOKED:
            device_store.revoke_certificates(conn, device_id, now)
        audit_store.append(
            conn,
            now,
            [
                (
                    party.actor,
                    f"device.{action}",
                    device_id,
                    {"from": device.status.value, "to": target.value},
                )
            ],
        )
        return replace(device, status=target), True

    device, changed = ctx.db.run(work)
    if changed and device.status == Status.REVOKED:
        publish_crl(ctx)
        _kick(ctx, device_id)
    return device


def rotate_certificate(
    ctx: Context,
    integrator: Party,
    device_id: str,
    csr_pem: str,
    attestation_pem: str | None = None,
) -> x509.Certificate:
    """Issue a further certificate from a new CSR; at most two stay valid (see registry). The
    device is `attested` from then on only if the new key is (`attestation_pem`, checked as at
    registration): an attested device's key replaced by one nobody vouched for is not."""
    if integrator.kind != "integrator":
        raise Forbidden("only the device's integrator may rotate its certificate")
    csr, now = ca.load_csr(csr_pem.encode()), ctx.clock()
    key = _fingerprint(csr)
    attested = _check_attestation(ctx, integrator, attestation_pem, csr, now)

    def work(conn: Connection) -> x509.Certificate:
        device = visible_device(conn, integrator, device_id, lock=True)  # not revoked meanwhile
        if device.integrator_id != integrator.id:
            raise NotFound("no such device")
        if device.status == Status.REVOKED:
            raise Conflict("the device is revoked", reason="invalid_state")
        if claim_key(device_store.key_holder(conn, key), device_id):  # a key new to the gateway
            device_store.bind_key(conn, key, device_id, now)
        certificate = _issue(ctx, device_id, csr, now)
        device_store.insert_certificate(conn, _record(device_id, certificate, now))
        if device.attested != attested:
            device_store.set_attested(conn, device_id, attested, now)
        audit_store.append(
            conn,
            now,
            [
                (
                    integrator.actor,
                    "device.certificate_issued",
                    device_id,
                    {"certificate_serial": _hex(certificate.serial_number), "attested": attested},
                )
            ],
        )
        return certificate

    try:
        return ctx.db.run(work)
    except IntegrityError:  # a registration or rotation to this key won the race: KeyInUse
        with ctx.db.read() as conn:
            claim_key(device_store.key_holder(conn, key), device_id)
        raise


def publish_crl(ctx: Context) -> x509.CertificateRevocationList:
    """Rewrite the device CRL (new number, next update in 7 days) and have the broker reload it;
    one publication at a time (`keystore.publishing_crl`), so the file only ever moves to a
    later number that lists every revocation committed before it."""
    now = ctx.clock()

    def work(conn: Connection) -> tuple[int, list[tuple[int, datetime]]]:
        return device_store.next_crl_number(conn, now), device_store.revoked_certificates(conn)

    with keystore.publishing_crl(ctx.pki):
        number, revoked = ctx.db.run(work)
        crl = build_crl(ctx.pki.device_issuing, revoked, number, now)
        keystore.write_crl(ctx.pki, crl)
        if ctx.broker is not None:
            try:
                ctx.broker.reload_crl()
            except Exception:  # noqa: BLE001 - the gateway refuses revoked devices regardless
                log.exception("the broker did not reload the CRL")
    return crl


def _kick(ctx: Context, device_id: str) -> None:
    if ctx.broker is None:
        return
    try:
        ctx.broker.forget_device(device_id)
    except Exception:  # noqa: BLE001 - the gateway refuses revoked devices regardless
        log.exception("could not end the broker session of %s", device_id)


def _check_attestation(
    ctx: Context,
    integrator: Party,
    attestation_pem: str | None,
    csr: x509.CertificateSigningRequest,
    now: datetime,
) -> bool:
    """Whether the CSR's key is attested: False without a chain, 422 for a chain that fails."""
    if attestation_pem is None:
        return False
    with ctx.db.read() as conn:
        pems = device_store.list_attestation_cas(conn, integrator.id)
    trusted = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
    verify_attestation(attestation_pem.encode(), trusted, csr.public_key(), now)  # type: ignore[arg-type]
    return True


def _fingerprint(csr: x509.CertificateSigningRequest) -> str:
    public_key = csr.public_key()
    assert isinstance(public_key, ca.DevicePublicKey), "load the CSR with load_csr first"
    return ca.key_fingerprint(public_key)


def _issue(
    ctx: Context, device_id: str, csr: x509.CertificateSigningRequest, now: datetime
) -> x509.Certificate:
    return ca.issue_device_certificate(
        ctx.pki.device_issuing,
        csr,
        device_id,
        ctx.settings.trust_domain,
        now,
        validity_days=ctx.settings.device_cert_days,
    )


def _record(device_id: str, certificate: x509.Certificate, now: datetime) -> DeviceCertificate:
    return DeviceCertificate(
        serial=_hex(certificate.serial_number),
        device_id=device_id,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issued_at=now,
        first_used_at=None,
        revoked_at=None,
    )


def _hex(serial: int) -> str:
    return format(serial, "x")


# --- audit -----------------------------------------------------------------------------------


def verify_audit(db: Database, signer: PublicKey) -> tuple[int, tuple[int, str] | None]:
    """(number of entries, the first bad entry and why, or None when the log is intact)."""
    from gateway.audit.service import verify_audit as verify_log

    return verify_log(db, signer)


def device_audit(ctx: Context, owner: Party, device_id: str) -> list[dict[str, Any]]:
    """The audit entries about one of the owner's devices, oldest first."""
    import json

    with ctx.db.read() as conn:
        device = visible_device(conn, owner, device_id)
        if device.owner_id != owner.id:
            raise NotFound("no such device")
        return [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "data": json.loads(e.data),
                "hash": e.hash,
            }
            for e in audit_store.iter_entries(conn, device_id=device_id)
        ]
