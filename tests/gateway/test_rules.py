import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

import gateway
from gateway.consent.periods import period_key
from gateway.consent.rules import (
    Counters,
    Limit,
    OrderTerms,
    Payee,
    Rules,
    Usage,
    approval_ttl_s,
    evaluate,
    rules_to_json,
)
from gateway.errors import RULE_VIOLATIONS, RuleViolation
from gateway.http.schemas import RulesIn

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=BERLIN)  # a Friday
FUEL = Payee("mer_fuel", "EUR", "fuel", active=True)
CASINO = Payee("mer_casino", "EUR", "gambling", active=True)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A time in Berlin in the week of Monday 23 November 2026."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=BERLIN)


def order(
    amount_minor: int = 1000, currency: str = "EUR", payee_id: str = "mer_fuel"
) -> OrderTerms:
    return OrderTerms("dev_car", "EUR", payee_id, amount_minor, currency)


def rules(**body: Any) -> Rules | None:
    return RulesIn.model_validate(body).to_rules()


def usage(spent_minor: int = 0, count: int = 0, when: datetime = NOW) -> Counters:
    keys = (period_key(period, when, BERLIN) for period in ("day", "week", "month", "year"))
    return {key: Usage(spent_minor, count) for key in keys}


def decide(
    terms: OrderTerms | None = None,
    payee: Payee | None = FUEL,
    rules: Rules | None = None,
    counters: Counters | None = None,
    now: datetime = NOW,
) -> str | None:
    try:
        evaluate(terms or order(), payee, rules, counters or {}, now, BERLIN)
    except RuleViolation as refusal:
        return refusal.reason
    return None


CONTRACT_EXAMPLE = {
    "currency": "EUR",
    "max_amount": 5000,
    "limits": [{"period": "day", "amount": 20000}],
    "max_payments": [{"period": "day", "count": 20}],
    "allowed_categories": ["fuel", "parking"],
    "blocked_categories": ["gambling"],
    "allowed_payees": ["dev_123", "mer_456"],
    "blocked_payees": [],
    "approval_above": 3000,
    "approval_ttl_seconds": 300,
    "active_hours": {
        "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "06:00", "to": "22:00"}]
    },
}


# Payee and currency


def test_passes_order_that_every_rule_allows() -> None:
    body = {**CONTRACT_EXAMPLE, "allowed_payees": ["mer_fuel"]}
    assert decide(rules=rules(**body), counters=usage(19000, 19)) is None


def test_declines_order_to_unknown_payee() -> None:
    assert decide(payee=None) == "unknown_payee"


def test_declines_order_to_payee_device_that_is_not_active() -> None:
    suspended = Payee("dev_pump", "EUR", "fuel", active=False)
    assert decide(order(payee_id="dev_pump"), payee=suspended) == "unknown_payee"


def test_declines_order_to_the_payer_itself() -> None:
    itself = Payee("dev_car", "EUR", None, active=True)
    assert decide(order(payee_id="dev_car"), payee=itself) == "payee_not_allowed"


def test_declines_order_in_another_currency_than_the_payer_wallet() -> None:
    terms = OrderTerms("dev_car", "USD", "mer_fuel", 1000, "EUR")
    assert decide(terms) == "currency_not_allowed"


def test_declines_order_in_another_currency_than_the_payee_wallet() -> None:
    assert decide(payee=Payee("mer_fuel", "USD", "fuel", active=True)) == "currency_not_allowed"


def test_declines_order_in_another_currency_than_the_rules_currency() -> None:
    terms = OrderTerms("dev_car", "USD", "mer_fuel", 1000, "USD")
    dollar_pump = Payee("mer_fuel", "USD", "fuel", active=True)
    assert decide(terms, dollar_pump, rules(currency="USD")) is None
    assert decide(terms, dollar_pump, rules(currency="EUR")) == "currency_not_allowed"


def test_without_rules_only_payee_and_currency_are_checked() -> None:
    assert decide(order(10**9), CASINO, None, usage(10**12, 10**6)) is None
    assert decide(order(currency="USD"), rules=None) == "currency_not_allowed"


# Categories and payees


def test_declines_category_that_is_not_allowed() -> None:
    assert decide(payee=CASINO, rules=rules(allowed_categories=["fuel"])) == "category_not_allowed"
    assert decide(payee=FUEL, rules=rules(allowed_categories=["fuel"])) is None


def test_declines_blocked_category() -> None:
    assert decide(payee=CASINO, rules=rules(blocked_categories=["gambling"])) == (
        "category_not_allowed"
    )


def test_blocked_category_wins_over_allowed() -> None:
    both = rules(allowed_categories=["fuel"], blocked_categories=["fuel"])
    assert decide(rules=both) == "category_not_allowed"


def test_payee_device_without_category_counts_as_other() -> None:
    fridge = Payee("dev_fridge", "EUR", None, active=True)
    terms = order(payee_id="dev_fridge")
    assert decide(terms, fridge, rules(allowed_categories=["other"])) is None
    assert decide(terms, fridge, rules(blocked_categories=["other"])) == "category_not_allowed"


def test_empty_allowed_categories_allow_nothing() -> None:
    assert decide(rules=rules(allowed_categories=[])) == "category_not_allowed"


def test_declines_payee_that_is_not_allowed() -> None:
    assert decide(rules=rules(allowed_payees=["mer_other"])) == "payee_not_allowed"
    assert decide(rules=rules(allowed_payees=["mer_fuel"])) is None


def test_declines_blocked_payee() -> None:
    assert decide(rules=rules(blocked_payees=["mer_fuel"])) == "payee_not_allowed"


# Amounts, limits and counts


def test_declines_order_over_max_amount() -> None:
    assert decide(order(5001), rules=rules(max_amount=5000)) == "amount_over_limit"


def test_passes_order_of_exactly_max_amount() -> None:
    assert decide(order(5000), rules=rules(max_amount=5000)) is None


def test_declines_order_over_daily_limit() -> None:
    daily = rules(limits=[{"period": "day", "amount": 20000}])
    assert decide(order(1001), rules=daily, counters=usage(19000)) == "period_limit_exceeded"


def test_passes_order_that_reaches_daily_limit_exactly() -> None:
    daily = rules(limits=[{"period": "day", "amount": 20000}])
    assert decide(order(1000), rules=daily, counters=usage(19000)) is None


def test_every_limit_must_pass_together() -> None:
    limits = rules(
        limits=[{"period": "day", "amount": 20000}, {"period": "month", "amount": 50000}]
    )
    counters = {
        period_key("day", NOW, BERLIN): Usage(0),
        period_key("month", NOW, BERLIN): Usage(49500),
    }
    assert decide(order(1000), rules=limits, counters=counters) == "period_limit_exceeded"


def test_spending_in_an_earlier_period_does_not_count() -> None:
    daily = rules(limits=[{"period": "day", "amount": 20000}])
    yesterday = usage(20000, 50, when=at(26, 12))
    assert decide(order(20000), rules=daily, counters=yesterday) is None


def test_weekly_limit_counts_spending_since_monday() -> None:
    weekly = rules(limits=[{"period": "week", "amount": 10000}])
    monday = usage(9500, when=at(23, 8))
    assert decide(order(1000), rules=weekly, counters=monday, now=at(29, 23)) == (
        "period_limit_exceeded"
    )
    assert decide(order(1000), rules=weekly, counters=monday, now=at(30, 0)) is None


def test_declines_payment_beyond_max_payments() -> None:
    twenty = rules(max_payments=[{"period": "day", "count": 20}])
    assert decide(rules=twenty, counters=usage(count=19)) is None
    assert decide(rules=twenty, counters=usage(count=20)) == "payment_count_exceeded"


def test_checks_run_in_the_contracts_order() -> None:
    body: dict[str, Any] = {
        "currency": "USD",
        "allowed_categories": ["parking"],
        "allowed_payees": ["mer_other"],
        "active_hours": {"windows": [{"days": ["sat"], "from": "06:00", "to": "07:00"}]},
        "max_amount": 10,
        "limits": [{"period": "day", "amount": 10}],
        "max_payments": [{"period": "day", "count": 1}],
    }
    expected = [
        ("currency", "currency_not_allowed"),
        ("allowed_categories", "category_not_allowed"),
        ("allowed_payees", "payee_not_allowed"),
        ("active_hours", "outside_active_hours"),
        ("max_amount", "amount_over_limit"),
        ("limits", "period_limit_exceeded"),
        ("max_payments", "payment_count_exceeded"),
    ]
    for field, reason in expected:
        assert decide(order(1000), rules=rules(**body), counters=usage(count=1)) == reason
        del body[field]
    assert decide(order(1000), rules=rules(**body), counters=usage(count=1)) is None


# Active hours (Friday 27 November 2026 in Berlin)


def hours(days: list[str], start: str, end: str) -> Rules | None:
    return rules(active_hours={"windows": [{"days": days, "from": start, "to": end}]})


WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


@pytest.mark.parametrize(
    ("now", "allowed"),
    [
        (at(27, 5, 59, 59), False),
        (at(27, 6, 0), True),
        (at(27, 21, 59, 59), True),
        (at(27, 22, 0), False),
        (at(28, 12, 0), False),  # Saturday
    ],
)
def test_window_from_is_inclusive_and_to_exclusive_on_its_days(
    now: datetime, allowed: bool
) -> None:
    outcome = decide(rules=hours(WEEKDAYS, "06:00", "22:00"), now=now)
    assert outcome == (None if allowed else "outside_active_hours")


@pytest.mark.parametrize(
    ("now", "allowed"),
    [
        (at(27, 21, 59), False),
        (at(27, 22, 0), True),  # Friday evening: the window starts
        (at(28, 5, 59, 59), True),  # Saturday early: still Friday's window
        (at(28, 6, 0), False),
        (at(28, 23, 0), False),  # Saturday's own night is not in the window
        (at(27, 3, 0), False),  # Friday early belongs to Thursday's night
    ],
)
def test_overnight_window_belongs_to_the_day_it_starts(now: datetime, allowed: bool) -> None:
    outcome = decide(rules=hours(["fri"], "22:00", "06:00"), now=now)
    assert outcome == (None if allowed else "outside_active_hours")


def test_overnight_window_on_sunday_runs_into_monday() -> None:
    sunday_night = hours(["sun"], "23:00", "01:00")
    assert decide(rules=sunday_night, now=at(30, 0, 30)) is None
    assert decide(rules=sunday_night, now=at(24, 0, 30)) == "outside_active_hours"


def test_window_to_24_00_includes_the_last_second_of_the_day() -> None:
    evening = hours(["fri"], "18:00", "24:00")
    assert decide(rules=evening, now=at(27, 23, 59, 59)) is None
    assert decide(rules=evening, now=at(28, 0, 0)) == "outside_active_hours"


def test_window_from_00_00_to_24_00_covers_the_whole_day() -> None:
    friday = hours(["fri"], "00:00", "24:00")
    assert decide(rules=friday, now=at(27, 0, 0)) is None
    assert decide(rules=friday, now=at(27, 23, 59, 59)) is None
    assert decide(rules=friday, now=at(26, 23, 59, 59)) == "outside_active_hours"


def test_window_ending_at_00_00_runs_to_midnight() -> None:
    late = hours(["fri"], "22:00", "00:00")
    assert decide(rules=late, now=at(27, 23, 59, 59)) is None
    assert decide(rules=late, now=at(28, 0, 0)) == "outside_active_hours"


def test_any_window_may_allow_the_order() -> None:
    split = rules(
        active_hours={
            "windows": [
                {"days": ["fri"], "from": "06:00", "to": "09:00"},
                {"days": ["fri"], "from": "17:00", "to": "20:00"},
            ]
        }
    )
    assert decide(rules=split, now=at(27, 8, 0)) is None
    assert decide(rules=split, now=at(27, 18, 0)) is None
    assert decide(rules=split, now=at(27, 12, 0)) == "outside_active_hours"


def test_empty_window_list_is_never_active() -> None:
    assert decide(rules=rules(active_hours={"windows": []})) == "outside_active_hours"


def test_active_hours_are_the_owners_wall_clock() -> None:
    morning = hours(["fri"], "06:00", "22:00")
    utc_evening = datetime(2026, 11, 27, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    assert decide(rules=morning, now=utc_evening) == "outside_active_hours"


def test_active_hours_follow_the_wall_clock_across_dst_changes() -> None:
    early = hours(["sun"], "03:00", "04:00")
    spring = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, just after the jump
    assert decide(rules=early, now=spring) is None
    repeated = hours(["sun"], "02:00", "03:00")
    for utc_hour in (0, 1):  # 02:30 CEST, then 02:30 CET
        autumn = datetime(2026, 10, 25, utc_hour, 30, tzinfo=UTC)
        assert decide(rules=repeated, now=autumn) is None


# The rules body


def test_contract_example_round_trips_through_the_rules_body() -> None:
    parsed = RulesIn.model_validate(CONTRACT_EXAMPLE).to_rules()
    assert parsed is not None
    assert parsed.max_amount_minor == 5000
    assert parsed.limits == (Limit("day", 20000),)
    expected = {k: v for k, v in CONTRACT_EXAMPLE.items() if k != "blocked_payees"}
    assert rules_to_json(parsed) == expected
    assert RulesIn.model_validate(rules_to_json(parsed)).to_rules() == parsed


def test_overnight_and_24_00_windows_round_trip() -> None:
    body = {"windows": [{"days": ["sun"], "from": "22:30", "to": "24:00"},
                        {"days": ["sat"], "from": "23:00", "to": "05:15"}]}  # fmt: skip
    assert rules_to_json(rules(active_hours=body))["active_hours"] == body


def test_empty_body_means_no_rules() -> None:
    assert rules() is None
    assert rules_to_json(None) == {}


def test_null_fields_are_absent_fields() -> None:
    assert rules(currency=None, limits=None) is None


def test_currency_alone_is_rules_not_no_rules() -> None:
    assert rules(currency="EUR") == Rules(currency="EUR")
    assert rules_to_json(rules(currency="EUR")) == {"currency": "EUR", "approval_ttl_seconds": 300}


def test_approval_ttl_defaults_to_300_seconds_with_or_without_rules() -> None:
    assert approval_ttl_s(None) == 300
    assert approval_ttl_s(rules(currency="EUR")) == 300
    assert approval_ttl_s(rules(approval_ttl_seconds=86400)) == 86400


def test_an_allow_list_that_is_empty_stays_distinct_from_an_absent_one() -> None:
    assert rules_to_json(rules(allowed_categories=[]))["allowed_categories"] == []
    assert "allowed_categories" not in rules_to_json(rules(blocked_categories=[]))


@pytest.mark.parametrize(
    "body",
    [
        {"max_amunt": 5000},
        {"max_amount": 5000.0},
        {"max_amount": "5000"},
        {"max_amount": 0},
        {"max_amount": -1},
        {"max_amount": True},
        {"max_amount": 2**53},
        {"approval_above": 1.5},
        {"currency": "eur"},
        {"currency": "EURO"},
        {"allowed_categories": ["casino"]},
        {"blocked_payees": ["has space"]},
        {"limits": [{"period": "hour", "amount": 100}]},
        {"limits": [{"period": "day", "amount": 100, "currency": "EUR"}]},
        {"limits": [{"period": "day"}]},
        {"limits": {"period": "day", "amount": 100}},
        {"max_payments": [{"period": "day", "count": 0}]},
        {"max_payments": [{"period": "day", "count": 2.0}]},
        {"approval_ttl_seconds": 0},
        {"approval_ttl_seconds": 86401},
        {"active_hours": {}},
        {"active_hours": {"windows": [{"days": ["fri"], "from": "06:00", "to": "24:01"}]}},
        {"active_hours": {"windows": [{"days": ["fri"], "from": "6:00", "to": "22:00"}]}},
        {"active_hours": {"windows": [{"days": ["fri"], "from": "06:00\n", "to": "22:00"}]}},
        {"active_hours": {"windows": [{"days": ["fri"], "from": "06:60", "to": "22:00"}]}},
        {"active_hours": {"windows": [{"days": ["fri"], "from": "06:00", "to": "06:00"}]}},
        {"active_hours": {"windows": [{"days": [], "from": "06:00", "to": "22:00"}]}},
        {"active_hours": {"windows": [{"days": ["friday"], "from": "06:00", "to": "22:00"}]}},
        {"active_hours": {"windows": [{"days": ["fri"], "from_": "06:00", "to": "22:00"}]}},
        {"active_hours": {"windows": [], "timezone": "UTC"}},
    ],
)
def test_rejects_invalid_rules_body(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RulesIn.model_validate(body)


def test_strict_amounts_hold_for_json_input_too() -> None:
    with pytest.raises(ValidationError):
        RulesIn.model_validate_json('{"max_amount": 5000.0}')
    assert RulesIn.model_validate_json('{"max_amount": 5000}').max_amount == 5000


# The reason table and purity


def test_every_rule_violation_carries_its_contract_reason_code() -> None:
    reasons = {cls.reason for cls in RULE_VIOLATIONS}
    assert reasons == {
        "unknown_payee",
        "payee_not_allowed",
        "currency_not_allowed",
        "category_not_allowed",
        "outside_active_hours",
        "amount_over_limit",
        "period_limit_exceeded",
        "payment_count_exceeded",
    }
    assert all(cls("message").reason == cls.reason for cls in RULE_VIOLATIONS)


PURE_MODULES = ("consent/rules.py", "consent/periods.py", "consent/mandates.py")
ALLOWED_IMPORTS = {
    "__future__", "collections.abc", "dataclasses", "datetime", "typing", "zoneinfo", "pydantic",
    "devices.contract", "gateway.errors", "gateway.consent.periods", "gateway.consent.rules",
}  # fmt: skip
CLOCK_AND_ENVIRONMENT = {"now", "utcnow", "today", "time", "monotonic", "environ", "getenv"}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_rules_and_consent_stay_pure(module: str) -> None:
    tree = ast.parse((Path(gateway.__file__).parent / module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {alias.name for alias in node.names} <= ALLOWED_IMPORTS
        elif isinstance(node, ast.ImportFrom):
            assert node.module in ALLOWED_IMPORTS
        elif isinstance(node, ast.Attribute):
            assert node.attr not in CLOCK_AND_ENVIRONMENT
