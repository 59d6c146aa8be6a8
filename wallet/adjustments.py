"""Adjustments in SQL: a hold captured, voided or expired, and a pay or capture refunded.

Each is one conditional UPDATE of the payment that matches only while the change is allowed;
when it matches nothing, the pure ledger explains why (`HoldNotOpen`, `HoldExpired`, ...). Then
the journal row, and the two accounts last, because a hot wallet stays locked from its UPDATE
until the commit. A capture or void takes 4 statements, a refund 4; expiry sweeps in batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row, bindparam, select, update

from wallet import journal, ledger
from wallet.accounts import move, refusal
from wallet.ledger import Payment, PaymentStatus, PaymentType, TransferKind
from wallet.payments import get_payment, payment_from_row
from wallet.schema import payments, utc

# `status = 'held'` as a literal: the planner then uses the partial index of the held payments
# (`ix_wallet_payments_due`, migration 0024), also in a plan made without the parameters.
IS_HELD: sa.ColumnElement[str] = sa.literal_column(f"'{PaymentStatus.HELD.value}'")

# outer row, and each re-run would skip the rows the statement itself just locked.
_DUE = (
    select(payments.c.payment_id)
    .where(payments.c.status == IS_HELD, payments.c.expires_at <= bindparam("p_now"))
    .order_by(payments.c.expires_at, payments.c.payment_id)
    .limit(bindparam("p_limit"))
    .with_for_update(skip_locked=True)  # several workers may sweep at once
)
_EXPIRE = (
    update(payments)
    .where(
        payments.c.payment_id.in_(bindparam("p_ids", expanding=True)),
        payments.c.status == PaymentStatus.HELD.value,
    )
    .values(status=PaymentStatus.EXPIRED.value)
    .returning(*payments.c)
)
_UNREFUND = (
    update(payments)
    .where(payments.c.payment_id == bindparam("p_payment_id"))
    .values(refunded_amount_minor=payments.c.refunded_amount_minor - bindparam("p_amount"))
)


def capture(
    conn: Connection,
    *,
    payment_id: str,
    amount_minor: int,
    now: datetime,
    payee_id: str | None = None,
    currency: str | None = None,
) -> Payment:
    """Post up to the held amount to the payee and release the rest to the payer."""
    ledger.assert_amount(amount_minor)
    captured = _resolve_hold(
        conn, TransferKind.CAPTURE, payment_id, amount_minor, now, payee_id, currency
    )
    _post_resolution(conn, TransferKind.CAPTURE, captured, amount_minor, now)
    return captured


def void(
    conn: Connection,
    *,
    payment_id: str,
    now: datetime,
    payee_id: str | None = None,
    currency: str | None = None,
) -> Payment:
    """Release a whole hold back to the payer."""
    voided = _resolve_hold(conn, TransferKind.VOID, payment_id, 0, now, payee_id, currency)
    _post_resolution(conn, TransferKind.VOID, voided, voided.amount_minor, now)
    return voided


def any_due_holds(conn: Connection, now: datetime) -> bool:
    """Whether a hold's expiry has come (a read, so that a sweep with nothing to do never takes
    the write lock)."""
    query = select(payments.c.payment_id).where(
        payments.c.status == IS_HELD, payments.c.expires_at <= utc(now)
    )
    return conn.execute(query.limit(1)).first() is not None


def expire_due_holds(conn: Connection, now: datetime, limit: int = 100) -> list[Payment]:
    """Void up to `limit` holds whose expiry has come, oldest first; returns them."""
    ledger.assert_time(now)
    assert limit > 0
    due = conn.execute(_DUE, {"p_now": utc(now), "p_limit": limit}).scalars().all()
    if not due:
        return []
    rows = conn.execute(_EXPIRE, {"p_ids": due}).all()
    expired = sorted(
        (payment_from_row(row) for row in rows), key=lambda p: (p.expires_at, p.payment_id)
    )
    entries = []
    for payment in expired:
        moved = move(
            conn,
            TransferKind.EXPIRE,
            payment.payer_id,
            payment.payee_id,
            payment.currency,
            payment.amount_minor,
            payment.amount_minor,
        )
        assert moved is not None, f"releasing {payment.payment_id} found no accounts"
        entries.append(
            journal.entry(
                TransferKind.EXPIRE,
                payment.payer_id,
                payment.payee_id,
                payment.amount_minor,
                payment.currency,
                now,
                payment_id=payment.payment_id,
                pending_id=payment.payment_id,
            )
        )
    journal.append_all(conn, entries)
    return expired


def refund(
    conn: Connection,
    *,
    payment_id: str,
    amount_minor: int,
    now: datetime,
    payee_id: str | None = None,
    currency: str | None = None,
) -> Payment:
    """Send part of a pay or capture back from the payee to the payer."""
    ledger.assert_amount(amount_minor)
    ledger.assert_time(now)
    statement = _refund_statement(payee_id is not None, currency is not None)
    params = {
        "p_payment_id": payment_id,
        "p_amount": amount_minor,
        "p_payee_id": payee_id,
        "p_currency": currency,
    }
    row = _first_or_explain(
        conn,
        statement,
        params,
        lambda payment: ledger.refund(ledger.find(payment, payee_id, currency), amount_minor),
    )
    refunded = payment_from_row(row)
    moved = move(
        conn,
        TransferKind.REFUND,
        refunded.payee_id,
        refunded.payer_id,
        refunded.currency,
        amount_minor,
    )
    if moved is None:
        conn.execute(_UNREFUND, {"p_payment_id": payment_id, "p_amount": amount_minor})
        raise refusal(
            conn,
            [refunded.payee_id, refunded.payer_id],
            refunded.currency,
            refunded.payee_id,
            amount_minor,
        )
    journal.append(
        conn,
        journal.entry(
            TransferKind.REFUND,
            refunded.payee_id,
            refunded.payer_id,
            amount_minor,
            refunded.currency,
            now,
            payment_id=payment_id,
        ),
    )
    return refunded


def _resolve_hold(
    conn: Connection,
    kind: TransferKind,
    payment_id: str,
    amount_minor: int,
    now: datetime,
    payee_id: str | None,
    currency: str | None,
) -> Payment:
    ledger.assert_time(now)
    statement = _resolve_statement(kind, payee_id is not None, currency is not None)
    params = {
        "p_payment_id": payment_id,
        "p_now": utc(now),
        "p_amount": amount_minor,
        "p_payee_id": payee_id,
        "p_currency": currency,
    }

    def explain(payment: Payment | None) -> None:
        found = ledger.find(payment, payee_id, currency)
        if kind is TransferKind.CAPTURE:
            ledger.capture(found, amount_minor, now)
        else:
            ledger.void(found, now)

    return payment_from_row(_first_or_explain(conn, statement, params, explain))


def _first_or_explain(
    conn: Connection,
    statement: Any,
    params: dict[str, Any],
    explain: Callable[[Payment | None], object],
) -> Row[Any]:
    """Run a conditional update of one payment; when it matches nothing, raise the reason."""
    for _ in range(3):
        row = conn.execute(statement, params).first()
        if row is not None:
            return row
        explain(get_payment(conn, params["p_payment_id"]))
        # The read found nothing wrong: the payment was committed after the update looked.
    raise RuntimeError(f"payment {params['p_payment_id']} kept changing under the update")


def _post_resolution(
    conn: Connection, kind: TransferKind, hold_: Payment, amount_minor: int, now: datetime
) -> None:
    journal.append(
        conn,
        journal.entry(
            kind,
            hold_.payer_id,
            hold_.payee_id,
            amount_minor,
            hold_.currency,
            now,
            payment_id=hold_.payment_id,
            pending_id=hold_.payment_id,
        ),
    )
    # Last, so that the accounts stay locked only until the commit; it cannot be refused.
    moved = move(
        conn, kind, hold_.payer_id, hold_.payee_id, hold_.currency, amount_minor, hold_.amount_minor
    )
    assert moved is not None, f"resolving {hold_.payment_id} found no accounts"


@functools.cache
def _resolve_statement(kind: TransferKind, by_payee: bool, by_currency: bool) -> Any:
    p = payments.c
    where = [
        p.payment_id == bindparam("p_payment_id"),
        p.type == PaymentType.HOLD.value,
        p.status == PaymentStatus.HELD.value,
        p.expires_at > bindparam("p_now"),
    ]
    if kind is TransferKind.CAPTURE:
        where.append(p.amount_minor >= bindparam("p_amount"))
        values = {
            "status": PaymentStatus.CAPTURED.value,
            "captured_amount_minor": bindparam("p_amount"),
        }
    else:
        values = {"status": PaymentStatus.VOIDED.value}
    return (
        update(payments)
        .where(*where, *_named(by_payee, by_currency))
        .values(values)
        .returning(*payments.c)
    )


@functools.cache
def _refund_statement(by_payee: bool, by_currency: bool) -> Any:
    p = payments.c
    return (
        update(payments)
        .where(
            p.payment_id == bindparam("p_payment_id"),
            p.captured_amount_minor - p.refunded_amount_minor >= bindparam("p_amount"),
            *_named(by_payee, by_currency),
        )
        .values(refunded_amount_minor=p.refunded_amount_minor + bindparam("p_amount"))
        .returning(*payments.c)
    )


def _named(by_payee: bool, by_currency: bool) -> list[Any]:
    where = []
    if by_payee:
        where.append(payments.c.payee_id == bindparam("p_payee_id"))
    if by_currency:
        where.append(payments.c.currency == bindparam("p_currency"))
    return where
