from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.consent.mandates import (
    Consent,
    Mandate,
    covering_mandate,
    decide_consent,
    needs_approval,
)
from gateway.consent.periods import period_key
from gateway.consent.rules import Limit, OrderTerms, Payee, Rules, Usage

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=BERLIN)
FUEL = Payee("mer_fuel", "EUR", "fuel", active=True)
PARKING = Payee("mer_park", "EUR", "parking", active=True)
ANY = Mandate("man_any", payee=None, category=None, max_amount_minor=5000)


def order(amount_minor: int = 1000, payee_id: str = "mer_fuel") -> OrderTerms:
    return OrderTerms("dev_car", "EUR", payee_id, amount_minor, "EUR")


def covering(
    *mandates: Mandate,
    terms: OrderTerms | None = None,
    payee: Payee = FUEL,
    counters: dict[str, dict[str, Usage]] | None = None,
    now: datetime = NOW,
) -> Mandate | None:
    return covering_mandate(terms or order(), payee, mandates, counters or {}, now, BERLIN)


# needs_approval


def test_without_rules_every_order_needs_approval() -> None:
    assert needs_approval(order(1), None, None)


def test_without_rules_a_covering_mandate_removes_the_need() -> None:
    assert not needs_approval(order(1), None, ANY)


def test_with_rules_an_order_needs_no_approval_unless_approval_above_is_exceeded() -> None:
    assert not needs_approval(order(10**9), Rules(currency="EUR"), None)


def test_approval_above_means_strictly_greater() -> None:
    rules = Rules(approval_above_minor=3000)
    assert not needs_approval(order(3000), rules, None)
    assert needs_approval(order(3001), rules, None)
    assert not needs_approval(order(3001), rules, ANY)


# covering_mandate


def test_mandate_naming_neither_payee_nor_category_covers_any_order_within_its_amount() -> None:
    assert covering(ANY, payee=PARKING, terms=order(payee_id="mer_park")) == ANY


def test_mandate_for_another_payee_does_not_cover() -> None:
    other = replace(ANY, payee="mer_other")
    assert covering(other) is None
    assert covering(replace(ANY, payee="mer_fuel")) is not None


def test_mandate_for_another_category_does_not_cover() -> None:
    assert covering(replace(ANY, category="parking")) is None
    assert covering(replace(ANY, category="fuel")) is not None


def test_mandate_for_category_other_covers_a_payee_device_without_category() -> None:
    fridge = Payee("dev_fridge", "EUR", None, active=True)
    mandate = replace(ANY, category="other")
    assert covering(mandate, terms=order(payee_id="dev_fridge"), payee=fridge) == mandate


def test_mandate_naming_both_needs_both_to_match() -> None:
    both = replace(ANY, payee="mer_fuel", category="parking")
    assert covering(both) is None


def test_mandate_covers_up_to_its_max_amount_inclusive() -> None:
    assert covering(ANY, terms=order(5000)) == ANY
    assert covering(ANY, terms=order(5001)) is None


def test_revoked_mandate_does_not_cover() -> None:
    assert covering(replace(ANY, active=False)) is None


def test_mandate_covers_from_valid_from_inclusive_until_valid_until_exclusive() -> None:
    dated = replace(ANY, valid_from=NOW, valid_until=NOW + timedelta(days=1))
    assert covering(dated, now=NOW) == dated
    assert covering(dated, now=NOW - timedelta(seconds=1)) is None
    assert covering(dated, now=NOW + timedelta(days=1) - timedelta(seconds=1)) == dated
    assert covering(dated, now=NOW + timedelta(days=1)) is None


def test_mandate_stops_covering_when_its_own_limit_would_be_exceeded() -> None:
    monthly = replace(ANY, limits=(Limit("month", 10000),))
    month = period_key("month", NOW, BERLIN)
    assert covering(monthly, counters={"man_any": {month: Usage(9000, 3)}}) == monthly
    assert covering(monthly, terms=order(1001), counters={"man_any": {month: Usage(9000)}}) is None


def test_mandate_limits_count_only_its_own_usage() -> None:
    first = replace(ANY, id="man_1", limits=(Limit("day", 1000),))
    second = replace(ANY, id="man_2", limits=(Limit("day", 1000),))
    day = period_key("day", NOW, BERLIN)
    assert covering(first, second, counters={"man_1": {day: Usage(1000)}}) == second


def test_most_specific_mandate_covers_first() -> None:
    by_category = replace(ANY, id="man_cat", category="fuel")
    by_payee = replace(ANY, id="man_payee", payee="mer_fuel")
    by_both = replace(ANY, id="man_both", payee="mer_fuel", category="fuel")
    assert covering(ANY, by_category, by_payee, by_both) == by_both
    assert covering(ANY, by_category, by_payee) == by_payee
    assert covering(ANY, by_category) == by_category
    assert covering(ANY, replace(ANY, id="man_later")) == ANY


# decide_consent


def decide(rules: Rules | None, *mandates: Mandate, amount_minor: int = 1000) -> Consent:
    return decide_consent(order(amount_minor), FUEL, rules, mandates, {}, NOW, BERLIN)


def test_order_within_rules_is_approved_without_using_a_mandate() -> None:
    assert decide(Rules(approval_above_minor=3000), ANY) == Consent(False, None)


def test_order_over_approval_above_uses_the_covering_mandate() -> None:
    assert decide(Rules(approval_above_minor=500), ANY) == Consent(False, ANY)


def test_order_without_rules_or_mandate_waits_for_the_owner() -> None:
    assert decide(None) == Consent(True, None)
    assert decide(None, ANY, amount_minor=5001) == Consent(True, None)
