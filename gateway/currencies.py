"""Which currencies money may be held in: the active codes of ISO 4217 (contract section 8).

The codes come from the `iso4217` package, which ships ISO's current list (list one, so no
historic codes) and is released when ISO amends it. Fund codes (`IsFund`, e.g. BOV, CLF, USN)
are left out, and so is every code without minor units: the precious metals (XAU, XAG, XPD,
XPT), the test code XTS, "no currency" XXX and the accounting units (XDR, XBA...), none of which
a wallet could hold as integer minor units.
"""

from __future__ import annotations

import iso4217

NOT_MONEY = frozenset({"XAU", "XAG", "XPD", "XPT", "XTS", "XXX"})


def _fund_codes() -> frozenset[str]:
    funds = set()
    for entry in iso4217.raw_xml.iter("CcyNtry"):
        name, code = entry.find("CcyNm"), entry.find("Ccy")
        if name is not None and code is not None and name.get("IsFund") == "true":
            funds.add((code.text or "").strip())
    return frozenset(funds)


ACTIVE = (
    frozenset(
        currency.code
        for currency in iso4217.Currency
        if currency.exponent is not None and currency.code not in NOT_MONEY
    )
    - _fund_codes()
)


def is_active_currency(code: str) -> bool:
    """Whether `code` is an active ISO 4217 currency that money can be held in."""
    return code in ACTIVE


def minor_unit_digits(code: str) -> int | None:
    """ISO 4217's minor unit of `code`: 2 for EUR, 0 for JPY, 4 for UYW; `None` for a code
    ISO does not list or one without minor units (XAU)."""
    try:
        return iso4217.Currency(code).exponent
    except ValueError:
        return None
