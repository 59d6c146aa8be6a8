"""How much an account may hold and have moved through it: pure, as `wallet.ledger`, which
re-exports these names.

A wallet's balance stays within what every JSON client reads exactly; every account's counters
stay within PostgreSQL's BIGINT (and SQLite's INTEGER, which would otherwise turn into a float).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wallet.ledger import Delta

# The most a wallet or balance source may hold, incoming holds included: the largest integer
# every JSON client reads exactly (balances over HTTP) and JCS writes exactly (the audit log).
MAX_BALANCE_MINOR = 2**53 - 1
UNBOUNDED_MINOR = 2**63 - 1  # BIGINT's largest: what an account may hold before a debit
# The most an account may ever have been debited (posted plus pending), and likewise credited:
# the counters are BIGINTs that only grow, and a period's spending (net of refunds) never
# exceeds its wallet's debits, so neither a counter nor a spending total can pass BIGINT.
# Pending counts with posted so that a capture, a void or an expiry never needs room.
MAX_TOTAL_MINOR = 2**63 - 1


def most_held_before(delta: Delta) -> int:
    """The most a wallet may hold (`holding_minor`) before `delta` so that it stays within
    MAX_BALANCE_MINOR; a delta that brings nothing in (a debit, a capture, a release) is never
    refused for it, so that money can always leave a wallet."""
    incoming = delta.credits_posted + delta.credits_pending - delta.debits_posted
    return MAX_BALANCE_MINOR - incoming if incoming > 0 else UNBOUNDED_MINOR


def most_totals_before(delta: Delta) -> tuple[int, int]:
    """The most an account's debits and its credits (each posted plus pending) may be before
    `delta` so that they stay within MAX_TOTAL_MINOR; a side the delta does not raise (a
    capture, a void, an expiry, an undo) is never refused for it."""
    debits = delta.debits_posted + delta.debits_pending
    credits = delta.credits_posted + delta.credits_pending
    return (
        MAX_TOTAL_MINOR - debits if debits > 0 else UNBOUNDED_MINOR,
        MAX_TOTAL_MINOR - credits if credits > 0 else UNBOUNDED_MINOR,
    )
