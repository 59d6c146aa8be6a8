"""Orders refused as dated ahead of the gateway's clock: the same bytes are refused again.

An order whose `ts` is more than 300 s from the gateway's clock is `rejected` with
`stale_order`, and it is not recorded (contract section 5). For an order dated *behind*, time
only makes it older. An order dated *ahead* comes into the window as time passes: the same
bytes, delivered again by the broker after a crash or sent again by a firmware, would then be
decided and could be approved after the device was told the payment failed: two different final
results for one order, which section 6 (Delivery) rules out.

So each such refusal is remembered as (device id, order id, payload digest) until the order's
own `ts` is 300 s past, when it is stale by age anyway, and the same payload is refused again
until then. A different payload under that order id is a new order, decided as if the refused
one had never come (it was never recorded): a device that corrects its clock and signs the order
again is served.

What it costs the order path: the lookup rides in the statement that finds a batch's known
orders (`seen_later`), and rows are written only by a batch that refuses an order dated ahead,
which also deletes the expired ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from devices.contract import Result
from gateway.orders import store as order_store
from wallet.prepared import Prepared

early_refusals = sa.Table(
    "early_refusals",
    order_store.metadata,
    sa.Column("device_id", sa.String, primary_key=True),
    sa.Column("order_id", sa.String, primary_key=True),
    sa.Column("payload_sha256", sa.String, primary_key=True),
    sa.Column("expires_ts", sa.BigInteger, nullable=False),
)
Refused = tuple[str, str, str]  # (device id, order id, payload digest)
Seen = tuple[dict[tuple[str, str], order_store.KnownOrder], set[Refused]]

# The batch's known orders (a result) and its early refusals (none), in one statement.
_SEEN = Prepared(
    {
        dialect: sa.text(
            f"SELECT {order_store.KNOWN_COLUMNS} {by_keys.format(table='orders')}"
            " UNION ALL SELECT o.device_id, o.order_id, o.payload_sha256, NULL"
            f" {by_keys.format(table='early_refusals')}"
        )
        for dialect, by_keys in order_store.BY_KEYS.items()
    }
)


def seen_later(conn: Connection, keys: Iterable[tuple[str, str]]) -> Callable[[], Seen]:
    """The recorded orders among these (device id, order id) keys, and the refusals of orders
    dated ahead under them; read later, as `order_store.known_orders_later`."""
    keys = set(keys)
    if not keys:
        return lambda: ({}, set())
    rows = _SEEN.later(conn, order_store.key_params(conn, keys))

    def seen() -> Seen:
        known, refused = {}, set()
        for device_id, order_id, digest, result_json in rows():
            if result_json is None:
                refused.add((device_id, order_id, digest))
            else:
                result = Result.from_payload(json.loads(result_json))
                known[(device_id, order_id)] = order_store.KnownOrder(digest, result)
        return known, refused

    return seen


def remember(conn: Connection, refused: dict[Refused, int], now_ts: int) -> None:
    """Remember orders refused as dated ahead, each until its expiry (Unix seconds); forget
    those whose time has passed. Already remembered ones are left as they are."""
    if not refused:
        return
    conn.execute(early_refusals.delete().where(early_refusals.c.expires_ts < now_ts))
    rows: list[dict[str, Any]] = [
        {"device_id": d, "order_id": o, "payload_sha256": h, "expires_ts": expires}
        for (d, o, h), expires in refused.items()
    ]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(early_refusals).on_conflict_do_nothing(), rows)
