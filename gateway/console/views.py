"""What the console's pages show, read through the use cases the HTTP API uses.

Two reads have no use case yet and are made here from the stores, narrowly: the ids of the
owner's devices (until `GET /v1/devices` exists) and a device's active mandates (until
`GET /v1/devices/{id}/mandates` exists). Both go through `owned_device_id`, so an owner sees
only their own.
"""

from __future__ import annotations

import json
from typing import Any

from devices import store as device_store
from gateway import service, wallets
from gateway.consent import service as consent
from gateway.consent import store as consent_store
from gateway.context import Context
from gateway.errors import NotFound
from gateway.parties import Party


def device_ids(ctx: Context, owner: Party) -> list[str]:
    """The owner's devices, newest first."""
    with ctx.db.read() as conn:
        ids = device_store.device_ids_of_owner(conn, owner.id)
    return list(reversed(ids))


def device_view(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """A device with its wallet (None when it has none yet)."""
    device, certificate = service.get_device(ctx, owner, device_id)
    if device.owner_id != owner.id:
        raise NotFound("no such device")
    try:
        wallet: dict[str, Any] | None = wallets.wallet_of(ctx, owner, device_id)
    except NotFound:
        wallet = None
    return {"device": device, "serial": certificate.serial, "wallet": wallet}


def devices_view(ctx: Context, owner: Party) -> list[dict[str, Any]]:
    """Every device of the owner, with its wallet."""
    return [device_view(ctx, owner, device_id) for device_id in device_ids(ctx, owner)]


def device_labels(ctx: Context, owner: Party) -> dict[str, str]:
    """A name a person recognises for each of the owner's devices: `Fridge · Coldco Frost 3`."""
    labels = {}
    for device_id in device_ids(ctx, owner):
        device, _ = service.get_device(ctx, owner, device_id)
        kind = device.kind.replace("_", " ").capitalize()
        labels[device_id] = f"{kind} · {device.manufacturer} {device.model}"
    return labels


def mandates_of(ctx: Context, owner: Party, device_id: str) -> list[dict[str, Any]]:
    """The device's active mandates, oldest first."""
    with ctx.db.read() as conn:
        service.owned_device_id(conn, owner, device_id)
        rows = consent_store.mandates_for(conn, [device_id])
    return [
        {
            "id": row["id"],
            "payee": row["payee"],
            "category": row["category"],
            "max_amount": row["max_amount_minor"],
            "limits": json.loads(row["limits_json"] or "[]"),
            "valid_from": row["valid_from"],
            "valid_until": row["valid_until"],
        }
        for row in rows
    ]


def rules_of(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """The device's rules as the API shows them (`{}` for none)."""
    return consent.get_rules(ctx, owner, device_id)


def audit_of(ctx: Context, owner: Party, device_id: str, last: int = 50) -> list[dict[str, Any]]:
    """The device's latest audit entries, newest first, each with a one-line summary."""
    entries = service.device_audit(ctx, owner, device_id)[-last:]
    return [{**entry, "summary": _summary(entry["data"])} for entry in reversed(entries)]


def _summary(data: Any, width: int = 140) -> str:
    text = json.dumps(data, separators=(", ", ": "), ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def payments_view(ctx: Context, owner: Party) -> list[dict[str, Any]]:
    """Every payment of every device of the owner, newest first (up to 200 per device)."""
    items: list[dict[str, Any]] = []
    for device_id in device_ids(ctx, owner):
        for payment in wallets.payments_of(ctx, owner, device_id):
            items.append({**payment, "device_id": device_id})
    items.sort(key=lambda p: p["created_at"], reverse=True)
    return items
