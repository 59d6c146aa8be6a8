"""Instalment plans (contract section 8): opened when a pay is approved with `instalments`, listed
for their owner, and repaid early on request.

`open_plan` runs inside the decision's transaction (a `Batch`): it moves the payment's amount from
the credit line into the device's wallet and the fee to the fee account, so that the caller then
places the payment from the wallet as any other, and the plan owes its whole total from that
moment. Collection on due dates and early repayment are in `gateway.funding.collect`.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Connection

from devices.registry import Device
from gateway import paging
from gateway.context import Context
from gateway.errors import Conflict
from gateway.events import store as event_store
from gateway.events.envelope import Draft
from gateway.funding import dues, instalments, plan_store
from gateway.funding import store as funding_store
from gateway.funding.plan import CREDIT_LINE, available
from gateway.orders.batch import Batch
from gateway.parties import Party
from wallet import draws

LIST_NAME = "instalment-plans"


def open_plan(
    batch: Batch,
    *,
    device: Device,
    source_id: str,
    payment_id: str,
    amount_minor: int,
    count: int,
    apr_bps: int,
    interval_days: int,
) -> str:
    """Lend `amount_minor` from the owner's credit line `source_id` into the device's wallet for
    `payment_id` and open its plan (fee and schedule as the contract computes them); the plan's
    id. 409 `credit_limit_exceeded` when the line's available is less than the plan's total. (A
    total below `count` makes its first instalments 0, as the contract's formula says.)"""
    line = funding_store.get_source(batch.conn, source_id)
    if (
        line is None
        or line.kind != CREDIT_LINE
        or line.owner_id != device.owner_id
        or line.currency != device.currency
    ):
        raise Conflict("the offer's credit line is no longer there", reason="offer_withdrawn")
    assert line.credit_limit_minor is not None
    fee = instalments.fee(amount_minor, apr_bps, count, interval_days)
    total = amount_minor + fee
    lent = total <= available(line) and draws.lend(
        batch.conn,
        line_id=line.id,
        limit_minor=line.credit_limit_minor,
        wallet_id=device.id,
        currency=line.currency,
        amount_minor=amount_minor,
        fee_minor=fee,
        payment_id=payment_id,
        now=batch.now,
    )
    if not lent:
        raise Conflict(
            f"the credit line has less than {total} {line.currency} available",
            reason="credit_limit_exceeded",
        )
    if device.id in batch.available:
        batch.available[device.id] += amount_minor
    plan_id = f"plan_{secrets.token_hex(8)}"
    row = {
        "id": plan_id,
        "owner_id": device.owner_id,
        "device_id": device.id,
        "payment_id": payment_id,
        "source_id": line.id,
        "currency": line.currency,
        "amount_minor": amount_minor,
        "fee_minor": fee,
        "total_minor": total,
        "apr_bps": apr_bps,
        "count": count,
        "interval_days": interval_days,
        "status": dues.ACTIVE,
        "opened_at": batch.now,
        "repaid_at": None,
    }
    _record(batch, row)
    return plan_id


def _record(batch: Batch, row: dict[str, Any]) -> None:
    """Store the plan with its schedule; its owner's event and its audit entry."""
    schedule = instalments.schedule(
        row["total_minor"], row["count"], row["interval_days"], batch.now
    )
    plan_store.insert_plan(
        batch.conn,
        row,
        [{"n": i.n, "due_at": i.due, "amount_minor": i.amount_minor} for i in schedule],
    )
    shown = plan_public(batch.conn, row)
    event_store.record(
        batch.conn, [Draft(row["owner_id"], "instalment.plan_opened", shown)], batch.now
    )
    audit = {**{k: v for k, v in shown.items() if k != "instalments"}, "count": row["count"]}
    batch.audit.append(("gateway", "instalment.plan_opened", row["device_id"], audit))


def plan_public(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """A plan as the owner's list shows it."""
    return plan_item(row, plan_store.plan_instalments(conn, [row["id"]])[row["id"]])


def plan_item(row: dict[str, Any], schedule: list[dict[str, Any]]) -> dict[str, Any]:
    """A plan and its instalments as the contract shows them."""
    return {
        "id": row["id"],
        "payment_id": row["payment_id"],
        "device_id": row["device_id"],
        "source": row["source_id"],
        "amount": row["amount_minor"],
        "fee": row["fee_minor"],
        "total": row["total_minor"],
        "currency": row["currency"],
        "status": row["status"],
        "opened_at": row["opened_at"].isoformat(),
        "instalments": [
            {
                "n": i["n"],
                "due": i["due_at"].isoformat(),
                "amount": i["amount_minor"],
                "status": i["status"],
            }
            for i in schedule
        ],
    }


def list_plans(
    ctx: Context, owner: Party, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the owner's plans, newest first, and the next page's cursor."""
    start = paging.after(LIST_NAME, cursor, paging.SEQUENCE)
    after_seq = None if start is None else start[0]
    assert after_seq is None or isinstance(after_seq, int)
    with ctx.db.read() as conn:
        rows = plan_store.owner_plans(conn, owner.id, paging.check_limit(limit) + 1, after_seq)
        page, next_cursor = paging.page_of(rows, limit, LIST_NAME, lambda r: (r["seq"],))
        schedules = plan_store.plan_instalments(conn, [r["id"] for r in page])
    return [plan_item(r, schedules[r["id"]]) for r in page], next_cursor
