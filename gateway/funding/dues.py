"""What a plan owes and who pays it, pure (contract section 8): which balance sources cover a
collection, a plan's status from its instalments', and when an overdue one is tried again.

No I/O and no clock: `gateway.funding.collect` reads the sources and moves the money.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from gateway.funding.plan import Draw

ACTIVE, REPAID, OVERDUE = "active", "repaid", "overdue"
SCHEDULED, PAID = "scheduled", "paid"
RETRY_EVERY = timedelta(days=1)


def cover(amount_minor: int, offered: Iterable[tuple[str, int]]) -> list[Draw] | None:
    """Draws from (source id, available) in draw order that make up exactly `amount_minor`,
    each source giving what it can; None when together they cannot (all or nothing). An
    instalment of 0 (a total below its count) needs no draw."""
    assert amount_minor >= 0
    if amount_minor == 0:
        return []
    draws: list[Draw] = []
    left = amount_minor
    for source_id, can in offered:
        take = min(can, left)
        if take > 0:
            draws.append(Draw(source_id, take))
            left -= take
        if left == 0:
            return draws
    return None


def plan_status(instalment_statuses: Iterable[str]) -> str:
    """`repaid` when every instalment is paid, `overdue` while one is, else `active`."""
    statuses = list(instalment_statuses)
    if all(s == PAID for s in statuses):
        return REPAID
    return OVERDUE if OVERDUE in statuses else ACTIVE


def next_try(tried_at: datetime, next_try_at: datetime) -> datetime:
    """An instalment that could not be collected is tried again a day later (and never at or
    before the time it was just tried, however late the collector ran)."""
    later = next_try_at + RETRY_EVERY
    while later <= tried_at:
        later += RETRY_EVERY
    return later


def collection_id(plan_id: str, ns: Iterable[int]) -> str:
    """The key of one collection: the plan and the instalments it pays (`repay` when several)."""
    numbers = sorted(ns)
    assert numbers
    return f"{plan_id}.{numbers[0]}" if len(numbers) == 1 else f"{plan_id}.repay{numbers[0]}"
