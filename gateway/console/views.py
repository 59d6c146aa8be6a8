"""What the console's pages show, read through the use cases the HTTP API's routers call.

The console shows the first page (up to 200 items) of each list, as `GET /v1/...` without a
cursor does.
"""

from __future__ import annotations

import json
from typing import Any

from devices.registry import Device
from gateway import fleet, owners, service, wallets
from gateway.consent import service as consent
from gateway.consent import views as consent_views
from gateway.context import Context
from gateway.errors import NotFound
from gateway.parties import Party

PAGE = 200


def _label(kind: str, manufacturer: str, model: str) -> str:
    return f"{kind.replace('_', ' ').capitalize()} · {manufacturer} {model}"


def _view(ctx: Context, owner: Party, device: Device, serial: str) -> dict[str, Any]:
    try:
        wallet: dict[str, Any] | None = wallets.wallet_of(ctx, owner, device.id)
    except NotFound:
        wallet = None
    label = _label(device.kind, device.manufacturer, device.model)
    return {"device": device, "serial": serial, "wallet": wallet, "label": label}


def devices_view(ctx: Context, owner: Party) -> list[dict[str, Any]]:
    """The owner's devices, newest first, each with its wallet (None when it has none yet)."""
    pairs = fleet.devices_page(ctx, owner, None, PAGE, None).items
    return [_view(ctx, owner, device, certificate.serial) for device, certificate in pairs]


def device_view(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """One of the owner's devices with its wallet; NotFound for anyone else's."""
    device, certificate = service.get_device(ctx, owner, device_id)
    if device.owner_id != owner.id:
        raise NotFound("no such device")
    return _view(ctx, owner, device, certificate.serial)


def device_labels(ctx: Context, owner: Party) -> dict[str, str]:
    """A name a person recognises for each of the owner's devices: `Fridge · Coldco Frost 3`."""
    pairs = fleet.devices_page(ctx, owner, None, PAGE, None).items
    return {d.id: _label(d.kind, d.manufacturer, d.model) for d, _ in pairs}


def mandates_of(ctx: Context, owner: Party, device_id: str) -> list[dict[str, Any]]:
    """The device's active mandates, newest first, with what each limit used this period."""
    return consent_views.mandates_page(ctx, owner, device_id, "active", PAGE, None).items


def spending_of(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """The device's limits in their current periods: spent, remaining, when each resets."""
    return consent_views.spending(ctx, owner, device_id)


def rules_of(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """The device's rules as the API shows them (`{}` for none)."""
    return consent.get_rules(ctx, owner, device_id)


def audit_of(ctx: Context, owner: Party, device_id: str, last: int = 50) -> list[dict[str, Any]]:
    """The device's latest audit entries, newest first, each with a one-line summary."""
    entries = fleet.audit_page(ctx, owner, device_id, last, None).items
    return [{**entry, "summary": _summary(entry["data"])} for entry in entries]


def _summary(data: Any, width: int = 140) -> str:
    text = json.dumps(data, separators=(", ", ": "), ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def payments_view(ctx: Context, owner: Party) -> list[dict[str, Any]]:
    """Every device's newest payments together, newest first."""
    items: list[dict[str, Any]] = []
    for device, _ in fleet.devices_page(ctx, owner, None, PAGE, None).items:
        for payment in wallets.payments_of(ctx, owner, device.id):
            items.append({**payment, "device_id": device.id})
    items.sort(key=lambda p: p["created_at"], reverse=True)
    return items[:PAGE]


def owner_profile(ctx: Context, owner: Party) -> dict[str, Any]:
    """The owner's name, timezone and whether their payments are frozen."""
    return owners.owner_profile(ctx, owner)
