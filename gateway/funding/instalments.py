"""Instalment offers and schedules, pure (contract section 8): the fee, the total, each
instalment's amount and due date, exactly as the contract computes them. No I/O, no clock.

`gateway.funding.offers` builds an offer's options from it, `gateway.funding.plans` a plan's
schedule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

_DAYS_PER_YEAR_X_BPS = 3_650_000  # 365 days x 10,000 basis points
_HALF = _DAYS_PER_YEAR_X_BPS // 2  # rounds halves up


@dataclass(frozen=True)
class Option:
    """One allowed count of an offer."""

    count: int
    instalment_amount_minor: int
    fee_minor: int
    total_minor: int
    first_due: datetime


@dataclass(frozen=True)
class Instalment:
    """Instalment `n` (from 1) of a plan: due `n` x interval after the plan opens."""

    n: int
    due: datetime
    amount_minor: int


def fee(amount_minor: int, apr_bps: int, count: int, interval_days: int) -> int:
    """⌊(amount × apr_bps × count × interval_days + 1,825,000) / 3,650,000⌋."""
    assert amount_minor >= 1 and 0 <= apr_bps <= 10_000 and count >= 1 and interval_days >= 1
    return (amount_minor * apr_bps * count * interval_days + _HALF) // _DAYS_PER_YEAR_X_BPS


def amounts(total_minor: int, count: int) -> list[int]:
    """Each instalment's amount: ⌊total / count⌋, the last taking the remainder."""
    assert count >= 1 and total_minor >= 1  # below `count`, the first instalments are 0
    each = total_minor // count
    return [each] * (count - 1) + [total_minor - (count - 1) * each]


def options(
    amount_minor: int,
    apr_bps: int,
    counts: Iterable[int],
    interval_days: int,
    line_available_minor: int,
    created_at: datetime,
) -> list[Option]:
    """One option per count (ascending) whose total the line's available amount covers."""
    first_due = created_at + timedelta(days=interval_days)
    found = []
    for count in sorted(counts):
        charged = fee(amount_minor, apr_bps, count, interval_days)
        total = amount_minor + charged
        if total <= line_available_minor:
            found.append(Option(count, total // count, charged, total, first_due))
    return found


def schedule(
    total_minor: int, count: int, interval_days: int, opened_at: datetime
) -> list[Instalment]:
    """A plan's instalments: n × interval_days after it opens, summing to its total."""
    return [
        Instalment(n, opened_at + timedelta(days=n * interval_days), amount)
        for n, amount in enumerate(amounts(total_minor, count), start=1)
    ]
