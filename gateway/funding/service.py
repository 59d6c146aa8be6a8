"""Funding sources over HTTP: an owner creates and lists them and tops up balance sources.

Each function runs one database transaction. A source's money is in the ledger (`wallet.draws`
opens its account; a balance source's top-ups are the ledger's keyed top-ups, so a key is
scoped to its source and the same key and body return the first answer).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.currencies import is_active_currency
from gateway.errors import Conflict, Invalid, NotFound
from gateway.funding import store as funding_store
from gateway.funding.plan import BALANCE, CREDIT_LINE, Source, available
from gateway.parties import Party
from wallet import draws
from wallet import store as wallet_store
from wallet.errors import CurrencyNotAllowed

DEFAULT_PRIORITY = 100


def create_source(ctx: Context, owner: Party, body: dict[str, Any]) -> dict[str, Any]:
    """Create a balance source or a credit line (validated at the boundary) with its account."""
    if not is_active_currency(body["currency"]):
        raise Invalid(
            f"{body['currency']} is not an active ISO 4217 currency", reason="currency_not_allowed"
        )
    now = ctx.clock()
    source_id = f"fs_{secrets.token_hex(8)}"
    is_line = body["kind"] == CREDIT_LINE
    row = {
        "id": source_id,
        "owner_id": owner.id,
        "name": body["name"],
        "kind": body["kind"],
        "currency": body["currency"],
        "priority": body.get("priority", DEFAULT_PRIORITY),
        "floor_minor": 0 if is_line else body.get("floor", 0),
        "credit_limit_minor": body["credit_limit"] if is_line else None,
        "apr_bps": body.get("apr_bps", 0) if is_line else None,
    }

    def work(conn: Connection) -> dict[str, Any]:
        funding_store.insert_source(conn, row, now)
        if is_line:
            draws.open_credit_account(conn, account_id=source_id, currency=row["currency"], now=now)
        else:
            wallet_store.open_wallet(conn, holder_id=source_id, currency=row["currency"], now=now)
        audit = {k: v for k, v in row.items() if k != "owner_id"}
        audit_store.append(conn, now, [(owner.actor, "funding.source_created", None, audit)])
        source = funding_store.get_source(conn, source_id)
        assert source is not None
        return source_public(source)

    return ctx.db.run(work)


def list_sources(ctx: Context, owner: Party) -> list[dict[str, Any]]:
    """The owner's sources in the order they are drawn on."""
    with ctx.db.read() as conn:
        return [source_public(s) for s in funding_store.owner_sources(conn, owner.id)]


def owned_source(ctx: Context, owner: Party, source_id: str) -> Source:
    """One of the owner's sources; another's, or none, is 404."""
    with ctx.db.read() as conn:
        return _owned(conn, owner, source_id)


def _owned(conn: Connection, owner: Party, source_id: str) -> Source:
    source = funding_store.get_source(conn, source_id)
    if source is None or source.owner_id != owner.id:
        raise NotFound("no such funding source")
    return source


def top_up_source(
    ctx: Context, owner: Party, source_id: str, amount: int, currency: str, idempotency_key: str
) -> dict[str, Any]:
    """Credit a balance source from outside, once per (source, idempotency key)."""
    now = ctx.clock()

    def work(conn: Connection) -> dict[str, Any]:
        source = _owned(conn, owner, source_id)
        if currency != source.currency:  # 422 before 409 (section 2)
            raise CurrencyNotAllowed(f"this source holds {source.currency}, not {currency}")
        if source.kind != BALANCE:
            raise Conflict("a credit line takes no top-ups", reason="not_a_balance_source")
        result = wallet_store.top_up(
            conn,
            holder_id=source_id,
            amount_minor=amount,
            currency=currency,
            idempotency_key=idempotency_key,
            now=now,
        )
        if not result.replayed:  # the audit log records money that moved, once
            data = {"source": source_id, "amount": amount, "currency": currency}
            audit_store.append(conn, now, [(owner.actor, "funding.top_up", None, data)])
        # The first answer again for a repeated key: the balance it reported then.
        return source_public(_with_balance(source, result.balance_minor))

    return ctx.db.run(work)


def _with_balance(source: Source, balance_minor: int) -> Source:
    return replace(source, balance_minor=balance_minor)


def source_public(source: Source) -> dict[str, Any]:
    """A source as the API shows it."""
    shown: dict[str, Any] = {
        "id": source.id,
        "name": source.name,
        "kind": source.kind,
        "currency": source.currency,
        "priority": source.priority,
    }
    if source.kind == BALANCE:
        shown["floor"] = source.floor_minor
    else:
        shown["credit_limit"] = source.credit_limit_minor
        shown["apr_bps"] = source.apr_bps
    shown["balance"] = source.balance_minor
    shown["available"] = available(source)
    return shown
