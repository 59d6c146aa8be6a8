"""The owner's consent over HTTP: a device's rules and its mandates (lists and spending:
`gateway.consent.views`).

Every change applies to every order received after the call returns, in every worker:
workers read rules, mandates and device state inside each batch's transaction. Deciding an
approval is an order's decision: `gateway.orders.approvals`.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from devices import store as device_store
from gateway import store
from gateway.audit import store as audit_store
from gateway.consent import store as consent_store
from gateway.consent import views
from gateway.consent.rules import Rules, rules_to_json
from gateway.context import Context
from gateway.errors import Invalid, NotFound
from gateway.parties import Party
from gateway.service import owned_device_id


def put_rules(ctx: Context, owner: Party, device_id: str, rules: Rules | None) -> dict[str, Any]:
    """Replace the device's rules; `{}` means no rules (every payment then needs approval)."""
    now = ctx.clock()
    shown = rules_to_json(rules)

    def work(conn: Connection) -> None:
        owned_device_id(conn, owner, device_id)
        consent_store.put_rules(conn, device_id, shown if rules is not None else None, now)
        audit_store.append(conn, now, [(owner.actor, "rules.replaced", device_id, shown)])

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
        audit_store.append(
            conn,
            now,
            [(owner.actor, "mandate.created", device_id, {"id": mandate_id, **_jsonable(body)})],
        )

    ctx.db.run(work)
    return mandate_id


def revoke_mandate(ctx: Context, owner: Party, mandate_id: str) -> dict[str, str]:
    """Take a standing consent back, at once; the answer names the mandate's device."""
    now = ctx.clock()

    def work(conn: Connection) -> str:
        row = consent_store.get_mandate(conn, mandate_id)
        if row is None:
            raise NotFound("no such mandate")
        owned_device_id(conn, owner, row["device_id"])
        consent_store.revoke_mandate(conn, mandate_id, now)
        audit_store.append(
            conn, now, [(owner.actor, "mandate.revoked", row["device_id"], {"id": mandate_id})]
        )
        return str(row["device_id"])

    device_id = ctx.db.run(work)
    return {"id": mandate_id, "status": "revoked", "device_id": device_id}


def list_approvals(ctx: Context, owner: Party, status: str | None) -> list[dict[str, Any]]:
    """The owner's newest 200 approvals (`gateway.consent.views.approvals_page` pages on)."""
    return views.approvals_page(ctx, owner, status, 200, None).items


def approval_public(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    """An approval as the API shows it (what, to whom, why and until when)."""
    with ctx.db.read() as conn:
        return views.approval_items(conn, [row])[0]


def _payee_exists(conn: Connection, payee_id: str) -> bool:
    return bool(store.merchants_by_id(conn, [payee_id])) or (
        device_store.get_device(conn, payee_id) is not None
    )


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in body.items()}
