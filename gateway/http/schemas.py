"""What the HTTP API reads and answers, named by direction: `...Create`/`...In` come in,
`...Public` goes out. Every body is validated here, at the boundary; nothing inside trusts JSON.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from devices.registry import CATEGORIES, KINDS
from gateway.consent.periods import Period
from gateway.consent.rules import Category, Rules, Weekday, rules_from_json

MAX_MINOR = 2**53 - 1  # the largest integer every JSON client reads exactly

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Pem = Annotated[str, StringConstraints(min_length=1, max_length=64_000)]
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Amount = Annotated[int, Field(strict=True, ge=1, le=MAX_MINOR)]
Clock = Annotated[str, StringConstraints(pattern=r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
Kind = Literal[tuple(sorted(KINDS))]  # type: ignore[valid-type]
CategoryName = Literal[tuple(sorted(CATEGORIES))]  # type: ignore[valid-type]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class StrictBody(BaseModel):
    """A body in which an unknown field is an error (rules, mandates)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OwnerCreate(Body):
    name: Name
    timezone: str


class IntegratorCreate(Body):
    name: Name


class MerchantCreate(Body):
    name: Name
    category: CategoryName
    currency: Currency = "EUR"


class AttestationCaCreate(Body):
    certificate: Pem


class DeviceCreate(Body):
    owner_id: Id
    kind: Kind
    manufacturer: Name
    model: Name
    serial_number: Name
    csr: Pem
    currency: Currency = "EUR"
    category: CategoryName | None = None
    attestation: Pem | None = None


class CertificateCreate(Body):
    csr: Pem


class TopUpCreate(Body):
    amount: Annotated[int, Field(ge=1, le=10**12)]
    currency: Currency
    idempotency_key: Id


class CaptureCreate(Body):
    amount: Annotated[int, Field(ge=1, le=10**12)]
    idempotency_key: Id


class VoidCreate(Body):
    idempotency_key: Id


class LimitIn(StrictBody):
    period: Period
    amount: Amount


class CountLimitIn(StrictBody):
    period: Period
    count: Amount


class WindowIn(StrictBody):
    days: list[Weekday] = Field(min_length=1)
    from_: Clock = Field(alias="from")
    to: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> WindowIn:
        if self.from_ == self.to:
            raise ValueError("a window's `from` and `to` must differ")
        return self


class ActiveHoursIn(StrictBody):
    windows: list[WindowIn]


class RulesIn(StrictBody):
    """The body of PUT /v1/devices/{id}/rules (and its answer)."""

    currency: Currency | None = None
    max_amount: Amount | None = None
    limits: list[LimitIn] | None = None
    max_payments: list[CountLimitIn] | None = None
    allowed_categories: list[Category] | None = None
    blocked_categories: list[Category] | None = None
    allowed_payees: list[Id] | None = None
    blocked_payees: list[Id] | None = None
    approval_above: Amount | None = None
    approval_ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=86400)] | None = None
    active_hours: ActiveHoursIn | None = None

    def to_rules(self) -> Rules | None:
        """The rules, or `None` when the body sets nothing (`{}`): the device has no rules."""
        return rules_from_json(self.model_dump(by_alias=True, exclude_none=True))


class MandateLimitIn(StrictBody):
    period: Period
    amount: Annotated[int, Field(ge=1, le=10**12)]


class MandateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payee: Id | None = None
    category: CategoryName | None = None
    max_amount: Annotated[int, Field(strict=True, ge=1, le=10**12)]
    limits: list[MandateLimitIn] | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class DecisionCreate(Body):
    decision: Literal["approve", "decline"]
