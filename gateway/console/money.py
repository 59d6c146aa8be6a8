"""How the console shows money and time to a person, and reads the amounts a person types.
Pure: no I/O, no clock.

Amounts are integers in minor units; the number of decimals is the currency's ISO 4217 minor
unit, as the `iso4217` package lists it (2 for a code it does not know), so that 1250 EUR reads
"€12.50", 1250 JPY reads "¥1,250" and 12345 UYW reads "UYW 1.2345". A person types amounts
the same way, in the major unit ("12.50" EUR, "1250" JPY), and `parse_amount` turns them into
minor units exactly, with string arithmetic: never a float, never a guess (a decimal comma,
which could also be a thousands separator, is refused with a message, not read).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.currencies import minor_unit_digits

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩"}


def decimals(currency: str) -> int:
    """The number of digits after the decimal point in the currency's major unit."""
    digits = minor_unit_digits(currency.strip().upper())
    return 2 if digits is None else digits


def format_amount(amount_minor: int | None, currency: str | None) -> str:
    """`€12.50`, `-€3.00`, `CHF 1,000.00`; an em dash for no amount."""
    if amount_minor is None:
        return "—"
    code = (currency or "").upper()
    places = decimals(code)
    sign = "-" if amount_minor < 0 else ""
    whole, part = divmod(abs(amount_minor), 10**places)
    number = f"{whole:,}" + (f".{part:0{places}d}" if places else "")
    symbol = SYMBOLS.get(code)
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{code} {number}".strip()


def format_time(at: datetime | str | None, timezone: str | None = None) -> str:
    """`2026-11-29 10:30 CET`: a datetime or RFC 3339 string in the owner's timezone (or UTC)."""
    if at is None:
        return "—"
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    local = moment.astimezone(ZoneInfo(timezone) if timezone else UTC)
    return local.strftime("%Y-%m-%d %H:%M %Z").strip()


MAX_MINOR = 2**53 - 1  # the API's largest amount: every JSON client reads it exactly
MAX_TYPED = 40  # characters: more is no amount a person means
TYPED = re.compile(r"(?P<whole>[0-9]*)(?:\.(?P<part>[0-9]*))?")


class AmountRefused(ValueError):
    """A typed amount that is not one: the message says why, for the person who typed it."""


def example(currency: str) -> str:
    """An amount as a person writes it in `currency`: `12.50` (EUR), `1250` (JPY), `12.500`."""
    places = decimals(currency)
    return f"12.5{'0' * (places - 1)}" if places else "1250"


def major_units(amount_minor: int, currency: str) -> str:
    """An amount as a form shows it to be edited: `12.50` for 1250 EUR, `1250` for 1250 JPY."""
    places = decimals(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, part = divmod(abs(amount_minor), 10**places)
    return f"{sign}{whole}" + (f".{part:0{places}d}" if places else "")


def parse_amount(text: str, currency: str) -> int:
    """The minor units of an amount typed in the currency's major unit, exactly (no float):
    `12.50` and `12.5` EUR are 1250, `12` is 1200, `1250` JPY is 1250.

    Raises `AmountRefused` for a negative, a decimal comma, more decimals than the currency
    has, anything but digits and one point, and more than the API holds.
    """
    typed, code = text.strip(), currency.strip().upper()
    places = decimals(code)
    if typed.startswith("-"):
        raise AmountRefused("An amount cannot be negative.")
    if "," in typed:
        raise AmountRefused(
            f"Write the decimals after a point, e.g. {example(code)}, without commas."
        )
    found = TYPED.fullmatch(typed) if len(typed) <= MAX_TYPED else None
    if found is None or not (found["whole"] or found["part"]):
        raise AmountRefused(
            f"Write the amount in {code or 'major units'} as a number, e.g. {example(code)}."
        )
    part = found["part"] or ""
    if len(part) > places:
        has = f"{places} decimal{'s' if places != 1 else ''}" if places else "no decimals"
        raise AmountRefused(f"{code} has {has}: write e.g. {example(code)}.")
    scale: int = 10**places
    amount_minor = int(found["whole"] or "0") * scale + int(part.ljust(places, "0") or "0")
    if amount_minor > MAX_MINOR:
        raise AmountRefused(
            f"This is more than any amount the gateway holds ({format_amount(MAX_MINOR, code)})."
        )
    return amount_minor


# An amount in an API refusal's message, in minor units: either followed by its currency code
# ("cannot cover the 30990 EUR left") or, when the console knows the currency the refusal is
# about, after a word that introduces an amount ("the amount is over 5000", "limit of 8000",
# "amount must be 1 to 1250"), unless a unit follows that makes it a count ("20 payments").
IN_MESSAGE = re.compile(
    r"\b(?P<minor>\d{1,19}) (?P<code>[A-Z]{3})\b"
    r"|\b(?P<lead>amount|max|over|than|most|least|of|pass|exceeds|to|be|cover) (?P<bare>\d{1,19})\b"
    r"(?! ?(?:%|payments?\b|days?\b|instalments?\b|seconds?\b|s\b|characters\b|entries\b"
    r"|items\b|bytes\b|[A-Z]{3}\b))"
)


def in_major_units(message: str, currency: str | None = None) -> str:
    """An API refusal's message as the console says it to a person: its amounts in minor units
    written as everywhere else on the console ("cannot cover the 30990 EUR left" → "cannot cover
    the €309.90 left"; "the amount is over 5000" in EUR → "the amount is over €50.00"). The API
    itself keeps saying minor units; without `currency`, only amounts that name theirs change."""

    def shown(found: re.Match[str]) -> str:
        if found["code"]:
            known = minor_unit_digits(found["code"]) is not None
            return format_amount(int(found["minor"]), found["code"]) if known else found[0]
        if not currency:
            return found[0]
        return f"{found['lead']} {format_amount(int(found['bare']), currency)}"

    return IN_MESSAGE.sub(shown, message)


def refusal(exc: Exception, currency: str | None = None) -> str:
    """What the console says of a refusal the API would answer with `exc`'s message."""
    return in_major_units(str(exc), currency)
