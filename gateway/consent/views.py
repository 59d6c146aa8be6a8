"""What the owner reads about consent (contract section 7): the approvals and mandates lists,
page by page, and a device's spending against its limits.

Usage comes from the same period counters the decision reads (`gateway.orders.store.usage`),
so these views count what step 3 counts: approved pays, open and captured holds less refunds;
pending approvals count nothing. Each view reads in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from devices import store as device_store
from gateway import paging, store
from gateway.consent import store as consent_store
from gateway.consent.periods import next_period_start, period_key, period_keys
from gateway.consent.rules import NO_USAGE, Usage, consent_rules
from gateway.context import Context
from gateway.orders import store as order_store
from gateway.paging import Page
from gateway.parties import Party
from gateway.payees import support_of
from gateway.service import owned_device_id


def approvals_page(
    ctx: Context, owner: Party, status: str | None, limit: int, cursor: str | None
) -> Page[dict[str, Any]]:
    """The owner's approvals, newest first, optionally of one status."""
    start = paging.after("approvals", cursor, paging.TIME_THEN_ID)
    with ctx.db.read() as conn:
        rows = consent_store.list_approvals(
            conn, owner.id, status, paging.check_limit(limit) + 1, start
        )
        page, next_cursor = paging.page_of(rows, limit, "approvals", _time_then_id)
        items = approval_items(conn, page)
    return Page(items, next_cursor)


def approval_items(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Approvals as the API shows them: what, to whom, why and until when."""
    payees = store.payees_by_id(conn, {row["payee"] for row in rows})
    unexplained = {row["device_id"] for row in rows if row.get("why") is None}
    rules_now = consent_store.load_rules(conn, unexplained) if unexplained else {}
    items = []
    for row in rows:
        why = row.get("why") or (
            "no_rules" if consent_rules(rules_now[row["device_id"]]) is None else "approval_above"
        )
        items.append(approval_item(row, payees.get(row["payee"]), why))
    support = support_of(conn, {row["payee"] for row in rows})  # section 9: whom to contact
    for item in items:
        item["support"] = support[item["payee"]]
    return items


def approval_item(
    row: Mapping[str, Any], payee: Mapping[str, str] | None, why: str
) -> dict[str, Any]:
    """One approval: the order it holds, its payee's name and category, why it waits, and
    the instalment offer it carries when that is why (section 8)."""
    order = json.loads(row["order_json"])
    item = {
        "id": row["id"],
        "device_id": row["device_id"],
        "order_id": row["order_id"],
        "kind": order["type"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "payee": row["payee"],
        "payee_name": payee["name"] if payee else row["payee"],
        "category": payee["category"] if payee else "other",
        "description": order.get("description"),
        "why": why,
        "status": row["status"],
        "expires_at": row["expires_at"].isoformat(),
        "created_at": row["created_at"].isoformat(),
    }
    if row.get("offer_json") is not None:
        item["offer"] = json.loads(row["offer_json"])
    if row.get("result_status") is not None:  # decided: what came of it, as POST answered
        item["result"] = {"status": row["result_status"], "reason": row["result_reason"]}
    return item


def mandates_page(
    ctx: Context, owner: Party, device_id: str, status: str | None, limit: int, cursor: str | None
) -> Page[dict[str, Any]]:
    """The device's mandates, newest first, with what each limit has used this period."""
    start = paging.after("mandates", cursor, paging.TIME_THEN_ID)
    now = ctx.clock()
    with ctx.db.read() as conn:
        owned_device_id(conn, owner, device_id)
        rows = consent_store.list_mandates(
            conn, device_id, status, now, paging.check_limit(limit) + 1, start
        )
        page, next_cursor = paging.page_of(rows, limit, "mandates", _time_then_id)
        tz = _timezone(conn, owner)
        keys = {row["id"]: _keys(now, tz) for row in page}
        usage = order_store.usage(conn, keys, keys)
    return Page([_mandate_item(row, usage[row["id"]], now, tz) for row in page], next_cursor)


def _mandate_item(
    row: Mapping[str, Any], usage: Mapping[str, Usage], now: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    limits = []
    for limit in json.loads(row["limits_json"]):
        used = usage.get(period_key(limit["period"], now, tz), NO_USAGE).spent_minor
        remaining = max(0, limit["amount"] - used)
        limits.append({**limit, "used": used, "remaining": remaining})
    valid_until = row["valid_until"]
    lapsed = row["status"] == "active" and valid_until is not None and valid_until <= now
    return {
        "id": row["id"],
        "status": "expired" if lapsed else row["status"],
        "payee": row["payee"],
        "category": row["category"],
        "max_amount": row["max_amount_minor"],
        "limits": limits,
        "valid_from": _time(row["valid_from"]),
        "valid_until": _time(valid_until),
        "created_at": row["created_at"].isoformat(),
    }


def spending(ctx: Context, owner: Party, device_id: str) -> dict[str, Any]:
    """The device's limits in their current periods: spent or used, what remains, and when each
    resets (the start of the next period, in the owner's timezone)."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        owned_device_id(conn, owner, device_id)
        device = device_store.get_device(conn, device_id)
        assert device is not None, "owned_device_id found it"
        rules = consent_store.load_rules(conn, [device_id])[device_id]
        tz = _timezone(conn, owner)
        usage = order_store.usage(conn, [device_id], {device_id: _keys(now, tz)})[device_id]
    limits, counts = [], []
    for limit in rules.limits if rules else ():
        spent = usage.get(period_key(limit.period, now, tz), NO_USAGE).spent_minor
        limits.append(
            {
                "period": limit.period,
                "amount": limit.amount_minor,
                "spent": spent,
                "remaining": max(0, limit.amount_minor - spent),
                "resets_at": next_period_start(limit.period, now, tz).isoformat(),
            }
        )
    for count_limit in rules.max_payments if rules else ():
        used = usage.get(period_key(count_limit.period, now, tz), NO_USAGE).count
        counts.append(
            {
                "period": count_limit.period,
                "count": count_limit.count,
                "used": used,
                "remaining": max(0, count_limit.count - used),
                "resets_at": next_period_start(count_limit.period, now, tz).isoformat(),
            }
        )
    currency = (rules.currency if rules else None) or device.currency
    return {"currency": currency, "limits": limits, "max_payments": counts}


def _timezone(conn: Connection, owner: Party) -> ZoneInfo:
    return ZoneInfo(store.owner_settings(conn, [owner.id])[owner.id][0])


def _keys(now: datetime, tz: ZoneInfo) -> dict[str, str]:
    return {str(period): key for period, key in period_keys(now, tz).items()}


def _time_then_id(row: Mapping[str, Any]) -> paging.Key:
    return (row["created_at"], row["id"])


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
