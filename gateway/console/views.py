"""What the console's pages show, read through the use cases the HTTP API's routers call.

The console shows the first page (up to 200 items) of each list, as `GET /v1/...` without a
cursor does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from devices.registry import Device
from gateway import fleet, owners, payees, service, wallets
from gateway.audit import heads
from gateway.audit import service as audit_service
from gateway.consent import service as consent
from gateway.consent import views as consent_views
from gateway.console import details
from gateway.context import Context
from gateway.disputes import rules as dispute_rules
from gateway.disputes import service as disputes
from gateway.errors import Conflict, NotFound
from gateway.events import store as event_store
from gateway.funding import plans as instalment_plans
from gateway.funding import policy as instalment_policy
from gateway.funding import service as funding
from gateway.parties import Party

PAGE = 200


def _label(kind: str, manufacturer: str, model: str) -> str:
    return f"{kind.replace('_', ' ').capitalize()} · {manufacturer} {model}"


def label_of(device: Device) -> str:
    """The name a person recognises for a device: `Fridge · Coldco Frost 3`."""
    return _label(device.kind, device.manufacturer, device.model)


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


def device_currency(ctx: Context, owner: Party, device_id: str) -> str:
    """The currency of one of the owner's devices: its wallet's (NotFound for anyone else's)."""
    view = device_view(ctx, owner, device_id)
    return str(view["wallet"]["currency"] if view["wallet"] else view["device"].currency)


def device_labels(ctx: Context, owner: Party) -> dict[str, str]:
    """A name a person recognises for each of the owner's devices: `Fridge · Coldco Frost 3`."""
    pairs = fleet.devices_page(ctx, owner, None, PAGE, None).items
    return {d.id: _label(d.kind, d.manufacturer, d.model) for d, _ in pairs}


def payee_name(ctx: Context, payee_id: str) -> str:
    """The name a payee discloses (section 9), or its id when it discloses none."""
    with ctx.db.read() as conn:
        found = payees.disclosures(conn, [payee_id], any_device=True)
    return str(found[payee_id]["name"]) if payee_id in found else payee_id


def mandates_of(ctx: Context, owner: Party, device_id: str) -> list[dict[str, Any]]:
    """The device's active mandates, newest first, with what each limit used this period and
    the name its payee discloses (`payee_name`, None for a mandate without a payee)."""
    items = consent_views.mandates_page(ctx, owner, device_id, "active", PAGE, None).items
    named = {m["payee"] for m in items if m["payee"]}
    with ctx.db.read() as conn:
        found = payees.disclosures(conn, named, any_device=True) if named else {}
    return [{**m, "payee_name": found.get(m["payee"], {}).get("name")} for m in items]


def spending_of(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """The device's limits in their current periods: spent, remaining, when each resets."""
    return consent_views.spending(ctx, owner, device_id)


def rules_of(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """The device's rules as the API shows them (`{}` for none)."""
    return consent.get_rules(ctx, owner, device_id)


def audit_of(ctx: Context, owner: Party, device_id: str, last: int = 50) -> list[dict[str, Any]]:
    """The device's latest audit entries, newest first, each with a one-line summary for a
    person and its data as stored."""
    entries: list[dict[str, Any]] = audit_trail(ctx, owner, device_id, None, last)["entries"]
    return entries


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


def funding_view(ctx: Context, owner: Party) -> dict[str, Any]:
    """The owner's funding sources in draw order, and their instalment policy (None without)."""
    sources = funding.list_sources(ctx, owner)
    try:
        policy: dict[str, Any] | None = instalment_policy.get_policy(ctx, owner)
    except NotFound:
        policy = None
    names = {source["id"]: source["name"] for source in sources}
    return {"sources": sources, "policy": policy, "source_names": names}


def disputes_view(ctx: Context, owner: Party) -> list[dict[str, Any]]:
    """The owner's disputes, newest first: those they opened and those about their payee devices,
    each marked with the side the owner is on (`payer` or `payee`) and whether they answer it
    (`answerable`: the payee device is theirs, whichever side opened it)."""
    mine = device_labels(ctx, owner)
    items = disputes.list_page(ctx, owner, PAGE, None).items
    paid = {p["payment_id"]: p for p in payments_view(ctx, owner)} if items else {}
    return [
        {
            **d,
            "side": "payer" if d["payer_device_id"] in mine else "payee",
            "answerable": d["payee"] in mine,  # also when both devices are the owner's
            "payee_name": paid.get(d["payment_id"], {}).get("payee_name") or d["payee"],
        }
        for d in items
    ]


def disputable_payment(ctx: Context, owner: Party, payment_id: str) -> dict[str, Any] | None:
    """One of the owner's devices' payments that may be disputed now, or None."""
    for payment in payments_view(ctx, owner):
        if payment["payment_id"] != payment_id or payment["payer"] != payment["device_id"]:
            continue
        try:
            dispute_rules.check_disputable(payment["type"], payment["status"])
        except Conflict:
            return None
        return payment
    return None


def audit_trail(
    ctx: Context, owner: Party, device_id: str, cursor: str | None, limit: int = 50
) -> dict[str, Any]:
    """A page of the device's audit entries (newest first) and the cursor of the next."""
    page = fleet.audit_page(ctx, owner, device_id, limit, cursor)
    labels = device_labels(ctx, owner)
    currency = service.get_device(ctx, owner, device_id)[0].currency
    timezone = owners.owner_profile(ctx, owner)["timezone"]
    entries = [
        {
            **e,
            "summary": details.describe(e["data"], currency, timezone),
            "raw": details.raw(e["data"]),
            "who": actor_label(e["actor"], owner, labels),
        }
        for e in page.items
    ]
    return {"entries": entries, "next_cursor": page.next_cursor}


def actor_label(actor: str, owner: Party, labels: dict[str, str]) -> str:
    """Who an audit entry's actor (`owner:own_...`, `device:dev_...`) is, as the owner knows it."""
    kind, _, party_id = actor.partition(":")
    if actor == owner.actor:
        return "you"
    if kind == "device" and party_id in labels:
        return labels[party_id]
    return {"integrator": "the integrator", "merchant": "the merchant"}.get(kind, kind or actor)


def tree_head(ctx: Context) -> dict[str, Any]:
    """The latest signed tree head of the transparency log, as `GET /v1/audit/tree-head` serves
    it, with its signature checked against the gateway's signing key (`verified`)."""
    token = audit_service.latest_tree_head(ctx)
    try:
        head = heads.verify(token, ctx.pki.signer.private_key.public_key(), ctx.signer_jose)
    except heads.InvalidTreeHead as exc:  # shown as such: the page is where to notice it
        return {"verified": False, "problem": str(exc), "jws": token}
    signed_at = datetime.fromtimestamp(head.ts, UTC)
    return {
        "verified": True,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "at": signed_at,
        "jws": token,
    }


def plans_view(ctx: Context, owner: Party) -> list[dict[str, Any]]:
    """The owner's instalment plans, newest first, each with what is paid and left, whom the
    payment went to and the credit line's name."""
    items, _ = instalment_plans.list_plans(ctx, owner, PAGE, None)
    if not items:
        return []
    paid = {p["payment_id"]: p for p in payments_view(ctx, owner)}
    lines = {s["id"]: s["name"] for s in funding.list_sources(ctx, owner)}
    shown = []
    for plan in items:
        done = sum(i["amount"] for i in plan["instalments"] if i["status"] == "paid")
        payment = paid.get(plan["payment_id"], {})
        shown.append(
            {
                **plan,
                "paid": done,
                "left": plan["total"] - done,
                "payee_name": payment.get("payee_name") or payment.get("payee"),
                "source_name": lines.get(plan["source"], plan["source"]),
            }
        )
    return shown


def notifications(ctx: Context, owner: Party, last: int = 100) -> list[dict[str, Any]]:
    """The owner's latest events (alerts, decisions, payments, disputes), newest first, each
    with the device it is about and its data in words: what webhooks and the event stream
    deliver, for an owner who has neither."""
    with ctx.db.read() as conn:
        rows = event_store.latest_events(conn, owner.id, last)
    pairs = fleet.devices_page(ctx, owner, None, PAGE, None).items
    labels = {d.id: label_of(d) for d, _ in pairs}
    currencies = {d.id: d.currency for d, _ in pairs}  # for data that names no currency
    timezone = owners.owner_profile(ctx, owner)["timezone"]
    shown = []
    for row in rows:
        data = json.loads(row.data_json)
        device_id = data.get("device_id")
        currency = data.get("currency") or currencies.get(device_id)
        told = {k: v for k, v in data.items() if not (k == "device_id" and v in labels)}
        shown.append(
            {
                "at": row.created_at,
                "type": row.type,
                "device": labels.get(device_id, device_id) if device_id else None,
                "summary": details.describe(told, currency, timezone),
                "raw": details.raw(data),
            }
        )
    return shown
