"""One decision transaction's working set: loaded once per batch, written once at its end.

`load_state` locks the senders (in id order) and reads what deciding for them needs: devices,
payees, owners' timezones, rules, mandates and the current period counters. Deciding appends
results, events, audit entries, order rows and counter increments to the `Batch`; `finish`
signs the messages into the outbox and writes the rest, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

from devices import store as device_store
from devices import wire
from devices.contract import Result, Status, results_topic
from devices.registry import Device
from devices.registry import Status as DeviceStatus
from gateway import store
from gateway.audit import store as audit_store
from gateway.consent import store as consent_store
from gateway.consent.mandates import Mandate
from gateway.consent.periods import period_keys
from gateway.consent.rules import NO_USAGE, Rules, Usage
from gateway.context import Context, OutboxEntry
from gateway.events import store as event_store
from gateway.events.collect import batch_events as record_events
from gateway.events.collect import likely_recipients
from gateway.evidence.record import attach_consents, subjects
from gateway.orders import early
from gateway.orders import store as order_store
from gateway.orders.cache import StateCache, known_merchants
from gateway.orders.signer import Signer
from wallet.bulk import move_in_bulk, record_in_bulk
from wallet.ledger import PaymentRequest
from wallet.prepared import Prepared, any_of, as_list, commit_in_pipeline, pipelined

AuditEntry = tuple[str, str, str | None, Any]  # (actor, action, device_id, data)


@dataclass
class Batch:
    """What one transaction needs and produces."""

    conn: Connection
    now: datetime
    devices: dict[str, Device] = field(default_factory=dict)
    merchants: dict[str, dict[str, Any]] = field(default_factory=dict)
    timezones: dict[str, ZoneInfo] = field(default_factory=dict)
    frozen: set[str] = field(default_factory=set)  # owners who froze their devices' payments
    rules: dict[str, Rules | None] = field(default_factory=dict)
    mandates: dict[str, list[Mandate]] = field(default_factory=dict)
    known: dict[tuple[str, str], order_store.KnownOrder] = field(default_factory=dict)
    refused_early: set[early.Refused] = field(default_factory=set)  # refused before as dated ahead
    refusing_early: dict[early.Refused, int] = field(default_factory=dict)  # now, until when
    usage: dict[str, dict[str, Usage]] = field(default_factory=dict)  # scope -> period key -> usage
    outgoing: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    new_orders: list[dict[str, Any]] = field(default_factory=list)
    new_scopes: list[dict[str, Any]] = field(default_factory=list)
    increments: dict[str, dict[str, Any]] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    # owners' and merchants' events beyond those `finish` reads off the batch: (about, type, data)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # Pays and holds to place at `finish`, all at once (None: each is placed when decided).
    placements: list[PaymentRequest] | None = None
    # gateway.funding.auto's working set: the owners' sources, draws planned and made
    funding: dict[str, Any] = field(default_factory=dict)
    # the worker's copies (synced first in this transaction), None when deciding without one
    cache: StateCache | None = None

    @property
    def ts(self) -> int:
        return int(self.now.timestamp())

    def result(self, device_id: str, order_id: str | None, status: Status, **fields: Any) -> Result:
        """A result stamped with this batch's time."""
        return Result(device_id, order_id, status, self.ts, **fields)

    def answer(self, result: Result) -> None:
        """Send a result to its device (after the commit)."""
        self.send(result.device_id, result.to_payload())

    def send(self, device_id: str, payload: dict[str, Any]) -> None:
        """Send a result or event payload to a device (after the commit)."""
        self.outgoing.append((results_topic(device_id), payload))

    def count(self, scope: str, keys: dict[str, str], amount_minor: int) -> None:
        """Count an approved pay or hold in the scope's current periods (written at `finish`)."""
        current = self.usage.setdefault(scope, {})
        row = self.increments.setdefault(scope, {"scope": scope})
        for period, key in keys.items():
            used = current.get(key, NO_USAGE)
            current[key] = Usage(used.spent_minor + amount_minor, used.count + 1)
            key_column, spent, count = _counter_columns(period)
            row[key_column] = key
            row[spent] = row.get(spent, 0) + amount_minor
            row[count] = row.get(count, 0) + 1

    def give_back(self, payment_id: str, spent_delta: int, count_delta: int) -> None:
        """A capture, void, expiry or refund changes what its payment counts in its periods."""
        scope = order_store.payment_scope(self.conn, payment_id)
        if scope is None or (spent_delta == 0 and count_delta == 0):
            return
        payer_id, mandate_id, keys = scope
        for counted in [payer_id] + ([mandate_id] if mandate_id else []):
            pending = self.increments.get(counted)
            if pending is not None and all(pending.get(f"{p}_key") == k for p, k in keys.items()):
                for period in keys:  # counted in this very batch: not in the database yet
                    pending[f"{period}_spent"] += spent_delta
                    pending[f"{period}_count"] += count_delta
            else:
                order_store.adjust_payment(self.conn, counted, keys, spent_delta, count_delta)


@lru_cache(maxsize=16)  # a few periods; their names formatted once, not three times an order
def _counter_columns(period: str) -> tuple[str, str, str]:
    """The spend counters' columns of a period: its key, spent and count."""
    return f"{period}_key", f"{period}_spent", f"{period}_count"


def load_state(
    conn: Connection,
    now: datetime,
    senders: set[str],
    payees: set[str],
    cache: StateCache | None = None,
    locked: Callable[[], dict[str, Device]] | None = None,
    counted: Callable[[], list[Any]] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Batch:
    """Lock the sender devices (in id order) and load what deciding for them needs; owners'
    settings, rules and mandates through `cache` when given (synced in this transaction).
    `locked`, `counted`: the devices as `lock_senders` read them, and the counters of the
    senders and their mandates as `order_store.counters_later` read them, already.

    `clock`: the batch's time is read again once the senders are locked (never earlier than
    `now`). A transaction that locked them first and committed then never holds a later time
    than this batch: a period key older than the one it wrote would start its counters again
    (a batch timed at 23:59:59.95 that waited for one timed at 00:00:00.05 wiped the new day's
    spending)."""
    batch = Batch(conn, now, cache=cache)
    batch.devices = (locked or lock_senders(conn, senders, payees, cache))()
    if clock is not None:
        now = batch.now = max(now, clock())
    others = (payees | senders) - set(batch.devices)
    if cache is None:
        batch.merchants = store.merchants_by_id(conn, others)
    else:
        batch.merchants = cache.merchants(conn, others)
    owner_ids = {d.owner_id for d in batch.devices.values() if d.id in senders}
    if cache is None:
        owners = store.owner_settings(conn, owner_ids)
        batch.rules = consent_store.load_rules(conn, senders)
        batch.mandates = consent_store.load_mandates(conn, senders)
    else:
        owners = cache.owner_settings(conn, owner_ids)
        batch.rules = cache.rules(conn, senders)
        batch.mandates = cache.mandates(conn, senders)
    batch.timezones = {k: ZoneInfo(tz) for k, (tz, _) in owners.items()}
    batch.frozen = {k for k, (_, frozen) in owners.items() if frozen}
    keys_now: dict[str, dict[str, str]] = {}
    for device_id in senders & set(batch.devices):
        keys = period_keys_now(now, batch.timezones[batch.devices[device_id].owner_id])
        keys_now[device_id] = keys
        for mandate in batch.mandates.get(device_id, []):
            keys_now[mandate.id] = keys
    rows = (counted or order_store.counters_later(conn, keys_now))()
    batch.usage = order_store.usage_of(rows, keys_now, keys_now)
    return batch


# The senders locked in id order (FOR UPDATE on PostgreSQL; SQLite's write transaction holds
# the whole database), and payee devices read, on the DBAPI cursor: Core's expanding IN cost
# about 6 % of a one-order batch. The same rows and Device values as `devices.store`.
_DEVICE_COLUMNS = [c for c in device_store.devices.c if c.name != "updated_at"]
_DEVICES_SELECT = f"SELECT {', '.join(c.name for c in _DEVICE_COLUMNS)} FROM devices WHERE "
_LOCK_DEVICES = Prepared(
    {
        "sqlite": sa.text(_DEVICES_SELECT + any_of("id", "ids")["sqlite"] + " ORDER BY id"),
        "postgresql": sa.text(
            _DEVICES_SELECT + any_of("id", "ids")["postgresql"] + " ORDER BY id FOR UPDATE"
        ),
    }
)
_READ_DEVICES = Prepared(
    {dialect: sa.text(_DEVICES_SELECT + where) for dialect, where in any_of("id", "ids").items()}
)
_RESULT_PROCESSORS: dict[str, list[tuple[int, Any]]] = {}


def lock_senders(
    conn: Connection, senders: set[str], payees: set[str], cache: StateCache | None
) -> Callable[[], dict[str, Device]]:
    """Lock the senders (in id order) and read the payees that are devices, by id; read later
    (inside `wallet.prepared.pipelined` on PostgreSQL, once the block has ended)."""
    merchants = known_merchants(cache, payees)  # not devices: no need to look for them there
    others = payees - merchants - senders
    reads = [
        prepared.later(conn, {"ids": as_list(conn, sorted(ids))})
        for prepared, ids in ((_LOCK_DEVICES, senders), (_READ_DEVICES, others))
        if ids
    ]
    return lambda: {row[0]: _device(conn.dialect, row) for rows in reads for row in rows()}


def _device(dialect: sa.Dialect, row: tuple[Any, ...]) -> Device:
    """A Device from a raw row, its values processed as Core would (SQLite's datetime text,
    its 0/1 booleans)."""
    processors = _RESULT_PROCESSORS.get(dialect.name)
    if processors is None:
        processors = _RESULT_PROCESSORS[dialect.name] = [
            (i, processor)
            for i, column in enumerate(_DEVICE_COLUMNS)
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))
        ]
    values = list(row)
    for i, processor in processors:
        values[i] = processor(values[i])
    fields = dict(zip((c.name for c in _DEVICE_COLUMNS), values, strict=True))
    return Device(**{**fields, "status": DeviceStatus(fields["status"])})


def period_keys_now(now: datetime, tz: ZoneInfo) -> dict[str, str]:
    """The period keys an order placed now counts under, e.g. {"day": "day:2026-11-27"}
    (a fresh dict each call: callers keep it in rows)."""
    return dict(_period_keys(now, tz))


@lru_cache(maxsize=256)  # a batch asks once per order with the same time and a few zones
def _period_keys(now: datetime, tz: ZoneInfo) -> tuple[tuple[str, str], ...]:
    return tuple((str(period), key) for period, key in period_keys(now, tz).items())


class BulkRefused(Exception):
    """An account refused the batch's summed moves: roll back and place them one by one."""


def finish(
    ctx: Context, batch: Batch, signer: Signer | None = None, *, commit: bool = False
) -> list[OutboxEntry]:
    """Place the batch's pays and holds, then sign its results into the outbox and chain its
    audit entries; same transaction. With a `signer`, its child signs the results while the
    other rows are written. `commit`: end the transaction with the inserts (the caller writes
    nothing after them).

    On PostgreSQL that is two round trips (psycopg's pipeline mode): the accounts' moves with
    the audit log's state, then every insert (and the COMMIT); each round trip cost about 1 ms
    of waiting on a busy machine, beyond the statements' own time, and there were eight."""
    conn = batch.conn
    early.remember(conn, batch.refusing_early, batch.ts)  # rarely any: not in a round trip
    asked = likely_recipients(batch) if batch.audit else set()
    with pipelined(conn):
        moved = move_in_bulk(conn, batch.placements, batch.now) if batch.placements else None
        audit_state = audit_store.lock_state_later(conn) if batch.audit else None
        hooked = event_store.webhook_parties_later(conn, asked)  # before any event is written
    if moved is not None and not moved():
        raise BulkRefused(f"{len(batch.placements or [])} payments")
    payloads = [payload for _, payload in batch.outgoing]
    if signer is not None:
        tokens = signer.sign_all(payloads)
    else:
        key, jose = ctx.pki.signer.private_key, ctx.signer_jose
        tokens = lambda: [wire.sign(payload, key, jose) for payload in payloads]  # noqa: E731
    events = record_events(batch)  # reads what it needs first: outside the pipeline
    with pipelined(conn):  # inserts only: one round trip on PostgreSQL
        if batch.placements:
            record_in_bulk(conn, batch.placements, batch.now)
        order_store.record_orders(conn, batch.new_orders)
        attach_consents(batch)  # evidence: the consent in the decision's audit entry
        order_store.record_payment_scopes(conn, batch.new_scopes)
        order_store.add_to_counters(conn, list(batch.increments.values()))
        if audit_state is not None:
            audit_store.append_to(conn, batch.now, batch.audit, audit_state())
        event_store.record(conn, events, batch.now, quiet=asked - hooked())
        topics = [topic for topic, _ in batch.outgoing]
        signed = list(zip(topics, tokens(), strict=True))
        ids = order_store.enqueue_later(conn, signed, batch.now, subjects(batch.outgoing))
        if commit:
            commit_in_pipeline(conn)
    return [(i, topic, token) for i, (topic, token) in zip(ids(), signed, strict=True)]


def order_audit(
    order: wire.Order, result: Result, order_sha256: str | None = None
) -> dict[str, Any]:
    """What the audit trail keeps of a decided order. Money an automatic top-up or a credit
    line moved out of the owner's sources for it is there too (`funded_by`, only when some
    did): those draws have no entry of their own. `order_sha256`: the device's order's
    `wire.payload_digest`, which ties the entry to that very order (a bundle's verifier
    checks it against the order JWS the bundle holds)."""
    audit = {
        "order_id": order.order_id,
        "type": order.type,
        "reason": None if result.reason is None else result.reason.value,
        "payment_id": result.payment_id,
        "amount": result.amount,
        "currency": result.currency,
        "payee": getattr(order, "payee", None),
    }
    if order_sha256 is not None:
        audit["order_sha256"] = order_sha256
    if result.funded_by:
        audit["funded_by"] = [_funding_audit(funded) for funded in result.funded_by]
    return audit


def _funding_audit(funded: dict[str, Any]) -> dict[str, Any]:
    """One `funded_by` entry as audit content: the source, the integer amount, the plan."""
    entry = {"source": str(funded["source"]), "amount": int(funded["amount"])}
    if "plan_id" in funded:
        entry["plan_id"] = str(funded["plan_id"])
    return entry


def scope_row(payment_id: str, payer_id: str, mandate_id: str | None, keys: dict[str, str]) -> Any:
    """Which counters a payment went into (so that its changes can be given back later)."""
    return {
        "payment_id": payment_id,
        "payer_id": payer_id,
        "mandate_id": mandate_id,
        "period_keys": orjson.dumps(keys).decode(),
        "consent_json": None,  # gateway.evidence.record fills these in when it is decided
        "rules_salt": None,
    }
