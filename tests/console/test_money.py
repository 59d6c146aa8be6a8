"""How the console writes amounts."""

from __future__ import annotations

from gateway.console.money import format_amount


def test_amounts_are_written_in_their_currencys_major_unit() -> None:
    assert format_amount(1250, "EUR") == "€12.50"
    assert format_amount(5, "USD") == "$0.05"
    assert format_amount(123456789, "GBP") == "£1,234,567.89"
    assert format_amount(1250, "JPY") == "¥1,250"
    assert format_amount(1250, "KWD") == "KWD 1.250"
    assert format_amount(-300, "CHF") == "-CHF 3.00"
    assert format_amount(None, "EUR") == "—"
