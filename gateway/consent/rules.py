"""The owner's rules for a device, and step 3 of the decision for a `pay` or `hold`.

The caller runs steps 3, 4 and 5 of the contract's decision order like this:

    evaluate(order, payee, rules, counters, now, tz)      # 3: raises a RuleViolation
    if available_minor < order.amount_minor: ...          # 4: insufficient_funds (the wallet)
    consent = decide_consent(order, payee, rules, ...)    # 5: gateway.consent.mandates
    if consent.needs_approval: ...                         #    pending_approval
    else: ...                                              # 6: approved, charged to consent.mandate

`counters` holds, for the current periods of `now`, the device's usage under each period key
(`gateway.consent.periods.period_key`); a key that is absent counts as unused. "No rules"
(never PUT, or PUT `{}`) is `None`: then only the payee and currency checks apply, and every
order needs approval unless a mandate covers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from devices.contract import Category
from gateway.consent.periods import Period, period_key
from gateway.errors import (
    AmountOverLimit,
    CategoryNotAllowed,
    CurrencyNotAllowed,
    OutsideActiveHours,
    PayeeNotAllowed,
    PaymentCountExceeded,
    PeriodLimitExceeded,
    UnknownPayee,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_APPROVAL_TTL_S = 300


@dataclass(frozen=True)
class Limit:
    period: Period
    amount_minor: int


@dataclass(frozen=True)
class CountLimit:
    period: Period
    count: int


@dataclass(frozen=True)
class Window:
    """Active on `days` from `from_minute` (inclusive) to `to_minute` (exclusive), 0..1440.

    When `from_minute` > `to_minute` the window runs past midnight and belongs to the day it
    starts on.
    """

    days: tuple[Weekday, ...]
    from_minute: int
    to_minute: int


@dataclass(frozen=True)
class AutoTopUp:
    """Rules' `auto_top_up`: refill the wallet from the owner's sources (section 8)."""

    below_minor: int
    to_minor: int


@dataclass(frozen=True)
class Rules:
    """A device's rules; `None` in an optional field means that rule is not set."""

    currency: str | None = None
    max_amount_minor: int | None = None
    limits: tuple[Limit, ...] = ()
    max_payments: tuple[CountLimit, ...] = ()
    allowed_categories: tuple[Category, ...] | None = None
    blocked_categories: tuple[Category, ...] = ()
    allowed_payees: tuple[str, ...] | None = None
    blocked_payees: tuple[str, ...] = ()
    approval_above_minor: int | None = None
    approval_ttl_s: int = DEFAULT_APPROVAL_TTL_S
    active_hours: tuple[Window, ...] | None = None
    low_balance_alert_minor: int | None = None  # an alert only: never a consent (section 7)
    auto_top_up: AutoTopUp | None = None  # funding only: never a consent (section 7)


@dataclass(frozen=True)
class OrderTerms:
    """What a `pay` or `hold` asks for, with the payer's wallet currency."""

    payer_id: str
    payer_currency: str
    payee_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Payee:
    """A merchant or device as a payee; a device that declared no category has `None`."""

    id: str
    currency: str
    category: Category | None
    active: bool

    @property
    def effective_category(self) -> Category:
        return self.category or "other"


@dataclass(frozen=True)
class Usage:
    """What counts against limits in one period: spent (net of refunds) and payments made."""

    spent_minor: int = 0
    count: int = 0


Counters = Mapping[str, Usage]
NO_USAGE = Usage()


def consent_rules(rules: Rules | None) -> Rules | None:
    """The rules as consent sees them: rules that hold only an alert (and the approval TTL,
    which every stored rule set shows) are no rules, so an alert never lets payments through."""
    if rules is None or (rules.low_balance_alert_minor is None and rules.auto_top_up is None):
        return rules
    bare = replace(
        rules,
        low_balance_alert_minor=None,
        auto_top_up=None,
        approval_ttl_s=DEFAULT_APPROVAL_TTL_S,
    )
    return None if bare == Rules() else rules


def approval_ttl_s(rules: Rules | None) -> int:
    """How long an approval stays pending, also when the device has no rules."""
    return DEFAULT_APPROVAL_TTL_S if rules is None else rules.approval_ttl_s


def exceeded_limit(
    limits: tuple[Limit, ...], amount_minor: int, counters: Counters, now: datetime, tz: ZoneInfo
) -> Limit | None:
    """The first limit that spending `amount_minor` now would take over, if any."""
    for limit in limits:
        spent_minor = counters.get(period_key(limit.period, now, tz), NO_USAGE).spent_minor
        if spent_minor + amount_minor > limit.amount_minor:
            return limit
    return None


def is_active_time(windows: tuple[Window, ...], now: datetime, tz: ZoneInfo) -> bool:
    """Whether the owner's wall-clock time `now` falls in one of the windows."""
    local = now.astimezone(tz)
    today, yesterday = WEEKDAYS[local.weekday()], WEEKDAYS[local.weekday() - 1]
    second = local.hour * 3600 + local.minute * 60 + local.second
    return any(_window_covers(w, today, yesterday, second) for w in windows)


def _window_covers(window: Window, today: Weekday, yesterday: Weekday, second: int) -> bool:
    start_s, end_s = window.from_minute * 60, window.to_minute * 60
    if start_s < end_s:
        return today in window.days and start_s <= second < end_s
    return (today in window.days and second >= start_s) or (
        yesterday in window.days and second < end_s
    )


def evaluate(
    order: OrderTerms,
    payee: Payee | None,
    rules: Rules | None,
    counters: Counters,
    now: datetime,
    tz: ZoneInfo,
) -> None:
    """Step 3: raise the RuleViolation that declines the order, or return if it passes."""
    assert now.tzinfo is not None, "now must be timezone-aware"
    assert order.amount_minor >= 1, "the order schema guarantees a positive amount"
    if payee is None or not payee.active:
        raise UnknownPayee(f"no active payee {order.payee_id!r}")
    if payee.id == order.payer_id:
        raise PayeeNotAllowed("a device cannot pay itself")
    _check_currency(order, payee, rules)
    if rules is not None:
        _check_payee(rules, payee)
        if rules.active_hours is not None and not is_active_time(rules.active_hours, now, tz):
            raise OutsideActiveHours("outside the owner's active hours")
        _check_amounts(rules, order.amount_minor, counters, now, tz)


def _check_currency(order: OrderTerms, payee: Payee, rules: Rules | None) -> None:
    wanted = {order.payer_currency, payee.currency}
    if rules is not None and rules.currency is not None:
        wanted.add(rules.currency)
    if wanted != {order.currency}:
        raise CurrencyNotAllowed(f"{order.currency} is not allowed here")


def _check_payee(rules: Rules, payee: Payee) -> None:
    category = payee.effective_category
    allowed = rules.allowed_categories
    if (allowed is not None and category not in allowed) or category in rules.blocked_categories:
        raise CategoryNotAllowed(f"category {category!r} is not allowed")
    allowed_payees = rules.allowed_payees
    if (allowed_payees is not None and payee.id not in allowed_payees) or (
        payee.id in rules.blocked_payees
    ):
        raise PayeeNotAllowed(f"payee {payee.id!r} is not allowed")


def _check_amounts(
    rules: Rules, amount_minor: int, counters: Counters, now: datetime, tz: ZoneInfo
) -> None:
    if rules.max_amount_minor is not None and amount_minor > rules.max_amount_minor:
        raise AmountOverLimit(f"the amount is over {rules.max_amount_minor}")
    limit = exceeded_limit(rules.limits, amount_minor, counters, now, tz)
    if limit is not None:
        raise PeriodLimitExceeded(f"the {limit.period} limit of {limit.amount_minor} is reached")
    for count_limit in rules.max_payments:
        usage = counters.get(period_key(count_limit.period, now, tz), NO_USAGE)
        if usage.count + 1 > count_limit.count:
            raise PaymentCountExceeded(
                f"the {count_limit.period} maximum of {count_limit.count} payments is reached"
            )


def rules_from_json(body: Mapping[str, Any]) -> Rules | None:
    """The rules from their contract JSON (validated at the boundary); `{}` is no rules."""
    if not body:
        return None
    hours = body.get("active_hours")
    return Rules(
        currency=body.get("currency"),
        max_amount_minor=body.get("max_amount"),
        limits=tuple(Limit(x["period"], x["amount"]) for x in body.get("limits") or ()),
        max_payments=tuple(
            CountLimit(x["period"], x["count"]) for x in body.get("max_payments") or ()
        ),
        allowed_categories=_tuple_or_none(body.get("allowed_categories")),
        blocked_categories=tuple(body.get("blocked_categories") or ()),
        allowed_payees=_tuple_or_none(body.get("allowed_payees")),
        blocked_payees=tuple(body.get("blocked_payees") or ()),
        approval_above_minor=body.get("approval_above"),
        approval_ttl_s=body.get("approval_ttl_seconds") or DEFAULT_APPROVAL_TTL_S,
        active_hours=None if hours is None else tuple(map(_window, hours["windows"])),
        low_balance_alert_minor=body.get("low_balance_alert"),
        auto_top_up=_auto_top_up(body.get("auto_top_up")),
    )


def _auto_top_up(body: Mapping[str, Any] | None) -> AutoTopUp | None:
    return None if body is None else AutoTopUp(body["below"], body["to"])


def _tuple_or_none(items: list[Any] | None) -> tuple[Any, ...] | None:
    return None if items is None else tuple(items)


def _window(window: Mapping[str, Any]) -> Window:
    return Window(tuple(window["days"]), _minutes(window["from"]), _minutes(window["to"]))


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def rules_to_json(rules: Rules | None) -> dict[str, Any]:
    """The contract's JSON for the rules: `{}` for none, unset rules left out."""
    if rules is None:
        return {}
    optional: dict[str, Any] = {
        "currency": rules.currency,
        "max_amount": rules.max_amount_minor,
        "limits": [{"period": x.period, "amount": x.amount_minor} for x in rules.limits] or None,
        "max_payments": [{"period": x.period, "count": x.count} for x in rules.max_payments]
        or None,
        "allowed_categories": _list_or_none(rules.allowed_categories),
        "blocked_categories": list(rules.blocked_categories) or None,
        "allowed_payees": _list_or_none(rules.allowed_payees),
        "blocked_payees": list(rules.blocked_payees) or None,
        "approval_above": rules.approval_above_minor,
        "active_hours": None if rules.active_hours is None else {"windows": [
            {"days": list(w.days), "from": _clock(w.from_minute), "to": _clock(w.to_minute)}
            for w in rules.active_hours
        ]},
        "low_balance_alert": rules.low_balance_alert_minor,
        "auto_top_up": None if rules.auto_top_up is None else {
            "below": rules.auto_top_up.below_minor, "to": rules.auto_top_up.to_minor
        },
    }  # fmt: skip
    body = {key: value for key, value in optional.items() if value is not None}
    # Always present, so that a GET answer PUT back is rules again, never "no rules".
    body["approval_ttl_seconds"] = rules.approval_ttl_s
    return body


def _list_or_none(items: tuple[Any, ...] | None) -> list[Any] | None:
    return None if items is None else list(items)
