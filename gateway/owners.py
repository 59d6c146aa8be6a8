"""Owner and merchant use cases over HTTP: wallets, rules, mandates and approvals lists.

Every change applies to every order received after the call returns, in every worker:
workers read rules, mandates and device state inside each batch's transaction.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from devices import store as device_store
from gateway import store
from gateway.consent import store as consent_store
from gateway.consent.rules import rules_to_json
from gateway.context import Context
from gateway.errors import Invalid, NotFound
from gateway.http.schemas import RulesIn
from gateway.parties import Party
from gateway.service import visible_device
from wallet import store as wallet_store
from wallet.ledger import Payment


def owned_device_id(conn: Connection, owner: Party, device_id: str) -> str:
    """The device id if `owner` owns it, else NotFound (also for its integrator)."""
    device = visible_device(conn, owner, device_id)
    if device.owner_id != owner.id:
        raise NotFound("no such device")
    return device.id


def top_up(
    ctx: Context, owner: Party, device_id: str, amount: int, currency: str, idempotency_key: str
) -> dict[str, int]:
    """Credit a device's wallet from outside, once per idempotency key."""
    now = ctx.clock()

    def work(conn: Connection) -> dict[str, int]:
        owned_device_id(conn, owner, device_id)
        result = wallet_store.top_up(
            conn,
            holder_id=device_id,
            amount_minor=amount,
            currency=currency,
            idempotency_key=idempotency_key,
            now=now,
        )
        store.append_audit(
            conn,
            now,
            [
                (
                    owner.actor,
                    "money.top_up",
                    device_id,
                    {"amount": amount, "currency": currency, "idempotency_key": idempotency_key},
                )
            ],
        )
        return {"balance": result.balance_minor, "available": result.available_minor}

    return ctx.db.run(work)


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
    """Payments a device or merchant made or received, newest first."""
    with ctx.db.read() as conn:
        holder_id = owned_device_id(conn, holder, device_id) if device_id else holder.id
        return [payment_public(p) for p in wallet_store.list_payments(conn, holder_id, 200)]


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


def put_rules(ctx: Context, owner: Party, device_id: str, body: RulesIn) -> dict[str, Any]:
    """Replace the device's rules; `{}` means no rules (every payment then needs approval)."""
    rules, now = body.to_rules(), ctx.clock()
    shown = rules_to_json(rules)

    def work(conn: Connection) -> None:
        owned_device_id(conn, owner, device_id)
        consent_store.put_rules(conn, device_id, shown if rules is not None else None, now)
        store.append_audit(conn, now, [(owner.actor, "rules.replaced", device_id, shown)])

    ctx.db.run(work)
    return shown


def get_rules(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """The device's rules (`{}` when it has none)."""
    with ctx.db.read() as conn:
        owned_device_id(conn, owner, device_id)
        return rules_to_json(consent_store.load_rules(conn, [device_id])[device_id])


def create_mandate(ctx: Context, owner: Party, device_id: str, body: dict[str, Any]) -> str:
    """Record a standing consent; a payee that does not exist is `unknown_payee`."""
    mandate_id, now = f"man_{secrets.token_hex(8)}", ctx.clock()

    def work(conn: Connection) -> None:
        owned_device_id(conn, owner, device_id)
        payee = body.get("payee")
        if payee and not _payee_exists(conn, payee):
            raise Invalid(f"no payee {payee!r}", reason="unknown_payee")
        consent_store.insert_mandate(
            conn,
            {
                "id": mandate_id,
                "device_id": device_id,
                "payee": payee,
                "category": body.get("category"),
                "max_amount_minor": body["max_amount"],
                "limits_json": json.dumps(body.get("limits") or []),
                "valid_from": body.get("valid_from"),
                "valid_until": body.get("valid_until"),
                "status": "active",
                "created_at": now,
            },
        )
        store.append_audit(
            conn,
            now,
            [(owner.actor, "mandate.created", device_id, {"id": mandate_id, **_jsonable(body)})],
        )

    ctx.db.run(work)
    return mandate_id


def revoke_mandate(ctx: Context, owner: Party, mandate_id: str) -> dict[str, str]:
    """Take a standing consent back, at once."""
    now = ctx.clock()

    def work(conn: Connection) -> None:
        row = consent_store.get_mandate(conn, mandate_id)
        if row is None:
            raise NotFound("no such mandate")
        owned_device_id(conn, owner, row["device_id"])
        consent_store.revoke_mandate(conn, mandate_id, now)
        store.append_audit(
            conn, now, [(owner.actor, "mandate.revoked", row["device_id"], {"id": mandate_id})]
        )

    ctx.db.run(work)
    return {"id": mandate_id, "status": "revoked"}


def list_approvals(ctx: Context, owner: Party, status: str | None) -> list[dict[str, Any]]:
    """The owner's approvals, newest first."""
    with ctx.db.read() as conn:
        device_ids = device_store.device_ids_of_owner(conn, owner.id)
        rows = consent_store.list_approvals(conn, device_ids, status) if device_ids else []
    return [approval_public(row) for row in rows]


def approval_public(row: dict[str, Any]) -> dict[str, Any]:
    """An approval as the API shows it."""
    return {
        "id": row["id"],
        "device_id": row["device_id"],
        "order_id": row["order_id"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "payee": row["payee"],
        "status": row["status"],
        "expires_at": row["expires_at"].isoformat(),
        "created_at": row["created_at"].isoformat(),
    }


def _payee_exists(conn: Connection, payee_id: str) -> bool:
    return bool(store.merchants_by_id(conn, [payee_id])) or (
        device_store.get_device(conn, payee_id) is not None
    )


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in body.items()}
