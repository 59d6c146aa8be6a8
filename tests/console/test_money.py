"""How the console writes amounts, and what its rules form sends."""

from __future__ import annotations

from gateway.console.forms import rules_body
from gateway.console.money import format_amount


def test_amounts_are_written_in_their_currencys_major_unit() -> None:
    assert format_amount(1250, "EUR") == "€12.50"
    assert format_amount(5, "USD") == "$0.05"
    assert format_amount(123456789, "GBP") == "£1,234,567.89"
    assert format_amount(1250, "JPY") == "¥1,250"
    assert format_amount(1250, "KWD") == "KWD 1.250"
    assert format_amount(-300, "CHF") == "-CHF 3.00"
    assert format_amount(None, "EUR") == "—"


def test_saving_rules_keeps_those_the_form_has_no_field_for() -> None:
    current = {"currency": "EUR", "max_amount": 900, "low_balance_alert": 500}
    body = rules_body({"currency": "EUR", "approval_above": "3000"}, current)
    assert body == {"currency": "EUR", "approval_above": 3000, "low_balance_alert": 500}
