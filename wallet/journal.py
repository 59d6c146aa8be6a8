"""The append-only journal of transfers: its rows, appended one at a time or a batch at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from wallet.ledger import PaymentRequest, TransferKind
from wallet.prepared import Prepared, insert_many
from wallet.schema import transfers, utc

_TRANSFER_KEYS = (
    "kind",
    "payment_id",
    "pending_id",
    "idempotency_key",
    "debit_account_id",
    "credit_account_id",
    "amount_minor",
    "currency",
    "created_at",
    "expires_at",
)
_INSERT_TRANSFER = Prepared({"*": insert(transfers)}, _TRANSFER_KEYS)


def entry(
    kind: TransferKind,
    debit_id: str,
    credit_id: str,
    amount_minor: int,
    currency: str,
    now: datetime,
    *,
    payment_id: str | None = None,
    pending_id: str | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """One journal row, ready to append."""
    return {
        "kind": kind.value,
        "payment_id": payment_id,
        "pending_id": pending_id,
        "idempotency_key": idempotency_key,
        "debit_account_id": debit_id,
        "credit_account_id": credit_id,
        "amount_minor": amount_minor,
        "currency": currency,
        "created_at": utc(now),
        "expires_at": None if expires_at is None else utc(expires_at),
    }


def payment_entry(request: PaymentRequest, now: datetime) -> dict[str, Any]:
    """The journal row of a new pay or hold: payer to payee, the request's amount."""
    return entry(
        TransferKind(request.type.value),
        request.payer_id,
        request.payee_id,
        request.amount_minor,
        request.currency,
        now,
        payment_id=request.payment_id,
        expires_at=request.expires_at,
    )


def append(conn: Connection, row: dict[str, Any]) -> None:
    """Append one row (on the DBAPI cursor: the path every payment takes)."""
    _INSERT_TRANSFER.rows(conn, row)


def append_all(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Append a batch of rows with one multi-row INSERT; nothing when `rows` is empty."""
    insert_many(conn, transfers, rows)
