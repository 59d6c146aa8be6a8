"""Disclosure (contract section 9): who a payee is and whom to contact about it.

Payees are public by design. A merchant discloses its own legal name and support contacts; a
device payee is named `"<integrator name> <model>"` and discloses its integrator's. A device
without a `category` sells nothing, so it is not a payee here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices.store import devices
from gateway.store import integrators, merchants


def disclosures(
    conn: Connection, ids: Iterable[str], *, any_device: bool = False
) -> dict[str, dict[str, Any]]:
    """`{"id", "kind", "name", "legal_name", "category", "support": {"email", "url"}}` of these
    payees, by id (two queries, whatever the number of ids); unknown ids are absent.
    `any_device`: devices without a category too (as `other`: they were paid before)."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    m = merchants.c
    query = sa.select(m.id, m.name, m.legal_name, m.category, m.support_email, m.support_url)
    found = {
        row.id: _public(row.id, "merchant", row.name, row, row.category)
        for row in conn.execute(query.where(m.id.in_(ids)))
    }
    rest = [i for i in ids if i not in found]
    if not rest:
        return found
    i, d = integrators.c, devices.c
    query = (
        sa.select(d.id, d.model, d.category, i.name, i.legal_name, i.support_email, i.support_url)
        .select_from(devices.join(integrators, i.id == d.integrator_id))
        .where(d.id.in_(rest))
    )
    for row in conn.execute(query if any_device else query.where(d.category.is_not(None))):
        name = f"{row.name} {row.model}"
        found[row.id] = _public(row.id, "device", name, row, row.category or "other")
    return found


def support_of(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, str | None]]:
    """Each payee's support contact (`{"email", "url"}`), for list items; `null`s when the
    payee disclosed none or is not one."""
    ids = set(ids)
    found = disclosures(conn, ids, any_device=True)
    return {i: found[i]["support"] if i in found else dict(_NO_SUPPORT) for i in ids}


def with_disclosure(conn: Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Payment items with their payee's `payee_name` and `support` added."""
    found = disclosures(conn, {item["payee"] for item in items}, any_device=True)
    for item in items:
        payee = found.get(item["payee"])
        item["payee_name"] = payee["name"] if payee else item["payee"]
        item["support"] = payee["support"] if payee else dict(_NO_SUPPORT)
    return items


_NO_SUPPORT: dict[str, str | None] = {"email": None, "url": None}


def _public(payee_id: str, kind: str, name: str, row: Any, category: str) -> dict[str, Any]:
    return {
        "id": payee_id,
        "kind": kind,
        "name": name,
        "legal_name": row.legal_name or row.name,
        "category": category,
        "support": {"email": row.support_email, "url": row.support_url},
    }
