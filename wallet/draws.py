"""Funding sources' accounts in SQL: opening them, reading them, and drawing on them.

A balance source is a `wallet` account (it cannot overdraw, and its owner's top-ups are the
ledger's ordinary keyed top-ups); a credit line is a `contra` account whose balance is minus what
is owed on it. A draw moves money from a balance source into a wallet for one payment, and the
debit matches only while the source keeps at least its floor afterwards (one conditional UPDATE,
as `wallet.accounts.move`), so concurrent draws never take a source below its floor.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, select

from wallet import journal, ledger
from wallet.accounts import _INSERT_ACCOUNT, _account_row, move
from wallet.ledger import TransferKind
from wallet.schema import accounts


def open_credit_account(conn: Connection, *, account_id: str, currency: str, now: datetime) -> None:
    """Open a credit line's account (it may go below zero; its limit is the gateway's rule)."""
    ledger.assert_id(account_id)
    ledger.assert_currency(currency)
    conn.execute(
        _INSERT_ACCOUNT[conn.dialect.name], _account_row(account_id, "contra", currency, now)
    )


def balances(conn: Connection, account_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(posted balance, pending debits) of each of these accounts that exists, in one query."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    query = select(
        accounts.c.id,
        accounts.c.credits_posted - accounts.c.debits_posted,
        accounts.c.debits_pending,
    ).where(accounts.c.id.in_(ids))
    return {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(query)}


def draw(
    conn: Connection,
    *,
    source_id: str,
    wallet_id: str,
    currency: str,
    amount_minor: int,
    floor_minor: int,
    payment_id: str,
    now: datetime,
) -> bool:
    """Move `amount_minor` from a balance source into a wallet for `payment_id`, keeping the
    source at or above `floor_minor`; False (and nothing moved) when the source cannot."""
    ledger.assert_amount(amount_minor)
    assert floor_minor >= 0
    moved = move(
        conn,
        TransferKind.DRAW,
        source_id,
        wallet_id,
        currency,
        amount_minor,
        floor_minor=floor_minor,
    )
    if moved is None:
        return False
    journal.append(
        conn,
        journal.entry(
            TransferKind.DRAW,
            source_id,
            wallet_id,
            amount_minor,
            currency,
            now,
            payment_id=payment_id,
        ),
    )
    return True
