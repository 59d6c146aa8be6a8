"""What the HTTP API reads, named by direction (`...Create`, `...In`); `public.py` has what it
answers. Every body is validated here, at the boundary, and nothing inside trusts JSON.

Limits for every body (contract section 10): strings hold at most 1,000 characters (PEM fields
64 KiB) and no NUL character (PostgreSQL cannot store one), lists at most 1,000 entries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from devices.contract import Category
from devices.registry import KINDS
from gateway.consent.periods import Period
from gateway.consent.rules import Rules, Weekday, rules_from_json

MAX_MINOR = 2**53 - 1  # the largest integer every JSON client reads exactly

MAX_TEXT = 1000
MAX_ITEMS = 1000
MAX_PEM = 64 * 1024

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# A currency that money is created or moved in: any text, so that one that is not an active
# ISO 4217 code (`eur`, `EURO`, `XXX`) gets the contract's 422 `currency_not_allowed` from the
# use case, which compares it with the active codes or the wallet's, not a schema error.
CurrencyCode = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Pem = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PEM)]
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Amount = Annotated[int, Field(strict=True, ge=1, le=MAX_MINOR)]
Clock = Annotated[str, StringConstraints(pattern=r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
Items = Field(max_length=MAX_ITEMS)
# Paging (contract section 7): a page of 1 to 200 items, and the cursor a previous page gave.
PageLimit = Annotated[int, Query(ge=1, le=200, description="1 to 200 items (default 200)")]
PaymentStatus = Literal["completed", "held", "captured", "voided", "expired"]
PageCursor = Annotated[
    str | None, Query(max_length=MAX_TEXT, description="`next_cursor` of the previous page")
]
SupportEmail = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=MAX_TEXT)]
SupportUrl = Annotated[
    str, StringConstraints(pattern=r"^https://[^\s/?#]+\S*$", max_length=MAX_TEXT)
]
Kind = Literal[tuple(sorted(KINDS))]  # type: ignore[valid-type]


def text_fault(value: Any) -> str | None:
    """What is wrong with the text of a parsed JSON value (keys included), if anything: a NUL
    character (PostgreSQL cannot store one) or a lone surrogate (not Unicode, so not UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            return "text must not contain NUL characters"
        return None if value.isascii() or _is_unicode(value) else "text must be valid Unicode"
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next((fault for item in items if (fault := text_fault(item))), None)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Input(BaseModel):
    """Every body: the contract's limits on strings, and no NUL or lone surrogate in it."""

    model_config = ConfigDict(strict=True, str_max_length=MAX_TEXT)

    @model_validator(mode="before")
    @classmethod
    def _refuse_bad_text(cls, data: Any) -> Any:
        fault = text_fault(data)
        if fault is not None:
            raise ValueError(fault)
        return data


class Body(Input):
    model_config = ConfigDict(extra="ignore")


class StrictBody(Input):
    """A body in which an unknown field is an error (rules, mandates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OwnerCreate(Body):
    name: Name
    timezone: str


class Disclosed(Body):
    """Whom to contact (contract section 9): `legal_name` is `name` when absent."""

    legal_name: Name | None = None
    support_email: SupportEmail | None = None
    support_url: SupportUrl | None = None

    @model_validator(mode="after")
    def _legal_name_defaults_to_name(self) -> Disclosed:
        if self.legal_name is None:
            self.legal_name = getattr(self, "name", None)
        return self


class IntegratorCreate(Disclosed):
    name: Name


class MerchantCreate(Disclosed):
    name: Name
    category: Category
    currency: CurrencyCode = "EUR"


class AttestationCaCreate(Body):
    certificate: Pem


class DeviceCreate(Body):
    owner_id: Id
    kind: Kind  # type: ignore[valid-type]
    manufacturer: Name
    model: Name
    serial_number: Name
    csr: Pem
    currency: CurrencyCode = "EUR"
    category: Category | None = None
    attestation: Pem | None = None


class CertificateCreate(Body):
    csr: Pem
    attestation: Pem | None = None  # for the new key; without it the device is no longer attested


class TopUpCreate(Body):
    amount: Annotated[int, Field(ge=1, le=10**12)]
    currency: CurrencyCode
    idempotency_key: Id


class FundingSourceCreate(StrictBody):
    """POST /v1/owners/me/funding-sources: the fields of the other kind are refused."""

    name: Name
    kind: Literal["balance", "credit_line"]
    currency: CurrencyCode
    priority: Annotated[int, Field(strict=True, ge=-(10**9), le=10**9)] | None = None
    floor: Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR)] | None = None
    credit_limit: Amount | None = None
    apr_bps: Annotated[int, Field(strict=True, ge=0, le=10000)] | None = None

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> FundingSourceCreate:
        line, given = self.kind == "credit_line", self.model_fields_set
        if line and "floor" in given:
            raise ValueError("`floor` applies to balance sources only")
        if not line and given & {"credit_limit", "apr_bps"}:
            raise ValueError("`credit_limit` and `apr_bps` apply to credit lines only")
        if line and self.credit_limit is None:
            raise ValueError("a credit line needs `credit_limit`")
        return self


class InstalmentPolicyIn(StrictBody):
    """PUT /v1/owners/me/instalment-policy (section 8)."""

    source: Id
    min_amount: Amount
    max_amount: Amount
    counts: Annotated[
        list[Annotated[int, Field(strict=True, ge=2, le=24)]], Field(min_length=1, max_length=23)
    ]
    interval_days: Annotated[int, Field(strict=True, ge=7, le=92)]
    keep_at_least: Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR)] = 0
    categories: Annotated[list[Category], Items] | None = None
    auto_accept_up_to: Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR)] = 0

    @model_validator(mode="after")
    def _consistent(self) -> InstalmentPolicyIn:
        if self.min_amount > self.max_amount:
            raise ValueError("`min_amount` must not be above `max_amount`")
        if len(set(self.counts)) != len(self.counts):
            raise ValueError("`counts` must be distinct")
        return self


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
    days: list[Weekday] = Field(min_length=1, max_length=7)
    from_: Clock = Field(alias="from")
    to: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> WindowIn:
        if self.from_ == self.to:
            raise ValueError("a window's `from` and `to` must differ")
        return self


class ActiveHoursIn(StrictBody):
    windows: list[WindowIn] = Field(max_length=MAX_ITEMS)


class AutoTopUpIn(StrictBody):
    below: Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR)]
    to: Annotated[int, Field(strict=True, ge=1, le=MAX_MINOR)]

    @model_validator(mode="after")
    def _to_above_below(self) -> AutoTopUpIn:
        if self.to <= self.below:
            raise ValueError("`to` must be greater than `below`")
        return self


class RulesIn(StrictBody):
    """The body of PUT /v1/devices/{id}/rules (and its answer)."""

    currency: Currency | None = None
    max_amount: Amount | None = None
    limits: Annotated[list[LimitIn], Items] | None = None
    max_payments: Annotated[list[CountLimitIn], Items] | None = None
    allowed_categories: Annotated[list[Category], Items] | None = None
    blocked_categories: Annotated[list[Category], Items] | None = None
    allowed_payees: Annotated[list[Id], Items] | None = None
    blocked_payees: Annotated[list[Id], Items] | None = None
    approval_above: Amount | None = None
    approval_ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=86400)] | None = None
    active_hours: ActiveHoursIn | None = None
    low_balance_alert: Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR)] | None = None
    auto_top_up: AutoTopUpIn | None = None

    def to_rules(self) -> Rules | None:
        """The rules, or `None` when the body sets nothing (`{}`): the device has no rules."""
        return rules_from_json(self.model_dump(by_alias=True, exclude_none=True))


class MandateLimitIn(StrictBody):
    period: Period
    amount: Annotated[int, Field(ge=1, le=10**12)]


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)


def _storable(value: datetime) -> datetime:
    """An instant both databases store and read back: 1970 to 9998 in UTC (PostgreSQL took
    year 1 at +14:00, stored 1 BC, then refused every read of the device's mandates, and
    with it every batch of its orders; SQLite overflowed converting it)."""
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError("must be between 1970-01-01 and 9998-12-31 (UTC)")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_storable)]


class MandateCreate(Input):
    model_config = ConfigDict(extra="forbid", strict=False)  # RFC 3339 strings become datetimes
    payee: Id | None = None
    category: Category | None = None
    max_amount: Annotated[int, Field(strict=True, ge=1, le=10**12)]
    limits: Annotated[list[MandateLimitIn], Items] | None = None
    valid_from: Instant | None = None
    valid_until: Instant | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> MandateCreate:
        if self.valid_from and self.valid_until and self.valid_from > self.valid_until:
            raise ValueError("valid_from must not be after valid_until")
        return self


class DecisionCreate(Body):
    decision: Literal["approve", "decline"]
    # approve by instalments (section 8): one of the counts the approval's offer shows
    instalments: Annotated[int, Field(strict=True, ge=1, le=MAX_MINOR)] | None = None
