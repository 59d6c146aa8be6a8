"""`limit.nearly_reached` and `wallet.low_balance` (contract section 7), read off a decision batch.

A limit is nearly reached on the first approved payment that takes its period's spending to
80 % of it or more; the event goes once per limit, amount and calendar period: the events already
recorded for that device, period and amount within the current period say whether it went (a
changed amount starts afresh). A wallet's balance is low each time a batch takes it from at or
above the rules' `low_balance_alert` to below it, step by step in the order the batch decided:
the balance after the batch, less what the batch moved (payments, and what funding moved in),
is the balance before. Only batches that move money toward a threshold query anything (one
query each for the markers, the rules not loaded yet and the balances).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from gateway.consent import store as consent_store
from gateway.consent.periods import period_key, period_keys
from gateway.consent.rules import NO_USAGE
from gateway.events import store as event_store
from gateway.events.envelope import ADJUSTMENTS
from wallet import store as wallet_store

if TYPE_CHECKING:
    from gateway.orders.batch import Batch

About = tuple[str, str, dict[str, Any]]
NEARLY = "limit.nearly_reached"


def is_nearly(spent_minor: int, limit_minor: int) -> bool:
    """80 % of the limit or more, in exact integers."""
    return 5 * spent_minor >= 4 * limit_minor


def approved_by_device(about: Iterable[About]) -> dict[str, int]:
    """What each payer device had approved in this batch (pays and holds)."""
    approved: dict[str, int] = {}
    for _, event_type, data in about:
        if event_type == "payment.approved":
            device_id = data["device_id"]
            approved[device_id] = approved.get(device_id, 0) + int(data["amount"] or 0)
    return approved


MOVING = ("payment.received", "hold.captured", "payment.refunded")


def balance_moves(
    about: Iterable[About], outgoing: list[tuple[str, dict[str, Any]]]
) -> dict[str, list[int]]:
    """How each wallet's balance moved in this batch, step by step in the order the batch
    decided them (the order of the results and events it sends): pays, captures and refunds."""
    results, events = _positions(outgoing)
    steps: list[tuple[int, str, int]] = []
    seen: set[int] = set()
    taken: dict[tuple[str, str], int] = {}
    for _, event_type, data in about:
        if id(data) in seen or event_type not in MOVING:
            continue
        seen.add(id(data))
        if event_type == "payment.received":
            position = results.get((data["device_id"], data["order_id"]), -1)
        else:  # the k-th such event of this payment in `about` is the k-th one sent
            key = (event_type, data["payment_id"])
            k = taken[key] = taken.get(key, -1) + 1
            sent = events.get(key, [])
            position = sent[k] if k < len(sent) else -1
        sign = 1 if event_type == "payment.refunded" else -1
        payer, payee, amount = data["device_id"], data["payee"], int(data["amount"] or 0)
        steps += [(position, payer, sign * amount), (position, payee, -sign * amount)]
    moves: dict[str, list[int]] = {}
    for _, device_id, delta in sorted(steps, key=lambda step: step[0]):
        moves.setdefault(device_id, []).append(delta)
    return moves


def _positions(
    outgoing: list[tuple[str, dict[str, Any]]],
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], list[int]]]:
    """Where in `outgoing` each order's result is, by (device, order id), and each payer
    device's adjustment events, by (event type, payment id)."""
    results: dict[tuple[str, str], int] = {}
    events: dict[tuple[str, str], list[int]] = {}
    for position, (_, payload) in enumerate(outgoing):
        if "status" in payload:
            results.setdefault(
                (str(payload.get("device_id")), str(payload.get("order_id"))), position
            )
        elif payload.get("event") in ADJUSTMENTS:
            key = (ADJUSTMENTS[payload["event"]], str(payload.get("payment_id")))
            events.setdefault(key, []).append(position)
    return results, events


def limit_events(batch: Batch, approved: dict[str, int]) -> list[About]:
    """`limit.nearly_reached` for the limits this batch's approved payments took to 80 %."""
    candidates = []
    for device_id in approved:
        rules, device = batch.rules.get(device_id), batch.devices.get(device_id)
        tz = batch.timezones.get(device.owner_id) if device else None
        if rules is None or device is None or tz is None or not rules.limits:
            continue
        keys, usage = period_keys(batch.now, tz), batch.usage.get(device_id, {})
        for limit in rules.limits:
            spent = usage.get(keys[limit.period], NO_USAGE).spent_minor
            if is_nearly(spent, limit.amount_minor):
                marker = (device_id, str(limit.period), limit.amount_minor, keys[limit.period])
                candidates.append((marker, spent, device.owner_id))
    if not candidates:
        return []
    sent = _sent_markers(batch, {owner for _, _, owner in candidates})
    out: list[About] = []
    for marker, spent, _ in candidates:
        if marker not in sent:
            sent.add(marker)
            device_id, period, amount, _key = marker
            data = {"device_id": device_id, "period": period, "spent": spent, "amount": amount}
            out.append((device_id, NEARLY, data))
    return out


def _sent_markers(batch: Batch, owners: set[str]) -> set[tuple[str, str, int, str]]:
    """(device, period, amount, period key) of the limit events already sent to these owners."""
    sent = set()
    query = sent_markers_query(owners, batch.now - timedelta(days=367))
    for owner, created_at, data_json in batch.conn.execute(query):
        data, tz = json.loads(data_json), batch.timezones.get(owner)
        if tz is not None:
            key = period_key(data["period"], created_at, tz)
            sent.add((data["device_id"], data["period"], data["amount"], key))
    return sent


def low_balance_events(batch: Batch, moves: dict[str, list[int]]) -> list[About]:
    """`wallet.low_balance` each time this batch took a wallet from at or above its rules'
    alert to below it, with the balance right after. What automatic top-ups and credit lines
    moved into a wallet in the batch (`gateway.orders.payments`, `batch.funding["credited"]`)
    came with the payments it funded: for such a wallet the batch is one step, its net."""
    credited: dict[str, int] = batch.funding.get("credited", {})
    steps = {
        d: [sum(moved) + credited[d]] if credited.get(d) else moved for d, moved in moves.items()
    }
    falling = [
        d for d, moved in steps.items() if any(m < 0 for m in moved) and d not in batch.merchants
    ]
    if not falling:
        return []
    rules = {d: batch.rules[d] for d in falling if d in batch.rules}
    missing = [d for d in falling if d not in batch.rules]
    if missing:
        rules |= consent_store.load_rules(batch.conn, missing)
    alerts = {
        d: r.low_balance_alert_minor
        for d, r in rules.items()
        if r is not None and r.low_balance_alert_minor is not None
    }
    if not alerts:
        return []
    wallets = wallet_store.get_wallets(batch.conn, alerts)
    out: list[About] = []
    for device_id, threshold in alerts.items():
        wallet = wallets.get(device_id)
        if wallet is None:
            continue
        balance = wallet.balance_minor - sum(steps[device_id])  # before the batch
        for moved in steps[device_id]:
            before, balance = balance, balance + moved
            if before >= threshold > balance:
                data = {"device_id": device_id, "balance": balance, "threshold": threshold}
                out.append((device_id, "wallet.low_balance", data))
    return out


def sent_markers_query(owners: set[str], since: datetime) -> sa.Select[Any]:
    """These owners' limit events since then, through the partial index that holds only them
    (migration 0018): the type is written into the statement, for the planner to match the
    index's condition also in PostgreSQL's generic plan of a prepared statement (psycopg
    prepares a statement run five times), where a bound value is unknown."""
    events = event_store.events
    return sa.select(events.c.recipient, events.c.created_at, events.c.data_json).where(
        events.c.type == sa.literal_column(f"'{NEARLY}'"),
        events.c.recipient.in_(owners),
        events.c.created_at >= since,
    )
