"""Accounts in SQL: opening and reading wallets, and moving money between two accounts.

Money moves with one conditional UPDATE per account, the two accounts of a transfer always in
the same order (sorted ids), so transfers in opposite directions cannot deadlock. A wallet's row
matches only while its available balance covers the transfer, so the check and the write are one
statement: PostgreSQL (READ COMMITTED) re-evaluates the condition on the newest row version after
waiting for the row lock, and SQLite writes are serialised by `BEGIN IMMEDIATE`. A move that
cannot be made undoes the account it already moved and returns None; `refusal` then says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row, bindparam, select, update

from wallet import ledger
from wallet.errors import CurrencyNotAllowed, WalletRefusal
from wallet.ledger import Account, Delta, TransferKind, Wallet
from wallet.prepared import Prepared, any_of, as_list, ignoring_duplicates
from wallet.schema import COUNTERS, accounts, utc

# One account of a transfer. A wallet's row matches only while its available balance is at least
# `p_need` and it holds (balance plus incoming holds) at most `p_most`, and any account only
# while its debits and credits (posted plus pending) are at most `p_debits` and `p_credits`
# (`ledger.most_totals_before`: no counter passes BIGINT), so the checks and the write are one
# statement; READ COMMITTED re-evaluates the condition on the newest row version once the row
# lock is granted. Each comparison subtracts, so none of them can overflow on its own.
_MOVE = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("p_id"),
        accounts.c.currency == bindparam("p_currency"),
        accounts.c.debits_posted
        <= bindparam("p_debits", type_=sa.BigInteger) - accounts.c.debits_pending,
        accounts.c.credits_posted
        <= bindparam("p_credits", type_=sa.BigInteger) - accounts.c.credits_pending,
        sa.or_(
            sa.not_(accounts.c.debits_must_not_exceed_credits),
            sa.and_(
                accounts.c.credits_posted - accounts.c.debits_posted - accounts.c.debits_pending
                >= bindparam("p_need", type_=sa.BigInteger),
                accounts.c.credits_posted - accounts.c.debits_posted + accounts.c.credits_pending
                <= bindparam("p_most", type_=sa.BigInteger),
            ),
        ),
    )
    .values(
        {name: accounts.c[name] + bindparam(f"p_{name}", type_=sa.BigInteger) for name in COUNTERS}
    )
    .returning(accounts.c.id, *(accounts.c[name] for name in COUNTERS), accounts.c.currency)
)
# Two statements on purpose: PostgreSQL may re-run a LIMIT subquery inside an UPDATE once per
_MOVE_FAST = Prepared({"*": _MOVE})
_INSERT_ACCOUNT = ignoring_duplicates(accounts, "id")


@dataclass(frozen=True)
class Moved:
    """A transfer applied to its accounts, kept so that it can be undone."""

    currency: str
    deltas: dict[str, Delta]
    rows: dict[str, tuple[Any, ...]]  # account id -> (id, *counters, currency) once moved


def open_wallet(conn: Connection, *, holder_id: str, currency: str, now: datetime) -> Wallet:
    """Open the holder's wallet in `currency` (and the currency's funding account); idempotent."""
    ledger.assert_id(holder_id)
    ledger.assert_currency(currency)
    ledger.assert_time(now)
    insert_account = _INSERT_ACCOUNT[conn.dialect.name]
    conn.execute(insert_account, _account_row(holder_id, "wallet", currency, now))
    wallet = get_wallet(conn, holder_id)
    assert wallet is not None
    if wallet.currency != currency:
        raise CurrencyNotAllowed(f"{holder_id} already has a {wallet.currency} wallet")
    conn.execute(
        insert_account, _account_row(ledger.funding_account_id(currency), "contra", currency, now)
    )
    return wallet


def get_wallet(conn: Connection, holder_id: str) -> Wallet | None:
    """The holder's wallet, or None."""
    row = conn.execute(
        select(accounts).where(accounts.c.id == holder_id, accounts.c.kind == "wallet")
    ).first()
    if row is None:
        return None
    account = _account(row)
    return Wallet(holder_id, account.currency, account.balance_minor, account.available_minor)


# Compiled once and run on the DBAPI cursor (every order batch runs it; Core's work costs more
# than running it on SQLite). Its columns need no result processing.
_WALLET_COLUMNS = ("id", "currency", "debits_must_not_exceed_credits", *COUNTERS)
_WALLETS_IN = Prepared(
    {
        dialect: sa.text(
            f"SELECT {', '.join(_WALLET_COLUMNS)} FROM wallet_accounts"
            f" WHERE {where} AND kind = 'wallet'"
        )
        for dialect, where in any_of("id", "ids").items()
    }
)


def get_wallets(conn: Connection, holder_ids: Iterable[str]) -> dict[str, Wallet]:
    """The wallets of these holders that exist, in one query."""
    return get_wallets_later(conn, holder_ids)()


def get_wallets_later(
    conn: Connection, holder_ids: Iterable[str]
) -> Callable[[], dict[str, Wallet]]:
    """`get_wallets`, read later: inside `wallet.prepared.pipelined` on PostgreSQL the query is
    only queued, and the wallets are there once the block has ended."""
    ids = sorted(set(holder_ids))
    if not ids:
        return dict
    rows = _WALLETS_IN.later(conn, {"ids": as_list(conn, ids)})

    def wallets() -> dict[str, Wallet]:
        found = {}
        for account_id, currency, no_overdraft, *counters in rows():
            account = Account(account_id, currency, bool(no_overdraft), *counters)  # as _account
            found[account_id] = Wallet(
                account_id, account.currency, account.balance_minor, account.available_minor
            )
        return found

    return wallets


def move(
    conn: Connection,
    kind: TransferKind,
    debit_id: str,
    credit_id: str,
    currency: str,
    amount_minor: int,
    held_minor: int = 0,
    floor_minor: int = 0,
) -> Moved | None:
    """Apply a transfer to both accounts, or to neither (returns None).

    One single-row UPDATE per account, always in the same order (sorted ids), so that transfers
    in opposite directions cannot deadlock: a single UPDATE of both rows locks them in whatever
    order its plan scans them, and re-locking an old row version inside one statement can
    deadlock against waiters queued on it. `floor_minor`: what the debited account must keep.
    """
    debit, credit = ledger.transfer_deltas(kind, amount_minor, held_minor)
    moved = Moved(currency, {debit_id: debit, credit_id: credit}, {})
    for account_id in sorted(moved.deltas):
        delta = moved.deltas[account_id]
        need = ledger.required_available(delta) + floor_minor if account_id == debit_id else 0
        row = _MOVE_FAST.rows(
            conn,
            {
                "p_id": account_id,
                "p_currency": currency,
                "p_need": need,
                **_room(delta),
            },
        )
        if not row:
            undo(conn, moved)
            return None
        moved.rows[account_id] = row[0]
    return moved


def apply_totals_later(
    conn: Connection, totals: dict[str, Delta], needs: dict[str, int], currencies: dict[str, str]
) -> Callable[[], bool]:
    """Apply each account's summed delta with one update each, in id order (as `move`): a
    debited account must have `needs[id]` available first, a credited wallet room for its sum.
    Whether every account took its own, read later: inside `wallet.prepared.pipelined` on
    PostgreSQL the updates are only queued, and the answer is there once the block has ended.
    False when one refuses (what was applied stays: the caller rolls back)."""
    moves = [
        _MOVE_FAST.later(
            conn,
            {
                "p_id": account_id,
                "p_currency": currencies[account_id],
                "p_need": needs.get(account_id, 0),
                **_room(totals[account_id]),
            },
        )
        for account_id in sorted(totals)
    ]
    return lambda: all([bool(move()) for move in moves])  # every cursor read and closed


def undo(conn: Connection, moved: Moved) -> None:
    """Put back what `move` did (when a later step of the same operation is refused)."""
    for account_id in moved.rows:
        back = -moved.deltas[account_id]
        _MOVE_FAST.rows(
            conn,
            {
                "p_id": account_id,
                "p_currency": moved.currency,
                "p_need": 0,
                **_room(back),
                "p_most": ledger.UNBOUNDED_MINOR,  # back to what it held: never refused
            },
        )


def refusal(
    conn: Connection, account_ids: list[str], currency: str, debit_id: str, need_minor: int
) -> WalletRefusal:
    """Why a move of `need_minor` out of `debit_id` matched no row: the refusal to raise."""
    found = {
        row.id: _account(row)
        for row in conn.execute(select(accounts).where(accounts.c.id.in_(account_ids)))
    }
    return ledger.explain_refused_move(
        [(account_id, found.get(account_id)) for account_id in account_ids],
        currency,
        debit_id,
        need_minor,
    )


def _room(delta: Delta) -> dict[str, int]:
    """The conditions' bounds for `delta` (what the account may hold before it) and its counts."""
    debits, credits = ledger.most_totals_before(delta)
    return {
        "p_most": ledger.most_held_before(delta),
        "p_debits": debits,
        "p_credits": credits,
        **{f"p_{n}": getattr(delta, n) for n in COUNTERS},
    }


def _account_row(account_id: str, kind: str, currency: str, now: datetime) -> dict[str, Any]:
    return {
        "id": account_id,
        "kind": kind,
        "currency": currency,
        "debits_must_not_exceed_credits": kind == "wallet",
        "created_at": utc(now),
        **dict.fromkeys(COUNTERS, 0),
    }


def _account(row: Row[Any]) -> Account:
    return Account(
        row.id,
        row.currency,
        bool(row.debits_must_not_exceed_credits),
        *(getattr(row, name) for name in COUNTERS),
    )
