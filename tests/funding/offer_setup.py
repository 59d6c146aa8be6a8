"""Instalment offers as their tests set them up: an owner with a credit line and a policy, a
payee, and the owner's side of an approval (section 8)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.context import Context
from tests.support.funding import source
from tests.support.world import Dev, World

POLICY_URL = "/v1/owners/me/instalment-policy"
OPEN = {"currency": "EUR"}  # rules that let every payment within them through
# 10,000 at 12 % APR every 30 days: fee 197 (2), 296 (3), 592 (6), 1,184 (12)
TOTALS = {2: 10_197, 3: 10_296, 6: 10_592, 12: 11_184}


def put_policy(world: World, dev: Dev, line_id: str, **changes: Any) -> dict[str, Any]:
    """Set the owner's policy (min 100, max 50,000, counts 3 and 6 every 30 days by default)."""
    body = {
        "source": line_id,
        "min_amount": 100,
        "max_amount": 50_000,
        "counts": [3, 6],
        "interval_days": 30,
        **changes,
    }
    response = world.api.put(POLICY_URL, headers=dev.owner, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def line_for(world: World, dev: Dev, credit_limit: int = 100_000, **terms: Any) -> dict[str, Any]:
    """A credit line of the device's owner (12 % APR unless said otherwise)."""
    body = {"kind": "credit_line", "credit_limit": credit_limit, "apr_bps": 1_200, **terms}
    return source(world, dev.owner, name=f"line-{credit_limit}", **body)


def offering(
    world: World,
    *,
    top_up: int = 0,
    rules: dict[str, Any] | None = OPEN,
    line: dict[str, Any] | None = None,
    **policy: Any,
) -> tuple[dict[str, Any], Dev, dict[str, Any]]:
    """A maintenance shop, and a car (its wallet topped up by `top_up`, with `rules`) whose owner
    has a credit line (`line`'s terms, as `line_for`'s) and a policy on it (`policy`'s changes,
    as `put_policy`'s): the shop, the car and the line."""
    shop = world.merchant("maintenance")
    car = world.device("car", top_up=top_up, rules=rules)
    credit_line = line_for(world, car, **(line or {}))
    put_policy(world, car, credit_line["id"], **policy)
    return shop, car, credit_line


def pay(dev: Dev, payee: str, amount: int, kind: str = "pay") -> dict[str, Any]:
    """The result of a pay (or hold) in EUR."""
    return dev.send(dev.order(type=kind, payee=payee, amount=amount, currency="EUR"))


def approval(world: World, dev: Dev, approval_id: str) -> dict[str, Any]:
    """One of the owner's approvals as the list shows it."""
    items = world.api.get("/v1/approvals", headers=dev.owner).json()["items"]
    [found] = [a for a in items if a["id"] == approval_id]
    return dict(found)


def decide(world: World, dev: Dev, approval_id: str, **body: Any) -> Any:
    """POST /v1/approvals/{id}; the response."""
    return world.api.post(f"/v1/approvals/{approval_id}", headers=dev.owner, json=body)


def sources_by_id(world: World, dev: Dev) -> dict[str, dict[str, Any]]:
    items = world.api.get("/v1/owners/me/funding-sources", headers=dev.owner).json()["items"]
    return {s["id"]: s for s in items}


def plans_of(ctx: Context, device_id: str) -> list[dict[str, Any]]:
    """The device's plans as stored, oldest first."""
    query = sa.text(
        "SELECT id, payment_id, source_id, amount_minor, fee_minor, total_minor, count,"
        " interval_days, apr_bps FROM instalment_plans WHERE device_id = :d ORDER BY seq"
    )
    with ctx.db.read() as conn:
        return [dict(row) for row in conn.execute(query, {"d": device_id}).mappings()]
