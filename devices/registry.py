"""The device registry's rules: lifecycle states and which certificates are valid. Pure."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from devices.contract import CATEGORIES as CATEGORIES  # defined once, with the contract
from devices.errors import KeyInUse

KINDS = frozenset(
    {"car", "fridge", "fuel_pump", "ev_charger", "parking_meter", "smart_meter", "other"}
)
MAX_VALID_CERTIFICATES = 2


class Status(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


# action -> (states it may start from, state it leads to); revoke is final and from anywhere.
TRANSITIONS: dict[str, tuple[frozenset[Status], Status]] = {
    "approve": (frozenset({Status.PENDING}), Status.ACTIVE),
    "suspend": (frozenset({Status.ACTIVE}), Status.SUSPENDED),
    "resume": (frozenset({Status.SUSPENDED}), Status.ACTIVE),
    "revoke": (frozenset(Status), Status.REVOKED),
}


class InvalidTransition(Exception):
    """The device's state does not allow that change."""

    reason = "invalid_state"


@dataclass(frozen=True)
class Device:
    id: str
    owner_id: str
    integrator_id: str
    kind: str
    manufacturer: str
    model: str
    serial_number: str
    currency: str
    category: str | None
    status: Status
    attested: bool
    created_at: datetime


@dataclass(frozen=True)
class DeviceCertificate:
    serial: str  # lowercase hex
    device_id: str
    certificate_pem: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    first_used_at: datetime | None
    revoked_at: datetime | None


def new_device_id() -> str:
    """An opaque, unguessable device id (never collides with service names like kym-gateway-0)."""
    return f"dev_{secrets.token_hex(8)}"


def transition(current: Status, action: str) -> Status:
    """The state after `action`; asking for the current state is allowed and changes nothing."""
    allowed_from, target = TRANSITIONS[action]
    if current == target:
        return current
    if current not in allowed_from:
        raise InvalidTransition(f"cannot {action} a device that is {current.value}")
    return target


def claim_key(holder: str | None, device_id: str) -> bool:
    """Whether the key must now be bound to `device_id` (nobody holds it yet); the key of another
    device, revoked or rotated away from, is never this one's (`KeyInUse`)."""
    if holder is not None and holder != device_id:
        raise KeyInUse("this public key is another device's identity: make a new key")
    return holder is None


def valid_at(cert: DeviceCertificate, ts: int) -> bool:
    """Whether an order stamped `ts` (Unix seconds) falls within the certificate's validity and
    before any revocation of it: a bundle's verifier checks the certificate at the order's `ts`."""
    revoked = cert.revoked_at is not None and ts >= cert.revoked_at.timestamp()
    return cert.not_before.timestamp() <= ts < cert.not_after.timestamp() and not revoked


def valid_certificates(
    certs: list[DeviceCertificate], now: datetime, grace: timedelta
) -> list[DeviceCertificate]:
    """The certificates a device may sign with now: newest first, at most two.

    After a rotation the older certificate stays valid until the newer one has been used or the
    grace period since the newer one's issue has passed; inactive is not revoked.
    """
    live = _newest_within_dates([c for c in certs if c.revoked_at is None], now)
    if len(live) < 2:
        return live
    newest = live[0]
    if newest.first_used_at is not None or now >= newest.issued_at + grace:
        return live[:1]
    return live


def signing_certificates(
    certs: list[DeviceCertificate], now: datetime, grace: timedelta
) -> list[DeviceCertificate]:
    """The certificates that verify a device's orders now: its valid ones; a revoked device has
    none, so those its revocation withdrew (`certs` holds no other revoked ones), newest first
    within their dates. They prove whose order it is only for it to be declined as
    `device_not_active` (section 5, step 2): a revoked device is never paid."""
    return valid_certificates(certs, now, grace) or _newest_within_dates(certs, now)


def _newest_within_dates(certs: list[DeviceCertificate], now: datetime) -> list[DeviceCertificate]:
    """Those of `certs` within their dates now, newest first, at most two."""
    within = (c for c in certs if c.not_before <= now < c.not_after)
    return sorted(within, key=lambda c: c.issued_at, reverse=True)[:MAX_VALID_CERTIFICATES]
