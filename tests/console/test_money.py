"""How the console writes amounts and times, and what its rules form sends."""

from __future__ import annotations

import pytest

from gateway.console.forms import rules_body
from gateway.console.money import format_amount, format_time, in_major_units


def test_amounts_are_written_in_their_currencys_major_unit() -> None:
    assert format_amount(1250, "EUR") == "€12.50"
    assert format_amount(5, "USD") == "$0.05"
    assert format_amount(123456789, "GBP") == "£1,234,567.89"
    assert format_amount(1250, "JPY") == "¥1,250"
    assert format_amount(1250, "KWD") == "KWD 1.250"
    assert format_amount(-300, "CHF") == "-CHF 3.00"
    assert format_amount(None, "EUR") == "—"


def test_decimals_follow_iso_4217_and_default_to_two_for_an_unknown_code() -> None:
    assert format_amount(12345, "UYW") == "UYW 1.2345"  # exponent 4
    assert format_amount(12345, "CLF") == "CLF 1.2345"
    assert format_amount(1250, "UYI") == "UYI 1,250"
    assert format_amount(1250, "ZZZ") == "ZZZ 12.50"
    assert format_amount(1250, None) == "12.50"


def test_saving_rules_keeps_those_the_form_has_no_field_for() -> None:
    auto_top_up = {"below": 1000, "amount": 5000}  # section 8: set through the API only
    current = {"currency": "EUR", "max_amount": 900, "auto_top_up": auto_top_up}
    body, errors = rules_body({"currency": "EUR", "approval_above": "30"}, current)
    assert body == {"currency": "EUR", "approval_above": 3000, "auto_top_up": auto_top_up}
    assert errors == {}


def test_times_are_written_in_the_owners_timezone() -> None:
    assert format_time("2026-11-29T23:00:00+00:00", "Europe/Berlin") == "2026-11-30 00:00 CET"
    assert format_time("2026-07-01T12:00:00+02:00", None) == "2026-07-01 10:00 UTC"


@pytest.mark.parametrize(
    ("api_says", "currency", "console_says"),
    [
        (
            "your balance sources cannot cover the 30990 EUR left",
            None,
            "your balance sources cannot cover the €309.90 left",
        ),
        (
            "the credit line has less than 10296 EUR available",
            None,
            "the credit line has less than €102.96 available",
        ),
        ("dev_12 has less than 1250 JPY available", "EUR", "dev_12 has less than ¥1,250 available"),
        ("amount 1250 exceeds max 1000", "EUR", "amount €12.50 exceeds max €10.00"),
        ("the amount is over 5000", "KWD", "the amount is over KWD 5.000"),
        ("the week limit of 8000 is reached", "BHD", "the week limit of BHD 8.000 is reached"),
        (
            "amount must be 1 to 1250 (what was paid)",
            "EUR",
            "amount must be €0.01 to €12.50 (what was paid)",
        ),
        (
            "the day maximum of 20 payments is reached",
            "EUR",
            "the day maximum of 20 payments is reached",
        ),
        ("the amount is over 5000", None, "the amount is over 5000"),  # no currency to say it in
        (
            "top-up key k-1250 was used for another request",
            "EUR",
            "top-up key k-1250 was used for another request",
        ),
        ("no payee 'mer_1250'", "EUR", "no payee 'mer_1250'"),
    ],
)
def test_an_api_refusal_is_shown_with_amounts_in_major_units(
    api_says: str, currency: str | None, console_says: str
) -> None:
    assert in_major_units(api_says, currency) == console_says
