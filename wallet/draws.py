"""Funding sources' accounts in SQL: opening them, reading them, and drawing on them.

A balance source is a `wallet` account (it cannot overdraw, and its owner's top-ups are the
ledger's ordinary keyed top-ups); a credit line is a `contra` account whose balance is minus what
is owed on it. A draw moves money from a balance source into a wallet for one payment, and the
debit matches only while the source keeps at least its floor afterwards (one conditional UPDATE,
as `wallet.accounts.move`), so concurrent draws never take a source below its floor.

A plan paid by instalments (`lend`) moves its payment's amount from a credit line into the
wallet and its fee to the fee account; the line's debit matches only while what it owes stays
within its limit. A collection (`collect`) moves an instalment from a balance source back to the
line, keyed so that the same collection can never move twice from one source.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, bindparam, select, update

from wallet import journal, ledger
from wallet.accounts import _INSERT_ACCOUNT, _account_row, move
from wallet.errors import TotalsOverLimit
from wallet.ledger import TransferKind
from wallet.schema import accounts

# A credit line owes more only while what it owes afterwards stays within its limit, and its
# debits (as every account's credits) only while they stay within the ledger's largest total
# (`p_most`: `ledger.MAX_TOTAL_MINOR` less the amount; UNBOUNDED_MINOR to take one back).
_OWE = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("p_id"),
        accounts.c.currency == bindparam("p_currency"),
        accounts.c.kind == "contra",
        accounts.c.credits_posted - accounts.c.debits_posted - bindparam("p_amount")
        >= -bindparam("p_limit", type_=sa.BigInteger),
        accounts.c.debits_posted
        <= bindparam("p_most", type_=sa.BigInteger) - accounts.c.debits_pending,
    )
    .values(debits_posted=accounts.c.debits_posted + bindparam("p_amount", type_=sa.BigInteger))
    .returning(accounts.c.id)
)
_CREDIT = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("p_id"),
        accounts.c.currency == bindparam("p_currency"),
        accounts.c.credits_posted
        <= bindparam("p_most", type_=sa.BigInteger) - accounts.c.credits_pending,
    )
    .values(credits_posted=accounts.c.credits_posted + bindparam("p_amount", type_=sa.BigInteger))
    .returning(accounts.c.id)
)


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
    return _move_and_record(
        conn,
        TransferKind.DRAW,
        source_id,
        wallet_id,
        currency,
        amount_minor,
        floor_minor,
        now,
        payment_id=payment_id,
    )


def lend(
    conn: Connection,
    *,
    line_id: str,
    limit_minor: int,
    wallet_id: str,
    currency: str,
    amount_minor: int,
    fee_minor: int,
    payment_id: str,
    now: datetime,
) -> bool:
    """Move a plan's amount from a credit line into a wallet and its fee to the currency's fee
    account (opened on first use), keeping what the line owes within `limit_minor`; False (and
    nothing moved) when the line cannot. Raises `TotalsOverLimit` (having moved nothing) when
    an account's debits or credits would pass `ledger.MAX_TOTAL_MINOR`."""
    ledger.assert_amount(amount_minor)
    assert fee_minor >= 0 and limit_minor >= 1
    owed = {"p_id": line_id, "p_currency": currency, "p_limit": limit_minor}
    total = amount_minor + fee_minor
    if not conn.execute(_OWE, {**owed, "p_amount": total, "p_most": _most(total)}).first():
        if _debits_full(conn, line_id, total):
            raise TotalsOverLimit(f"{line_id}'s debits would pass {ledger.MAX_TOTAL_MINOR}")
        return False
    fees_id = ledger.fee_account_id(currency)
    legs = [(TransferKind.LEND, wallet_id, amount_minor), (TransferKind.FEE, fees_id, fee_minor)]
    if fee_minor:
        conn.execute(
            _INSERT_ACCOUNT[conn.dialect.name], _account_row(fees_id, "wallet", currency, now)
        )
    credited: list[tuple[str, int]] = []
    for _kind, credit_id, moved in legs:
        if not moved:
            continue
        if not _credit(conn, credit_id, currency, moved, _most(moved)):
            for earlier_id, earlier in credited:  # take back what this lend moved
                _credit(conn, earlier_id, currency, -earlier, ledger.UNBOUNDED_MINOR)
            back = {**owed, "p_amount": -total, "p_most": ledger.UNBOUNDED_MINOR}
            assert conn.execute(_OWE, back).first() is not None
            raise TotalsOverLimit(f"{credit_id}'s credits would pass {ledger.MAX_TOTAL_MINOR}")
        credited.append((credit_id, moved))
    for kind, credit_id, moved in legs:
        if moved:
            journal.append(
                conn,
                journal.entry(
                    kind, line_id, credit_id, moved, currency, now, payment_id=payment_id
                ),
            )
    return True


def _most(amount_minor: int) -> int:
    return ledger.MAX_TOTAL_MINOR - amount_minor


def _credit(conn: Connection, account_id: str, currency: str, amount: int, most: int) -> bool:
    """Add `amount` to an account's posted credits while they stay within `most` before it."""
    params = {"p_id": account_id, "p_currency": currency, "p_amount": amount, "p_most": most}
    return conn.execute(_CREDIT, params).first() is not None


def _debits_full(conn: Connection, account_id: str, amount_minor: int) -> bool:
    """Whether `amount_minor` more would take the account's debits past the largest total."""
    query = select(accounts.c.debits_posted, accounts.c.debits_pending)
    row = conn.execute(query.where(accounts.c.id == account_id)).first()
    return row is not None and row[0] + row[1] > ledger.MAX_TOTAL_MINOR - amount_minor


def collect(
    conn: Connection,
    *,
    source_id: str,
    line_id: str,
    currency: str,
    amount_minor: int,
    floor_minor: int,
    payment_id: str,
    collection_id: str,
    now: datetime,
) -> bool:
    """Move part of a collection from a balance source to the credit line it repays, keeping the
    source at or above `floor_minor`; False (and nothing moved) when the source cannot."""
    ledger.assert_amount(amount_minor)
    ledger.assert_id(collection_id)
    return _move_and_record(
        conn,
        TransferKind.COLLECT,
        source_id,
        line_id,
        currency,
        amount_minor,
        floor_minor,
        now,
        payment_id=payment_id,
        idempotency_key=collection_id,
    )


def _move_and_record(
    conn: Connection,
    kind: TransferKind,
    debit_id: str,
    credit_id: str,
    currency: str,
    amount_minor: int,
    floor_minor: int,
    now: datetime,
    *,
    payment_id: str,
    idempotency_key: str | None = None,
) -> bool:
    """Move `amount_minor` from `debit_id` to `credit_id`, keeping the debit account at or above
    `floor_minor`, and journal it; False (and nothing moved or journalled) when it cannot."""
    moved = move(conn, kind, debit_id, credit_id, currency, amount_minor, floor_minor=floor_minor)
    if moved is None:
        return False
    row = journal.entry(
        kind,
        debit_id,
        credit_id,
        amount_minor,
        currency,
        now,
        payment_id=payment_id,
        idempotency_key=idempotency_key,
    )
    journal.append(conn, row)
    return True
