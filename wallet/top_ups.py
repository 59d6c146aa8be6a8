"""Top-ups in SQL: credit a wallet from its currency's funding account, once per key.

The first answer is stored with its key (`wallet_top_ups`), so the same key and request again
returns it and moves nothing, and the same key with another request is refused. 4 statements.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from wallet import journal, ledger
from wallet.accounts import move, refusal, undo
from wallet.errors import CurrencyNotAllowed, IdempotencyConflict, WalletNotFound
from wallet.ledger import TopUpResult, TransferKind
from wallet.prepared import ignoring_duplicates
from wallet.schema import top_ups, utc

_INSERT_TOP_UP = ignoring_duplicates(top_ups, "holder_id", "idempotency_key")


def top_up(
    conn: Connection,
    *,
    holder_id: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    now: datetime,
) -> TopUpResult:
    """Credit the wallet from its currency's funding account, once per (holder, key)."""
    ledger.assert_id(holder_id)
    ledger.assert_id(idempotency_key)
    ledger.assert_amount(amount_minor)
    ledger.assert_time(now)
    fingerprint = ledger.top_up_fingerprint(amount_minor, currency)
    funding_id = ledger.funding_account_id(currency)
    moved = move(conn, TransferKind.TOP_UP, funding_id, holder_id, currency, amount_minor)
    if moved is None:
        refused = refusal(conn, [holder_id, funding_id], currency, funding_id, amount_minor)
        if isinstance(refused, CurrencyNotAllowed | WalletNotFound):
            raise refused  # what the request is checked for first, a reused key or not (422)
        earlier = _earlier_top_up(conn, holder_id, idempotency_key, fingerprint)
        if earlier is not None:
            return earlier
        raise refused
    _, debits_posted, credits_posted, debits_pending, *_ = moved.rows[holder_id]
    balance_minor = credits_posted - debits_posted
    result = TopUpResult(
        holder_id, currency, amount_minor, balance_minor, balance_minor - debits_pending
    )
    recorded = conn.execute(
        _INSERT_TOP_UP[conn.dialect.name],
        {
            "holder_id": holder_id,
            "idempotency_key": idempotency_key,
            "request_sha256": fingerprint,
            "amount_minor": amount_minor,
            "currency": currency,
            "balance_minor": result.balance_minor,
            "available_minor": result.available_minor,
            "created_at": utc(now),
        },
    ).first()
    if recorded is None:  # the key was used before, perhaps by a concurrent transaction
        undo(conn, moved)
        earlier = _earlier_top_up(conn, holder_id, idempotency_key, fingerprint)
        assert earlier is not None
        return earlier
    journal.append(
        conn,
        journal.entry(
            TransferKind.TOP_UP,
            funding_id,
            holder_id,
            amount_minor,
            currency,
            now,
            idempotency_key=idempotency_key,
        ),
    )
    return result


def replayed_top_up(
    conn: Connection, *, holder_id: str, amount_minor: int, currency: str, idempotency_key: str
) -> TopUpResult | None:
    """The first answer to this (holder, key) when the request is the same, None when the key
    is new; IdempotencyConflict when it was used for another request. Moves nothing."""
    fingerprint = ledger.top_up_fingerprint(amount_minor, currency)
    return _earlier_top_up(conn, holder_id, idempotency_key, fingerprint)


def _earlier_top_up(
    conn: Connection, holder_id: str, idempotency_key: str, fingerprint: str
) -> TopUpResult | None:
    row = conn.execute(
        select(top_ups).where(
            top_ups.c.holder_id == holder_id,
            top_ups.c.idempotency_key == idempotency_key,
        )
    ).first()
    if row is None:
        return None
    if row.request_sha256 != fingerprint:
        raise IdempotencyConflict(f"top-up key {idempotency_key} was used for another request")
    return TopUpResult(
        holder_id,
        row.currency,
        row.amount_minor,
        row.balance_minor,
        row.available_minor,
        replayed=True,
    )
