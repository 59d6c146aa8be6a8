"""Pays and holds in SQL: the payment row, the move between payer and payee, the journal row.

A pay or hold takes 4 statements (insert the payment, two accounts, append to the journal; 3 in
a batch, whose journal rows go in at once). The payment row goes first, so that a replay is told
apart before any account is locked; a refusal deletes it again, leaving the transaction as it
found it, so the caller may commit its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row, bindparam, select

from wallet import journal, ledger
from wallet.accounts import move, refusal
from wallet.errors import WalletRefusal
from wallet.ledger import Payment, PaymentRequest, PaymentStatus, PaymentType, TransferKind
from wallet.prepared import Prepared, ignoring_duplicates, insert_many
from wallet.schema import aware, payments, utc

_PAYMENT_KEYS = (
    "payment_id",
    "order_id",
    "payer_id",
    "payee_id",
    "type",
    "amount_minor",
    "captured_amount_minor",
    "refunded_amount_minor",
    "status",
    "currency",
    "created_at",
    "expires_at",
)
_DELETE_PAYMENT = Prepared(
    {"*": sa.delete(payments).where(payments.c.payment_id == bindparam("p_payment_id"))}
)
_INSERT_PAYMENT = Prepared(ignoring_duplicates(payments, "payment_id"), _PAYMENT_KEYS)


def pay(
    conn: Connection,
    *,
    payer_id: str,
    payee_id: str,
    amount_minor: int,
    currency: str,
    payment_id: str,
    order_id: str,
    now: datetime,
) -> Payment:
    """Move money from payer to payee now; the same payment id and request again moves nothing."""
    request = PaymentRequest(
        PaymentType.PAY, payment_id, order_id, payer_id, payee_id, amount_minor, currency
    )
    return place(conn, request, now)


def hold(
    conn: Connection,
    *,
    payer_id: str,
    payee_id: str,
    amount_minor: int,
    currency: str,
    payment_id: str,
    order_id: str,
    expires_at: datetime,
    now: datetime,
) -> Payment:
    """Reserve money for the payee until `expires_at`: available drops, balance does not."""
    request = PaymentRequest(
        PaymentType.HOLD,
        payment_id,
        order_id,
        payer_id,
        payee_id,
        amount_minor,
        currency,
        expires_at,
    )
    return place(conn, request, now)


def place(conn: Connection, request: PaymentRequest, now: datetime) -> Payment:
    """Carry out a pay or hold request (see `pay` and `hold`)."""
    entries: list[dict[str, Any]] = []
    payment = _place(conn, request, now, entries)
    if entries:
        journal.append(conn, entries[0])
    return payment


def _place(
    conn: Connection, request: PaymentRequest, now: datetime, entries: list[dict[str, Any]]
) -> Payment:
    """`place`, leaving the journal row to append to `entries` (batches insert them at once)."""
    payment = ledger.open_payment(request, now)
    payment = replace(
        payment,
        created_at=utc(payment.created_at),
        expires_at=None if request.expires_at is None else utc(request.expires_at),
    )
    if request.expires_at is not None and request.expires_at <= now:
        earlier = get_payment(conn, request.payment_id)  # a replay, after the hold expired
        assert earlier is not None, "a new hold must expire in the future"
        return ledger.replay(earlier, request)
    # The payment row goes first: a replay is told apart before any account is locked, and the
    # accounts stay locked only for the journal insert and the commit that follow the move.
    if not _INSERT_PAYMENT.rows(conn, _payment_row(payment)):  # a known id, maybe concurrently
        earlier = get_payment(conn, request.payment_id)
        assert earlier is not None
        return ledger.replay(earlier, request)
    kind = TransferKind(request.type.value)
    payer_id, payee_id = request.payer_id, request.payee_id
    moved = move(conn, kind, payer_id, payee_id, request.currency, request.amount_minor)
    if moved is None:
        _DELETE_PAYMENT.rows(conn, {"p_payment_id": request.payment_id})  # inserted just above
        raise refusal(
            conn,
            [request.payer_id, request.payee_id],
            request.currency,
            request.payer_id,
            request.amount_minor,
        )
    entries.append(journal.payment_entry(request, now))
    return payment


def insert_payments(conn: Connection, requests: Sequence[PaymentRequest], now: datetime) -> None:
    """Insert new payments' rows in one statement (their ids must be new)."""
    rows = [_payment_row(ledger.open_payment(request, now)) for request in requests]
    insert_many(conn, payments, rows)  # _payment_row stores its times in UTC


def place_payments(
    conn: Connection, requests: Sequence[PaymentRequest], now: datetime
) -> list[Payment | WalletRefusal]:
    """Carry out many pay and hold requests in the caller's one transaction (group commit).

    A refusal is returned in its request's place and leaves nothing behind, so the rest commit.
    The journal rows go in with one multi-row INSERT at the end: 2 statements a payment, plus 1.
    """
    results: list[Payment | WalletRefusal] = []
    entries: list[dict[str, Any]] = []
    for request in requests:
        try:
            results.append(_place(conn, request, now, entries))
        except WalletRefusal as refused:
            results.append(refused)
    journal.append_all(conn, entries)
    return results


def get_payment(conn: Connection, payment_id: str, *, lock: bool = False) -> Payment | None:
    """The payment, or None; `lock`: its row locked until the transaction ends (PostgreSQL;
    SQLite's write transaction holds the whole database)."""
    query = select(payments).where(payments.c.payment_id == payment_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else payment_from_row(row)


def list_payments(conn: Connection, holder_id: str, limit: int = 50) -> list[Payment]:
    """The holder's payments as payer or payee, newest first."""
    rows = conn.execute(
        select(payments)
        .where(sa.or_(payments.c.payer_id == holder_id, payments.c.payee_id == holder_id))
        .order_by(payments.c.seq.desc())
        .limit(limit)
    )
    return [payment_from_row(row) for row in rows]


def _payment_row(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": payment.payment_id,
        "order_id": payment.order_id,
        "payer_id": payment.payer_id,
        "payee_id": payment.payee_id,
        "type": payment.type.value,
        "amount_minor": payment.amount_minor,
        "captured_amount_minor": payment.captured_amount_minor,
        "refunded_amount_minor": payment.refunded_amount_minor,
        "status": payment.status.value,
        "currency": payment.currency,
        "created_at": utc(payment.created_at),
        "expires_at": None if payment.expires_at is None else utc(payment.expires_at),
    }


def payment_from_row(row: Row[Any]) -> Payment:
    """The payment a `wallet_payments` row holds."""
    return Payment(
        payment_id=row.payment_id,
        order_id=row.order_id,
        payer_id=row.payer_id,
        payee_id=row.payee_id,
        type=PaymentType(row.type),
        amount_minor=row.amount_minor,
        captured_amount_minor=row.captured_amount_minor,
        refunded_amount_minor=row.refunded_amount_minor,
        status=PaymentStatus(row.status),
        currency=row.currency,
        created_at=aware(row.created_at),
        expires_at=None if row.expires_at is None else aware(row.expires_at),
    )
