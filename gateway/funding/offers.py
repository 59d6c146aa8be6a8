"""Instalment offers, pure (contract section 8): whether a pay gets one, what it offers, and
whether the owner agreed to it in advance. No I/O, no clock: `gateway.funding.conversion` reads
the policy, the credit line and the balances, and passes them in.

An offer applies to a pay (never a hold) within the policy's amounts and categories, in the
credit line's currency, that the wallet and automatic top-ups could cover only by leaving the
owner's balances strictly below `keep_at_least`, or could not cover at all; it holds one option
per allowed count whose total the line's available covers, and none applies without one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.funding.instalments import Option, options


@dataclass(frozen=True)
class Policy:
    """An owner's instalment policy, as stored."""

    owner_id: str
    source_id: str
    min_amount_minor: int
    max_amount_minor: int
    counts: tuple[int, ...]
    interval_days: int
    keep_at_least_minor: int
    categories: frozenset[str] | None  # None: every category
    auto_accept_up_to_minor: int


@dataclass(frozen=True)
class Offer:
    """What an approval offers: the line, its terms, and the options the line can cover."""

    source_id: str
    apr_bps: int
    interval_days: int
    options: tuple[Option, ...]

    def option(self, count: int) -> Option | None:
        """The option for `count`, or None when it was not offered."""
        return next((o for o in self.options if o.count == count), None)


@dataclass(frozen=True)
class Terms:
    """The terms a plan opens on: the offer's line, APR and interval, and the chosen count."""

    source_id: str
    count: int
    apr_bps: int
    interval_days: int


def policy_from_row(row: Mapping[str, Any]) -> Policy:
    """A policy from its `instalment_policies` row."""
    categories = row["categories_json"]
    return Policy(
        owner_id=row["owner_id"],
        source_id=row["source_id"],
        min_amount_minor=row["min_amount_minor"],
        max_amount_minor=row["max_amount_minor"],
        counts=tuple(json.loads(row["counts_json"])),
        interval_days=row["interval_days"],
        keep_at_least_minor=row["keep_at_least_minor"],
        categories=None if categories is None else frozenset(json.loads(categories)),
        auto_accept_up_to_minor=row["auto_accept_up_to_minor"],
    )


def eligible(
    policy: Policy,
    *,
    is_pay: bool,
    amount_minor: int,
    currency: str,
    category: str,
    line_currency: str,
) -> bool:
    """A pay within the policy's amounts and categories, in the credit line's currency."""
    return (
        is_pay
        and policy.min_amount_minor <= amount_minor <= policy.max_amount_minor
        and (policy.categories is None or category in policy.categories)
        and currency == line_currency
    )


def keeps_too_little(
    wallet_balance_minor: int,
    source_balances_minor: Iterable[int],
    amount_minor: int,
    keep_at_least_minor: int,
) -> bool:
    """Paying would leave the owner's balances (the wallet's and every balance source's of its
    currency, less the amount; floors and holds not subtracted) strictly below `keep_at_least`."""
    left = wallet_balance_minor + sum(source_balances_minor) - amount_minor
    return left < keep_at_least_minor


def make_offer(
    policy: Policy,
    amount_minor: int,
    apr_bps: int,
    line_available_minor: int,
    created_at: datetime,
) -> Offer | None:
    """The offer for an eligible pay: one option per count whose total the line covers; None
    when the line covers none (then no offer applies)."""
    found = options(
        amount_minor,
        apr_bps,
        policy.counts,
        policy.interval_days,
        line_available_minor,
        created_at,
    )
    if not found:
        return None
    return Offer(policy.source_id, apr_bps, policy.interval_days, tuple(found))


def accepted_in_advance(
    policy: Policy, offer: Offer, amount_minor: int, *, step5_asks: bool
) -> Terms | None:
    """The terms when the owner agreed in advance: the amount is at most `auto_accept_up_to`,
    step 5 would not ask for approval anyway, and the line covers the smallest count's total."""
    if amount_minor > policy.auto_accept_up_to_minor or step5_asks:
        return None
    smallest = offer.option(min(policy.counts))
    if smallest is None:
        return None
    return Terms(offer.source_id, smallest.count, offer.apr_bps, offer.interval_days)


def withdrawn(policy: Policy | None, source_id: str) -> bool:
    """The policy behind an offer on the line `source_id` was deleted, or names another since."""
    return policy is None or policy.source_id != source_id


def offer_to_json(offer: Offer) -> dict[str, Any]:
    """The approval's `offer` as the API shows it (`first_due` RFC 3339, UTC)."""
    return {
        "source": offer.source_id,
        "apr_bps": offer.apr_bps,
        "interval_days": offer.interval_days,
        "options": [
            {
                "count": o.count,
                "instalment_amount": o.instalment_amount_minor,
                "fee": o.fee_minor,
                "total": o.total_minor,
                "first_due": o.first_due.isoformat(),
            }
            for o in offer.options
        ],
    }


def offer_from_json(body: Mapping[str, Any]) -> Offer:
    """An offer as stored with its approval (`offer_to_json`)."""
    return Offer(
        body["source"],
        body["apr_bps"],
        body["interval_days"],
        tuple(
            Option(
                o["count"],
                o["instalment_amount"],
                o["fee"],
                o["total"],
                datetime.fromisoformat(o["first_due"]),
            )
            for o in body["options"]
        ),
    )
