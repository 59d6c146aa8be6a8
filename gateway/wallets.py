"""Wallets over HTTP: an owner's top-ups, a device's or merchant's wallet and payments.

Each function runs one database transaction; the ledger itself is `wallet`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row

from devices import store as device_store
from devices.registry import Status
from gateway import paging, payees, store
from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.errors import Conflict, NotFound
from gateway.paging import Page
from gateway.parties import Party
from gateway.service import owned_device_id
from wallet import store as wallet_store
from wallet.errors import CurrencyNotAllowed
from wallet.ledger import Payment, TopUpResult
from wallet.payments import payment_from_row
from wallet.schema import payments


def top_up(
    ctx: Context, owner: Party, device_id: str, amount: int, currency: str, idempotency_key: str
) -> dict[str, int]:
    """Credit a device's wallet from outside, once per idempotency key."""
    now = ctx.clock()

    def work(conn: Connection) -> dict[str, int]:
        owned_device_id(conn, owner, device_id)
        _check_currency(conn, device_id, currency)  # 422 before any 409, a reused key or not
        if _is_revoked(conn, device_id):
            result = _replayed_for_revoked(conn, device_id, amount, currency, idempotency_key)
            return {"balance": result.balance_minor, "available": result.available_minor}
        result = wallet_store.top_up(
            conn,
            holder_id=device_id,
            amount_minor=amount,
            currency=currency,
            idempotency_key=idempotency_key,
            now=now,
        )
        if not result.replayed:  # the audit log records money that moved, once
            data = {"amount": amount, "currency": currency, "idempotency_key": idempotency_key}
            audit_store.append(conn, now, [(owner.actor, "money.top_up", device_id, data)])
        return {"balance": result.balance_minor, "available": result.available_minor}

    return ctx.db.run(work)


def _check_currency(conn: Connection, device_id: str, currency: str) -> None:
    """The wallet's currency, else 422 `currency_not_allowed` (also for text that is no
    currency code at all, such as `eur`: the contract's code for a currency it refuses)."""
    wallet = wallet_store.get_wallet(conn, device_id)
    if wallet is None:
        raise NotFound("no wallet")
    if currency != wallet.currency:
        raise CurrencyNotAllowed(f"{device_id} holds {wallet.currency}, not {currency}")


def _is_revoked(conn: Connection, device_id: str) -> bool:
    device = device_store.get_device(conn, device_id)
    return device is not None and device.status is Status.REVOKED


def _replayed_for_revoked(
    conn: Connection, device_id: str, amount: int, currency: str, idempotency_key: str
) -> TopUpResult:
    """A revoked device never pays again, so its wallet takes no new money (it would be
    stranded there); a top-up made before the revocation still answers its first answer."""
    earlier = wallet_store.replayed_top_up(
        conn,
        holder_id=device_id,
        amount_minor=amount,
        currency=currency,
        idempotency_key=idempotency_key,
    )
    if earlier is None:
        raise Conflict("the device is revoked: its wallet takes no top-ups", reason="invalid_state")
    return earlier


def wallet_of(ctx: Context, holder: Party, device_id: str | None) -> dict[str, Any]:
    """A device's wallet (for its owner) or the merchant's own."""
    with ctx.db.read() as conn:
        holder_id = owned_device_id(conn, holder, device_id) if device_id else holder.id
        wallet = wallet_store.get_wallet(conn, holder_id)
    if wallet is None:
        raise NotFound("no wallet")
    return {
        "currency": wallet.currency,
        "balance": wallet.balance_minor,
        "available": wallet.available_minor,
    }


def payments_of(ctx: Context, holder: Party, device_id: str | None) -> list[dict[str, Any]]:
    """The newest 200 payments a device or merchant made or received (`payments_page` pages)."""
    return payments_page(ctx, holder, device_id, None, 200, None).items


def payments_page(
    ctx: Context,
    holder: Party,
    device_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> Page[dict[str, Any]]:
    """Payments a device (for its owner) or the merchant made or received, newest first,
    optionally of one status; keyed by the ledger's sequence, which no later payment takes."""
    start = paging.after("payments", cursor, paging.SEQUENCE)
    with ctx.db.read() as conn:
        holder_id = owned_device_id(conn, holder, device_id) if device_id else holder.id
        rows = _payment_rows(conn, holder_id, status, paging.check_limit(limit) + 1, start)
        page, next_cursor = paging.page_of(rows, limit, "payments", lambda row: (row.seq,))
        items = [payment_public(payment_from_row(row)) for row in page]
        return Page(payees.with_disclosure(conn, items), next_cursor)


def _payment_rows(
    conn: Connection, holder_id: str, status: str | None, limit: int, after: paging.Key | None
) -> list[Row[Any]]:
    query = (
        sa.select(payments)
        .where(sa.or_(payments.c.payer_id == holder_id, payments.c.payee_id == holder_id))
        .order_by(payments.c.seq.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(payments.c.status == status)
    if after is not None:
        query = query.where(store.before((payments.c.seq,), after))
    return list(conn.execute(query))


def payment_public(payment: Payment) -> dict[str, Any]:
    """A payment as the API shows it."""
    return {
        "payment_id": payment.payment_id,
        "order_id": payment.order_id,
        "type": payment.type.value,
        "status": payment.status.value,
        "amount": payment.amount_minor,
        "captured_amount": payment.captured_amount_minor,
        "refunded_amount": payment.refunded_amount_minor,
        "payee": payment.payee_id,
        "payer": payment.payer_id,
        "currency": payment.currency,
        "created_at": payment.created_at.isoformat(),
        "expires_at": payment.expires_at.isoformat() if payment.expires_at else None,
    }


def merchant_payment(ctx: Context, merchant: Party, payment_id: str) -> dict[str, Any]:
    """One of the merchant's payments."""
    with ctx.db.read() as conn:
        payment = wallet_store.get_payment(conn, payment_id)
    if payment is None or payment.payee_id != merchant.id:
        raise NotFound("no such payment")
    return payment_public(payment)
