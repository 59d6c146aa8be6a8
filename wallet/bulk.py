"""Pays and holds of one batch written at once: a few statements a batch, not four a payment.

The caller has decided every payment already (the payers' funds checked against their locked
wallets), so the moves are summed per account and each account is updated once, under the
same condition as a single move (a wallet keeps enough available for the batch's debits out
of it). When that condition fails for any account, nothing tells which payment to refuse:
`place_in_bulk` returns False, the caller rolls the transaction back and places the payments
one by one (`wallet.payments.place`), which refuses exactly the ones that do not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection

from wallet import journal, ledger
from wallet.accounts import apply_totals_later
from wallet.ledger import Delta, PaymentRequest, TransferKind
from wallet.payments import insert_payments
from wallet.prepared import pipelined


def place_in_bulk(conn: Connection, requests: Sequence[PaymentRequest], now: datetime) -> bool:
    """Move the payments' money, then insert them and append their journal rows; False (with
    the transaction to roll back) when an account refuses its total."""
    with pipelined(conn):
        moved = move_in_bulk(conn, requests, now)
    if not moved():
        return False
    with pipelined(conn):  # one round trip on PostgreSQL; the same transaction either way
        record_in_bulk(conn, requests, now)
    return True


def move_in_bulk(
    conn: Connection, requests: Sequence[PaymentRequest], now: datetime
) -> Callable[[], bool]:
    """The first half of `place_in_bulk`: each account's summed move; whether every account
    took its own, read later (inside `pipelined`, once the block has ended)."""
    if not requests:
        return lambda: True
    totals: dict[str, Delta] = {}
    needs: dict[str, int] = {}
    currencies: dict[str, str] = {}
    for request in requests:
        assert request.expires_at is None or request.expires_at > now, "a new hold"
        kind = TransferKind(request.type.value)
        debit, credit = ledger.transfer_deltas(kind, request.amount_minor)
        for account_id, delta in ((request.payer_id, debit), (request.payee_id, credit)):
            totals[account_id] = _sum(totals.get(account_id), delta)
            currencies[account_id] = request.currency
        needs[request.payer_id] = needs.get(request.payer_id, 0) + ledger.required_available(debit)
    if not _one_currency_each(requests):
        return lambda: False
    return apply_totals_later(conn, totals, needs, currencies)


def record_in_bulk(conn: Connection, requests: Sequence[PaymentRequest], now: datetime) -> None:
    """The second half of `place_in_bulk`, once the moves are in: the payments' rows and their
    journal rows."""
    if requests:
        insert_payments(conn, requests, now)
        journal.append_all(conn, [journal.payment_entry(request, now) for request in requests])


def _sum(total: Delta | None, delta: Delta) -> Delta:
    if total is None:
        return delta
    return Delta(
        total.debits_posted + delta.debits_posted,
        total.credits_posted + delta.credits_posted,
        total.debits_pending + delta.debits_pending,
        total.credits_pending + delta.credits_pending,
    )


def _one_currency_each(requests: Sequence[PaymentRequest]) -> bool:
    """Whether every account moves in one currency only in this batch."""
    seen: dict[str, str] = {}
    for r in requests:
        for account_id in (r.payer_id, r.payee_id):
            if seen.setdefault(account_id, r.currency) != r.currency:
                return False
    return True
