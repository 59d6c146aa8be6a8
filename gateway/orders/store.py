"""SQL adapter for orders: recorded orders and their results, the result outbox, the spend
counters and which counters each payment went into.

Functions take a Connection and never commit: the decision that calls them (`gateway.orders`)
owns the transaction, so the money, the counters, the result and the audit entry commit together
or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

from devices.contract import Result
from devices.store import UtcDateTime
from gateway.consent.periods import PERIODS
from gateway.consent.rules import Usage
from wallet.prepared import Prepared, any_of, as_list, insert_later, insert_many

metadata = sa.MetaData()
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("device_id", sa.String, primary_key=True),
    sa.Column("order_id", sa.String, primary_key=True),
    sa.Column("payload_sha256", sa.String),
    sa.Column("type", sa.String),
    sa.Column("status", sa.String),
    sa.Column("payment_id", sa.String),
    sa.Column("result_json", sa.Text),
    sa.Column("received_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime),
    sa.Column("jws", sa.Text),  # the order as received (evidence)
)
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("topic", sa.String),
    sa.Column("jws", sa.Text),
    sa.Column("created_at", UtcDateTime),
    sa.Column("subject", sa.String),  # the payment it names, or "<device>/<order>" (evidence)
)
# The outbox's entries the broker has not acknowledged yet (migration 0023): added with them,
# deleted on the broker's PUBACK; the outbox rows themselves are never updated.
outbox_pending = sa.Table(
    "outbox_pending",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
)
_counter_columns = [
    sa.Column(f"{p}_{suffix}", sa.String if suffix == "key" else sa.BigInteger)
    for p in PERIODS
    for suffix in ("key", "spent", "count")
]
spend_counters = sa.Table(
    "spend_counters", metadata, sa.Column("scope", sa.String, primary_key=True), *_counter_columns
)
payment_scopes = sa.Table(
    "payment_scopes",
    metadata,
    sa.Column("payment_id", sa.String, primary_key=True),
    sa.Column("payer_id", sa.String),
    sa.Column("mandate_id", sa.String),
    sa.Column("period_keys", sa.Text),
    sa.Column("consent_json", sa.Text),  # the consent recorded at the decision (evidence)
    sa.Column("rules_salt", sa.String),
)


# --- orders and results ----------------------------------------------------------------------


@dataclass(frozen=True)
class KnownOrder:
    payload_sha256: str
    result: Result  # the latest


# Transaction-scoped advisory locks of one (sender, order id) each, in a class of their own
# (two-key locks never meet the one-key locks of migrations and webhooks).
_ORDER_KEY_LOCK = 7402


def lock_order_key(conn: Connection, sender_id: str, order_id: str) -> None:
    """Serialise the transactions deciding one (sender, order id) whose sender is not locked
    (a merchant's HTTP request): the second then finds the first's order, committed, instead
    of deciding it again and failing on the orders' primary key. SQLite's write transactions
    are serialised already."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:class, hashtext(:key))"),
            {"class": _ORDER_KEY_LOCK, "key": f"{sender_id}/{order_id}"},
        )


def known_orders(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], KnownOrder]:
    """The recorded orders among these (device_id, order_id) keys, in one query that looks up
    each pair on the primary key."""
    return known_orders_later(conn, keys)()


def known_orders_later(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> Callable[[], dict[tuple[str, str], KnownOrder]]:
    """`known_orders`, read later: inside `wallet.prepared.pipelined` on PostgreSQL the query
    is only queued, and the orders are there once the block has ended."""
    keys = set(keys)
    if not keys:
        return dict
    rows = _KNOWN_ORDERS.later(conn, key_params(conn, keys))
    return lambda: {
        (d, o): KnownOrder(h, Result.from_payload(json.loads(r))) for d, o, h, r in rows()
    }


def key_params(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """(device_id, order_id) pairs bound for a lookup by them: `keys` (JSON) on SQLite,
    `devices` and `orders` (arrays) on PostgreSQL."""
    pairs = sorted(set(keys))
    if conn.dialect.name == "postgresql":
        return {"devices": [d for d, _ in pairs], "orders": [o for _, o in pairs]}
    return {"keys": json.dumps(pairs)}


# Compiled once and run on the DBAPI cursor: every order batch runs them, and Core's work per
# statement costs more than running it on SQLite. Each pair is one probe of the primary key.
# Until the eighth session this was `device_id IN (...) AND order_id IN (...)`: on PostgreSQL 15
# a bitmap scan of every order the batch's devices ever sent (2.4 ms a batch of 86 with 10,000
# orders stored, growing with each device's history), on SQLite a probe for every device and
# order id combined (0.64 ms with 10,000 orders, 1.9 ms with 100,000; now 0.15 ms for both).
KNOWN_COLUMNS = "o.device_id, o.order_id, o.payload_sha256, o.result_json"
# `o` is the table these pairs are looked up in, by its primary key (or a prefix of it)
BY_KEYS = {
    "sqlite": "FROM json_each(:keys) AS k CROSS JOIN {table} AS o"
    " ON o.device_id = json_extract(k.value, '$[0]')"
    " AND o.order_id = json_extract(k.value, '$[1]')",
    "postgresql": "FROM unnest(CAST(:devices AS TEXT[]), CAST(:orders AS TEXT[]))"
    " AS k(device_id, order_id)"
    " JOIN {table} AS o ON o.device_id = k.device_id AND o.order_id = k.order_id",
}
_KNOWN_ORDERS = Prepared(
    {
        dialect: sa.text(f"SELECT {KNOWN_COLUMNS} {by_keys.format(table='orders')}")
        for dialect, by_keys in BY_KEYS.items()
    }
)


def order_row(
    device_id: str,
    order_id: str,
    payload_sha256: str,
    order_type: str,
    result: Result,
    now: datetime,
    jws: str | None = None,
) -> dict[str, Any]:
    """The row that remembers an order (forever) with its result, and the order as received."""
    return {
        "device_id": device_id,
        "order_id": order_id,
        "payload_sha256": payload_sha256,
        "type": order_type,
        "status": result.status.value,
        "payment_id": result.payment_id,
        "result_json": orjson.dumps(result.to_payload()).decode(),
        "received_at": now,
        "updated_at": now,
        "jws": jws,
    }


def record_orders(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert order rows in one statement."""
    insert_many(conn, orders, rows)


def update_order_result(
    conn: Connection, device_id: str, order_id: str, result: Result, now: datetime
) -> None:
    """Replace an order's latest result (after an approval decision or its expiry)."""
    conn.execute(
        orders.update()
        .where(
            orders.c.device_id == device_id,
            orders.c.order_id == order_id,
        )
        .values(
            status=result.status.value,
            payment_id=result.payment_id,
            result_json=orjson.dumps(result.to_payload()).decode(),
            updated_at=now,
        )
    )


def enqueue(
    conn: Connection,
    items: list[tuple[str, str]],
    now: datetime,
    subjects: list[str | None] | None = None,
) -> list[int]:
    """Put (topic, jws) results in the outbox, 128 a statement, each pending publication;
    returns their ids in order.
    `subjects`: what each is about (`gateway.evidence.record.subjects`).

    The ids come back with their rows' topic and token and are matched to the items by them
    (asking SQLAlchemy for them in parameter order makes it insert row by row on SQLite).
    Equal items (an Ed25519 signature is deterministic) are interchangeable, so each takes the
    next id returned for its (topic, token)."""
    return enqueue_later(conn, items, now, subjects)()


def enqueue_later(
    conn: Connection,
    items: list[tuple[str, str]],
    now: datetime,
    subjects: list[str | None] | None = None,
) -> Callable[[], list[int]]:
    """`enqueue` whose ids are read later: inside `wallet.prepared.pipelined` on PostgreSQL the
    insert is only queued, and the ids are there once the block has ended."""
    if not items:
        return lambda: []
    about = subjects or [None] * len(items)
    rows = [
        {"topic": topic, "jws": token, "created_at": now, "subject": subject}
        for (topic, token), subject in zip(items, about, strict=True)
    ]
    inserted = insert_later(conn, outbox, rows, ("id", "topic", "jws"), echo=outbox_pending)

    def ids_in_order() -> list[int]:
        ids: dict[tuple[str, str], list[int]] = {}
        for outbox_id, topic, token in inserted():
            ids.setdefault((topic, token), []).append(int(outbox_id))
        return [ids[item].pop(0) for item in items]

    return ids_in_order


def unpublished(
    conn: Connection, older_than: datetime, limit: int = 500
) -> list[tuple[int, str, str]]:
    """Outbox entries not yet published (a crash between commit and publish leaves some)."""
    query = (
        sa.select(outbox.c.id, outbox.c.topic, outbox.c.jws)
        .join(outbox_pending, outbox_pending.c.id == outbox.c.id)
        .where(outbox.c.created_at <= older_than)
        .order_by(outbox_pending.c.id)
        .limit(limit)
    )
    return [(int(i), t, j) for i, t, j in conn.execute(query)]


def count_unpublished(conn: Connection) -> int:
    """How many outbox entries the broker has not acknowledged yet."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(outbox_pending)).scalar() or 0)


def mark_published(conn: Connection, ids: list[int]) -> None:
    """Note that the broker acknowledged these outbox entries."""
    if ids:
        _PUBLISHED.rows(conn, {"ids": as_list(conn, ids)})


_PUBLISHED = Prepared(
    {
        dialect: sa.text(f"DELETE FROM outbox_pending WHERE {where}")
        for dialect, where in any_of("id", "ids").items()
    }
)


# --- spend counters --------------------------------------------------------------------------


def usage(
    conn: Connection, scopes: Iterable[str], keys_now: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, Usage]]:
    """Per scope, the usage under each of the current period keys (`keys_now[scope]`)."""
    scopes = list(scopes)
    return usage_of(counters_later(conn, scopes)(), scopes, keys_now)


def counters_later(conn: Connection, scopes: Iterable[str]) -> Callable[[], list[Any]]:
    """The scopes' counter rows (for `usage_of`), read later: inside `wallet.prepared.pipelined`
    on PostgreSQL the query is only queued, and the rows are there once the block has ended."""
    scopes = list(scopes)
    if not scopes:
        return list
    return _COUNTERS_IN.later(conn, {"scopes": as_list(conn, scopes)})


def usage_of(
    rows: list[Any], scopes: Iterable[str], keys_now: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, Usage]]:
    """`usage` from counter rows read by `counters_later` (rows of other scopes are left out)."""
    found: dict[str, dict[str, Usage]] = {scope: {} for scope in scopes}
    names = ["scope", *(c.name for c in _counter_columns)]
    for values in rows:
        row = dict(zip(names, values, strict=True))
        if row["scope"] not in found:
            continue
        for period, key in keys_now[row["scope"]].items():
            if row[f"{period}_key"] == key:
                found[row["scope"]][key] = Usage(row[f"{period}_spent"], row[f"{period}_count"])
    return found


_COUNTERS_IN = Prepared(
    {
        dialect: sa.text(
            f"SELECT scope, {', '.join(c.name for c in _counter_columns)} FROM spend_counters"
            f" WHERE {where}"
        )
        for dialect, where in any_of("scope", "scopes").items()
    }
)


# Adds what a batch approved to each scope's current periods; a period that has rolled over
# starts again from what this batch added. Relative, so concurrent give-backs are never lost.
def _add_to_counters_sql() -> str:
    columns = [f"{p}_{part}" for p in PERIODS for part in ("key", "spent", "count")]
    updates = []
    for p in PERIODS:
        same = f"spend_counters.{p}_key = excluded.{p}_key"
        for part in ("spent", "count"):
            updates.append(
                f"{p}_{part} = CASE WHEN {same} "
                f"THEN spend_counters.{p}_{part} + excluded.{p}_{part} "
                f"ELSE excluded.{p}_{part} END"
            )
        updates.append(f"{p}_key = excluded.{p}_key")
    return (
        f"INSERT INTO spend_counters (scope, {', '.join(columns)}) "
        f"VALUES (:scope, {', '.join(':' + c for c in columns)}) "
        f"ON CONFLICT (scope) DO UPDATE SET {', '.join(updates)}"
    )


_ADD_TO_COUNTERS = Prepared({"*": sa.text(_add_to_counters_sql())})


def add_to_counters(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add per-scope increments: rows of scope, <period>_key, <period>_spent, <period>_count
    (all of them in every row; on the DBAPI cursor)."""
    _ADD_TO_COUNTERS.many(conn, rows)


def adjust_payment(
    conn: Connection, scope: str, keys: Mapping[str, str], spent_delta: int, count_delta: int
) -> None:
    """Change what a payment counted, in the periods it was counted in (if still current)."""
    c = spend_counters.c
    updates: dict[str, Any] = {}
    for period, key in keys.items():
        same = c[f"{period}_key"] == key
        updates[f"{period}_spent"] = sa.case(
            (same, c[f"{period}_spent"] + spent_delta), else_=c[f"{period}_spent"]
        )
        updates[f"{period}_count"] = sa.case(
            (same, c[f"{period}_count"] + count_delta), else_=c[f"{period}_count"]
        )
    conn.execute(spend_counters.update().where(c.scope == scope).values(**updates))


def record_payment_scopes(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Remember which counters payments went into (rows of payment_id, payer_id, mandate_id,
    period_keys as JSON)."""
    insert_many(conn, payment_scopes, rows)


def payment_scope(
    conn: Connection, payment_id: str
) -> tuple[str, str | None, dict[str, str]] | None:
    """(payer, mandate, period keys) a payment counted under, if it counted."""
    row = conn.execute(
        sa.select(
            payment_scopes.c.payer_id, payment_scopes.c.mandate_id, payment_scopes.c.period_keys
        ).where(payment_scopes.c.payment_id == payment_id)
    ).first()
    return (row[0], row[1], json.loads(row[2])) if row else None
