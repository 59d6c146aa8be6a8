"""Collecting instalments (contract section 8): on their due dates by the housekeeper, and the
whole unpaid rest when the owner repays early.

A collection takes what it collects whole or not at all from the owner's balance sources of the
plan's currency, in draw order, never below a source's floor (the owner's freeze does not stop
it), and marks the instalments paid in the same transaction. It first locks the plan and claims
its unpaid instalments, so a second collector (another worker, or the same one again after a
crash) waits and then finds them paid; a crash before the commit moves nothing. The ledger backs
this up: a collection's transfers carry its key, unique per source.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection

from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.errors import Conflict, NotFound
from gateway.events import store as event_store
from gateway.events.envelope import Draft
from gateway.funding import dues, plan_store
from gateway.funding import store as funding_store
from gateway.funding.plan import Draw, available
from gateway.funding.plans import plan_public
from gateway.parties import Party
from wallet import draws as wallet_draws

_ATTEMPTS = 3
log = logging.getLogger("kym.funding")


def collect_due(ctx: Context, limit: int = 100) -> int:
    """For the housekeeper: collect (or mark overdue) each instalment whose next try has come,
    one transaction each; how many were tried. A failure is logged and the rest go on."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        due = plan_store.due(conn, now, limit)
    tried = 0
    for plan_id, n in due:
        try:
            tried += ctx.db.run(partial(collect_instalment, plan_id=plan_id, n=n, now=now))
        except Exception:  # noqa: BLE001 - logged; tried again at the next round
            log.exception("collecting instalment %s of %s failed", n, plan_id)
    return tried


def collect_instalment(conn: Connection, plan_id: str, n: int, now: datetime) -> int:
    """Collect instalment `n` if it is still unpaid and due: paid, or overdue and tried again a
    day later (`instalment.overdue` only when it becomes overdue); 1 if it was tried."""
    plan = plan_store.get_plan(conn, plan_id, lock=True)
    claimed = [] if plan is None else plan_store.claim(conn, plan_id, [n], now)
    if plan is None or not claimed:
        return 0  # collected or repaid meanwhile
    instalment = claimed[0]
    moved = take(conn, plan, instalment["amount_minor"], dues.collection_id(plan_id, [n]), now)
    if moved is not None:
        _paid(conn, "gateway", plan, claimed, moved, now)
        return 1
    plan_store.mark_overdue(conn, plan_id, n, dues.next_try(now, instalment["next_try_at"]))
    _set_status(conn, plan, now)
    if instalment["status"] != dues.OVERDUE:
        shown = _instalment_event(plan, {**instalment, "status": dues.OVERDUE})
        event_store.record(conn, [Draft(plan["owner_id"], "instalment.overdue", shown)], now)
        audit = {**shown, "reason": "insufficient_funds"}
        audit_store.append(conn, now, [("gateway", "instalment.overdue", plan["device_id"], audit)])
    return 1


def repay(ctx: Context, owner: Party, plan_id: str) -> dict[str, Any]:
    """Collect the plan's unpaid rest now, all or nothing (409 `insufficient_funds`); the plan.
    Another owner's plan is 404; a plan already repaid answers as it is."""
    now = ctx.clock()
    return ctx.db.run(partial(repay_plan, owner=owner, plan_id=plan_id, now=now))


def repay_plan(conn: Connection, owner: Party, plan_id: str, now: datetime) -> dict[str, Any]:
    """`repay` in the caller's transaction."""
    plan = owned_plan(conn, owner, plan_id, lock=True)
    unpaid = [i["n"] for i in plan_store.plan_instalments(conn, [plan_id])[plan_id]]
    claimed = plan_store.claim(conn, plan_id, unpaid, None)
    if claimed:
        rest = sum(i["amount_minor"] for i in claimed)
        key = dues.collection_id(plan_id, [i["n"] for i in claimed])
        moved = take(conn, plan, rest, key, now)
        if moved is None:
            raise Conflict(
                f"your balance sources cannot cover the {rest} {plan['currency']} left",
                reason="insufficient_funds",
            )
        _paid(conn, owner.actor, plan, claimed, moved, now)
    found = plan_store.get_plan(conn, plan_id)
    assert found is not None
    return plan_public(conn, found)


def owned_plan(
    conn: Connection, owner: Party, plan_id: str, *, lock: bool = False
) -> dict[str, Any]:
    """One of the owner's plans; another's, or none, is 404."""
    plan = plan_store.get_plan(conn, plan_id, lock=lock)
    if plan is None or plan["owner_id"] != owner.id:
        raise NotFound("no such instalment plan")
    return plan


def take(
    conn: Connection, plan: dict[str, Any], amount_minor: int, key: str, now: datetime
) -> list[Draw] | None:
    """Move `amount_minor` from the owner's balance sources to the plan's credit line, whole
    or not at all (a savepoint); the draws, or None when the sources cannot cover it. A source
    drawn on by another transaction meanwhile makes the sources be read and planned again."""
    for _ in range(_ATTEMPTS):
        sources = [
            s
            for s in funding_store.balance_sources(conn, [plan["owner_id"]])[plan["owner_id"]]
            if s.currency == plan["currency"]
        ]
        planned = dues.cover(amount_minor, [(s.id, available(s)) for s in sources])
        if planned is None:
            return None
        floors = {s.id: s.floor_minor for s in sources}
        savepoint = conn.begin_nested()
        if all(_collect(conn, plan, d, floors[d.source_id], key, now) for d in planned):
            savepoint.commit()
            return planned
        savepoint.rollback()
        log.info("a source of %s was drawn on meanwhile: planning again", plan["owner_id"])
    return None


def _collect(
    conn: Connection, plan: dict[str, Any], draw: Draw, floor_minor: int, key: str, now: datetime
) -> bool:
    return wallet_draws.collect(
        conn,
        source_id=draw.source_id,
        line_id=plan["source_id"],
        currency=plan["currency"],
        amount_minor=draw.amount_minor,
        floor_minor=floor_minor,
        payment_id=plan["payment_id"],
        collection_id=key,
        now=now,
    )


def _paid(
    conn: Connection,
    actor: str,
    plan: dict[str, Any],
    claimed: Sequence[dict[str, Any]],
    moved: list[Draw],
    now: datetime,
) -> None:
    """Mark the claimed instalments paid by this collection; events, audit, the plan's status."""
    ns = [i["n"] for i in claimed]
    key = dues.collection_id(plan["id"], ns)
    assert plan_store.mark_paid(conn, plan["id"], ns, key, now) == len(ns)
    status = _set_status(conn, plan, now)
    drafts = [
        Draft(
            plan["owner_id"],
            "instalment.paid",
            {**_instalment_event(plan, {**i, "status": dues.PAID}), "plan_status": status},
        )
        for i in claimed
    ]
    event_store.record(conn, drafts, now)
    funded_by = [{"source": d.source_id, "amount": d.amount_minor} for d in moved]
    audit = {
        "payment_id": plan["payment_id"],
        "plan_id": plan["id"],
        "instalments": ns,
        "amount": sum(i["amount_minor"] for i in claimed),
        "currency": plan["currency"],
        "funded_by": funded_by,
        "collection_id": key,
    }
    audit_store.append(conn, now, [(actor, "instalment.paid", plan["device_id"], audit)])


def _set_status(conn: Connection, plan: dict[str, Any], now: datetime) -> str:
    """The plan's status from its instalments' (written when it changed)."""
    schedule = plan_store.plan_instalments(conn, [plan["id"]])[plan["id"]]
    status = dues.plan_status(i["status"] for i in schedule)
    if status != plan["status"]:
        plan_store.set_status(conn, plan["id"], status, now)
    return status


def _instalment_event(plan: dict[str, Any], instalment: dict[str, Any]) -> dict[str, Any]:
    return {
        "plan_id": plan["id"],
        "payment_id": plan["payment_id"],
        "device_id": plan["device_id"],
        "n": instalment["n"],
        "due": instalment["due_at"].isoformat(),
        "amount": instalment["amount_minor"],
        "currency": plan["currency"],
        "status": instalment["status"],
    }
