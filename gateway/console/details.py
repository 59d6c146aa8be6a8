"""An audit entry's data as a person reads it on the console. Pure: no I/O, no clock.

The trail holds JSON with amounts in minor units and times in Unix seconds; the console shows
`amount €60.00 · order id o-4 · decided at 2026-12-01 02:19 CET` instead, in the currency the
entry names (else the device's) and the owner's timezone. The JSON itself stays one hover away
(the cell's title), since the signed entry is what `kym audit verify` checks.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from gateway.console.money import format_amount, format_time

# Keys whose integer values are minor units in the entry's currency.
MONEY = frozenset(
    {
        "amount", "max_amount", "min_amount", "approval_above", "low_balance_alert", "balance",
        "threshold", "spent", "captured_amount", "refunded_amount", "fee", "total",
        "credit_limit", "floor", "below", "to", "keep_at_least", "auto_accept_up_to",
        "instalment_amount", "available",
    }
)  # fmt: skip
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")  # RFC 3339, as the API writes times
HASH_CHARS = 12  # hex digests and serials are shown by their start, like a git hash
WIDTH = 240


def describe(data: Any, currency: str | None, timezone: str | None, width: int = WIDTH) -> str:
    """One line for a person: keys in words, money with its decimals, times with their zone."""
    if isinstance(data, dict):
        text = _fields(data, currency, timezone, " · ")
    else:
        text = _shown("", data, currency, timezone)
    return text if len(text) <= width else text[: width - 1] + "…"


def raw(data: Any) -> str:
    """The entry's data as stored, for those who want the JSON."""
    return json.dumps(data, separators=(", ", ": "), ensure_ascii=False)


def _shown(key: str, value: Any, currency: str | None, timezone: str | None) -> str:
    if isinstance(value, dict):
        return f"({_fields(value, currency, timezone, ', ')})"
    if isinstance(value, list):
        return ", ".join(_shown(key, item, currency, timezone) for item in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and _is_money(key):
        return format_amount(value, currency)
    if isinstance(value, int) and key.endswith("_at"):
        return format_time(datetime.fromtimestamp(value, UTC), timezone)
    text = str(value)
    if isinstance(value, str) and ISO_TIME.match(value):
        try:
            return format_time(value, timezone)
        except ValueError:
            return text
    is_hex = len(text) >= 32 and all(c in "0123456789abcdef" for c in text)
    return text[:HASH_CHARS] + "…" if is_hex else text


def _fields(data: dict[str, Any], currency: str | None, timezone: str | None, sep: str) -> str:
    own = data.get("currency") if isinstance(data.get("currency"), str) else None
    money_here = any(_is_money(k) and isinstance(v, int) for k, v in data.items())
    parts = [
        f"{key.removesuffix('_minor').replace('_', ' ')} "
        + _shown(key, value, own or currency, timezone)
        for key, value in data.items()
        if value is not None and not (key == "currency" and money_here)
    ]
    return sep.join(parts)


def _is_money(key: str) -> bool:
    return key in MONEY or key.endswith("_minor")
