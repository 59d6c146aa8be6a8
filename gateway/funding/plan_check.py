"""`kym ledger check` for instalment plans, recomputed from the journal (`lend`, `fee` and
`collect` transfers) and the plans' own rows; see `gateway.funding.check`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.funding import dues, plan_store
from gateway.funding import store as funding_store
from gateway.funding.plan import CREDIT_LINE
from wallet.check import Breach
from wallet.ledger import FEES_PREFIX, TransferKind
from wallet.schema import accounts, transfers

_PLAN_KINDS = [k.value for k in (TransferKind.LEND, TransferKind.FEE, TransferKind.COLLECT)]


def check_plans(conn: Connection) -> list[Breach]:
    """Every breach of the plans' invariants; empty when they hold."""
    plans = plan_store.all_plans(conn)
    schedules = plan_store.plan_instalments(conn, [p["id"] for p in plans])
    moves = _moves(conn)
    breaches = [b for p in plans for b in _plan(p, schedules[p["id"]], moves[p["payment_id"]])]
    orphans = [
        Breach("plan", payment_id, f"{len(rows)} lend, fee or collect transfers without a plan")
        for payment_id, rows in moves.items()
        if payment_id not in {p["payment_id"] for p in plans}
    ]
    return [*breaches, *orphans, *_lines(conn, plans, schedules), *_fees(conn, plans)]


def _moves(conn: Connection) -> dict[str, list[Any]]:
    """The plans' transfers by payment id."""
    t = transfers.c
    found: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(sa.select(transfers).where(t.kind.in_(_PLAN_KINDS)).order_by(t.id)):
        found[row.payment_id].append(row)
    return found


def _plan(
    plan: dict[str, Any], schedule: list[dict[str, Any]], moves: list[Any]
) -> Iterator[Breach]:
    subject = plan["id"]
    if sum(i["amount_minor"] for i in schedule) != plan["total_minor"]:
        yield Breach("plan", subject, f"instalments do not sum to its total {plan['total_minor']}")
    if [i["n"] for i in schedule] != list(range(1, plan["count"] + 1)):
        yield Breach("plan", subject, f"not instalments 1 to {plan['count']}")
    if plan["total_minor"] != plan["amount_minor"] + plan["fee_minor"]:
        yield Breach("plan", subject, "total is not amount plus fee")
    want_status = dues.plan_status(i["status"] for i in schedule)
    if plan["status"] != want_status:
        yield Breach("plan", subject, f"status {plan['status']}, its instalments say {want_status}")
    yield from _opening(plan, moves)
    yield from _collections(plan, schedule, moves)


def _opening(plan: dict[str, Any], moves: list[Any]) -> Iterator[Breach]:
    """One `lend` of the amount from the line to the device, one `fee` (when there is one)."""
    lent = [
        (m.debit_account_id, m.credit_account_id, m.amount_minor) for m in moves if m.kind == "lend"
    ]
    if lent != [(plan["source_id"], plan["device_id"], plan["amount_minor"])]:
        yield Breach("plan", plan["id"], f"lent {lent}, not its amount from its line")
    fees = [
        (m.debit_account_id, m.credit_account_id, m.amount_minor) for m in moves if m.kind == "fee"
    ]
    fee_account = FEES_PREFIX + plan["currency"]
    want = [(plan["source_id"], fee_account, plan["fee_minor"])] if plan["fee_minor"] else []
    if fees != want:
        yield Breach("plan", plan["id"], f"fee transfers {fees}, not {want}")


def _collections(
    plan: dict[str, Any], schedule: list[dict[str, Any]], moves: list[Any]
) -> Iterator[Breach]:
    """Paid instalments, grouped by collection, equal the `collect` transfers, key for key."""
    owed: dict[str, int] = defaultdict(int)  # collection key -> what it paid
    for i in schedule:
        if (i["status"] == dues.PAID) != (i["collection_id"] is not None):
            yield Breach("instalment", f"{plan['id']}/{i['n']}", "paid without a collection")
        if i["collection_id"] is not None:
            owed[i["collection_id"]] += i["amount_minor"]
    moved: dict[str, int] = defaultdict(int)
    for m in moves:
        if m.kind != "collect":
            continue
        moved[m.idempotency_key] += m.amount_minor
        if m.credit_account_id != plan["source_id"] or m.currency != plan["currency"]:
            yield Breach("instalment", plan["id"], f"collect {m.id} does not repay its line")
    paid = {key: amount for key, amount in owed.items() if amount}  # 0 moves nothing
    if paid != dict(moved):
        yield Breach("instalment", plan["id"], f"paid {paid} but collected {dict(moved)}")


def _lines(
    conn: Connection, plans: list[dict[str, Any]], schedules: dict[str, list[dict[str, Any]]]
) -> Iterator[Breach]:
    """What a credit line owes is what its plans still owe."""
    unpaid: dict[str, int] = defaultdict(int)
    for plan in plans:
        rest = sum(i["amount_minor"] for i in schedules[plan["id"]] if i["status"] != dues.PAID)
        unpaid[plan["source_id"]] += rest
    for line in funding_store.all_sources(conn):
        if line.kind == CREDIT_LINE and -line.balance_minor != unpaid[line.id]:
            owed = -line.balance_minor
            yield Breach("credit_line", line.id, f"owes {owed}, its plans {unpaid[line.id]}")


def _fees(conn: Connection, plans: list[dict[str, Any]]) -> Iterator[Breach]:
    """Each currency's fee account holds exactly its plans' fees."""
    charged: dict[str, int] = defaultdict(int)
    for plan in plans:
        charged[FEES_PREFIX + plan["currency"]] += plan["fee_minor"]
    a = accounts.c
    query = sa.select(a.id, a.credits_posted - a.debits_posted).where(a.id.startswith(FEES_PREFIX))
    held = {account_id: int(balance) for account_id, balance in conn.execute(query)}
    for account_id in sorted(set(held) | {k for k, v in charged.items() if v}):
        if held.get(account_id, 0) != charged[account_id]:
            got = held.get(account_id, 0)
            yield Breach("fees", account_id, f"holds {got}, the plans' fees {charged[account_id]}")
