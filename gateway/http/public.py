"""What the HTTP API answers, named by direction (`...Public`, `...Created`).

Fields the contract names are declared and documented; `extra="allow"` lets a use case add a
field (an extension the contract welcomes) without this layer silently dropping it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway.http.schemas import RulesIn


class Public(BaseModel):
    model_config = ConfigDict(extra="allow")


class PartyCreated(Public):
    """A new party and its first API key, shown only here."""

    id: str
    api_key: str


class AttestationCaCreated(Public):
    id: str


class DeviceRegistered(Public):
    id: str
    status: Literal["pending", "active", "suspended", "revoked"]
    attested: bool
    certificate: str
    ca_chain: str


class DevicePublic(Public):
    id: str
    status: Literal["pending", "active", "suspended", "revoked"]
    kind: str
    owner_id: str
    integrator_id: str
    attested: bool
    certificate_serial: str
    manufacturer: str
    model: str
    serial_number: str
    currency: str
    category: str | None
    created_at: str


class DevicePage(Public):
    items: list[DevicePublic]
    next_cursor: str | None


class CertificateIssued(Public):
    certificate: str
    ca_chain: str
    certificate_serial: str


class BalancePublic(Public):
    """A device wallet after a top-up."""

    balance: int
    available: int


class WalletPublic(Public):
    currency: str
    balance: int
    available: int


class MerchantWalletPublic(Public):
    currency: str
    balance: int


class PaymentPublic(Public):
    payment_id: str
    order_id: str | None
    type: Literal["pay", "hold"]
    status: Literal["completed", "held", "captured", "voided", "expired"]
    amount: int
    captured_amount: int
    refunded_amount: int
    payee: str
    payer: str
    currency: str
    created_at: str
    expires_at: str | None


class PaymentList(Public):
    items: list[PaymentPublic]
    next_cursor: str | None


class RulesPublic(RulesIn):
    """The device's rules as stored (`{}`: none)."""


class MandateCreated(Public):
    id: str
    status: Literal["active"]


class MandatePublic(Public):
    id: str
    status: Literal["active", "revoked", "expired"]


class MandateLimitUsed(Public):
    period: Literal["day", "week", "month", "year"]
    amount: int
    used: int
    remaining: int


class MandateItem(MandatePublic):
    payee: str | None
    category: str | None
    max_amount: int
    limits: list[MandateLimitUsed]
    valid_from: str | None
    valid_until: str | None


class MandatePage(Public):
    items: list[MandateItem]
    next_cursor: str | None


class OfferOption(Public):
    """One allowed count of an instalment offer; the last instalment takes the remainder."""

    count: int
    instalment_amount: int
    fee: int
    total: int
    first_due: str


class OfferPublic(Public):
    """An instalment offer (section 8): the credit line, its terms, the options it covers."""

    source: str
    apr_bps: int
    interval_days: int
    options: list[OfferOption]


class ApprovalPublic(Public):
    """An order waiting for (or decided by) its owner: what, to whom, why and until when."""

    id: str
    device_id: str
    order_id: str
    kind: Literal["pay", "hold"]
    amount: int
    currency: str
    payee: str
    payee_name: str
    category: str  # the payee's; `other` for a device payee that declared none
    description: str | None
    why: Literal["approval_above", "no_rules", "instalment_offer"]
    status: Literal["pending", "approved", "declined", "expired"]
    expires_at: str
    created_at: str
    offer: OfferPublic | None = None  # only when `why` is instalment_offer


class ApprovalList(Public):
    items: list[ApprovalPublic]
    next_cursor: str | None


class DecisionResult(Public):
    status: str
    reason: str | None


class ApprovalDecided(ApprovalPublic):
    result: DecisionResult


class AuditEntryPublic(Public):
    seq: int
    at: str
    actor: str
    action: str
    data: Any
    hash: str


class AuditList(Public):
    items: list[AuditEntryPublic]
    next_cursor: str | None


class LimitSpent(Public):
    period: Literal["day", "week", "month", "year"]
    amount: int
    spent: int
    remaining: int  # never below 0
    resets_at: str  # the start of the next period, in the owner's timezone


class CountUsed(Public):
    period: Literal["day", "week", "month", "year"]
    count: int
    used: int
    remaining: int
    resets_at: str


class SpendingPublic(Public):
    """A device's limits in their current periods (`[]` without rules)."""

    currency: str
    limits: list[LimitSpent]
    max_payments: list[CountUsed]


class OwnerPublic(Public):
    id: str
    name: str
    timezone: str
    frozen: bool


class FreezePublic(Public):
    frozen: bool


class KeyCreated(Public):
    """A new API key for the caller's own party, shown only here."""

    id: str
    api_key: str


class KeyPublic(Public):
    id: str
    prefix: str | None
    created_at: str
    last_used_at: str | None


class KeyPage(Public):
    items: list[KeyPublic]
    next_cursor: str | None


class Health(Public):
    status: str


class ConsistencyProof(Public):
    proof: list[str]  # lowercase hex hashes, RFC 9162 section 2.1.4
