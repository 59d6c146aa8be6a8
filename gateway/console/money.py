"""How the console shows money and time to a person. Pure: no I/O, no clock.

Amounts are integers in minor units; the number of decimals is the currency's ISO 4217 minor
unit, as the `iso4217` package lists it (2 for a code it does not know), so that 1250 EUR reads
"€12.50", 1250 JPY reads "¥1,250" and 12345 UYW reads "UYW 1.2345".
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.currencies import minor_unit_digits

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩"}


def decimals(currency: str) -> int:
    """The number of digits after the decimal point in the currency's major unit."""
    digits = minor_unit_digits(currency)
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
