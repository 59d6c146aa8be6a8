"""Funding sources and automatic top-ups, pure: what a source has available, the order sources
are drawn on, and how much each one moves into a wallet for a payment (contract section 8).

No I/O and no clock: the store reads the sources, `gateway.funding.auto` applies the plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.consent.rules import AutoTopUp

BALANCE = "balance"
CREDIT_LINE = "credit_line"


@dataclass(frozen=True)
class Source:
    """A funding source with its ledger balance (a credit line's is minus what is owed)."""

    id: str
    owner_id: str
    name: str
    kind: str
    currency: str
    priority: int
    seq: int  # creation order: sources of equal priority are drawn on in it
    floor_minor: int
    credit_limit_minor: int | None
    apr_bps: int | None
    balance_minor: int


@dataclass(frozen=True)
class Draw:
    """What one source moves into the wallet for one payment."""

    source_id: str
    amount_minor: int


def available(source: Source) -> int:
    """A balance source's balance above its floor (never below 0); a line's limit less owed."""
    if source.kind == CREDIT_LINE:
        assert source.credit_limit_minor is not None
        return source.credit_limit_minor + source.balance_minor
    return max(0, source.balance_minor - source.floor_minor)


def draw_order(sources: Iterable[Source]) -> list[Source]:
    """Sources in the order they are drawn on: priority (lower first), then creation."""
    return sorted(sources, key=lambda s: (s.priority, s.seq))


def wanted(wallet_available: int, amount_minor: int, auto: AutoTopUp | None) -> tuple[int, int]:
    """(the least, the most) automatic top-ups should add for this payment: the least covers
    the payment, the most brings `available` after it up to `to`; (0, 0) when none is due."""
    short = max(0, amount_minor - wallet_available)
    after = wallet_available - amount_minor
    if auto is None or (short == 0 and after >= auto.below_minor):
        return short, short if auto is not None else 0
    return short, auto.to_minor - after


def plan(
    wallet_available: int,
    amount_minor: int,
    auto: AutoTopUp | None,
    sources: Iterable[tuple[str, int]],
) -> list[Draw] | None:
    """The draws for a payment from (source id, available) in draw order: up to what `wanted`
    says at most, each source giving what it can; None when they cannot cover the payment."""
    least, most = wanted(wallet_available, amount_minor, auto)
    draws: list[Draw] = []
    total = 0
    for source_id, can in sources:
        take = min(can, most - total)
        if take <= 0:
            continue
        draws.append(Draw(source_id, take))
        total += take
    if total < least:
        return None
    return draws
