"""How the console reads an amount a person types: in the currency's major unit, exactly, with
the currency's own number of decimals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.console.money import (
    MAX_MINOR,
    AmountRefused,
    format_amount,
    major_units,
    parse_amount,
)

READ = [
    ("12.50", "EUR", 1250),
    ("12.5", "EUR", 1250),
    ("12", "EUR", 1200),
    ("12.", "EUR", 1200),
    (".5", "EUR", 50),
    ("0.01", "EUR", 1),
    (" 7.00 ", "EUR", 700),
    ("0", "EUR", 0),
    ("1250", "JPY", 1250),
    ("12.5", "BHD", 12500),
    ("0.125", "BHD", 125),
    ("1.2345", "UYW", 12345),
    ("12.50", "eur", 1250),
    ("90071992547409.91", "EUR", MAX_MINOR),
]


@pytest.mark.parametrize(("typed", "currency", "amount_minor"), READ)
def test_an_amount_is_read_in_the_currencys_major_unit(
    typed: str, currency: str, amount_minor: int
) -> None:
    assert parse_amount(typed, currency) == amount_minor


REFUSED = [
    ("12.505", "EUR", "EUR has 2 decimals: write e.g. 12.50."),
    ("12.5", "JPY", "JPY has no decimals: write e.g. 1250."),
    ("1.0001", "BHD", "BHD has 3 decimals: write e.g. 12.500."),
    ("12.500", "EUR", "EUR has 2 decimals: write e.g. 12.50."),
    ("-5", "EUR", "An amount cannot be negative."),
    ("-0.01", "EUR", "An amount cannot be negative."),
    ("12,50", "EUR", "Write the decimals after a point, e.g. 12.50, without commas."),
    ("1,250", "JPY", "Write the decimals after a point, e.g. 1250, without commas."),
    ("1,250.00", "EUR", "Write the decimals after a point, e.g. 12.50, without commas."),
    ("€12", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("12 EUR", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("1e3", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("1_000", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("١٢", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),  # Arabic-Indic digits
    ("+5", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    (".", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("1.2.3", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("NaN", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("Infinity", "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
    ("9" * 41, "EUR", "Write the amount in EUR as a number, e.g. 12.50."),
]


@pytest.mark.parametrize(("typed", "currency", "message"), REFUSED)
def test_what_is_not_an_amount_in_the_currency_is_refused_saying_why(
    typed: str, currency: str, message: str
) -> None:
    with pytest.raises(AmountRefused) as refused:
        parse_amount(typed, currency)
    assert str(refused.value) == message


def test_an_amount_beyond_what_the_gateway_holds_is_refused() -> None:
    for typed in ("90071992547409.92", "1" + "0" * 30, "99999999999999999999"):
        with pytest.raises(AmountRefused, match="more than any amount the gateway holds"):
            parse_amount(typed, "EUR")
    with pytest.raises(AmountRefused, match="more than any amount"):
        parse_amount(str(MAX_MINOR + 1), "JPY")


def test_amounts_are_shown_for_editing_as_they_are_typed() -> None:
    assert major_units(1250, "EUR") == "12.50"
    assert major_units(5, "EUR") == "0.05"
    assert major_units(1250, "JPY") == "1250"
    assert major_units(125, "BHD") == "0.125"
    assert major_units(123456789, "EUR") == "1234567.89"  # no separators: it must parse back


@given(
    amount_minor=st.integers(min_value=0, max_value=MAX_MINOR),
    currency=st.sampled_from(["EUR", "JPY", "BHD", "UYW", "KWD", "ZZZ"]),
)
def test_an_amount_shown_in_a_form_reads_back_as_the_same_minor_units(
    amount_minor: int, currency: str
) -> None:
    shown = major_units(amount_minor, currency)
    assert parse_amount(shown, currency) == amount_minor
    assert format_amount(amount_minor, currency).replace(",", "").endswith(shown)
