"""Deciding the orders devices send: one database transaction per batch, then publish.

`decide_messages` is what an MQTT worker calls with the batch it took off its queue. In one
transaction it checks each message (`intake`: decoding, signature, schema), locks the senders
and loads their state (`batch`), answers replays and refuses stale orders, decides each order
with one `match` on its type (`payments` for pay and hold, `adjustments` for capture, void and
refund), and writes the money, the counters, the signed results (outbox) and the audit entries
(`batch.finish`). The worker publishes the outbox entries after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import assert_never

from sqlalchemy import Connection

from devices import store as device_store
from devices import wire
from devices.contract import Reason, Result, Status
from gateway.context import Context, OutboxEntry
from gateway.errors import ORDER_REFUSALS, reason_of
from gateway.events import metrics
from gateway.orders import adjustments, early, payments
from gateway.orders import store as order_store
from gateway.orders.batch import Batch, BulkRefused, finish, load_state, lock_senders, order_audit
from gateway.orders.cache import CacheMoved, StateCache
from gateway.orders.intake import Checked, KeyRing, check_messages
from gateway.orders.signer import Signer
from gateway.orders.verified import Verified
from wallet import store as wallet_store
from wallet.prepared import pipelined

FRESHNESS = timedelta(seconds=300)
MAX_INT64 = 2**63 - 1  # the largest BIGINT (early_refusals.expires_ts)
log = logging.getLogger("kym.orders")


def decide_messages(
    ctx: Context,
    keyring: KeyRing,
    messages: Iterable[tuple[str, bytes]],
    now: datetime,
    outcomes: metrics.Outcomes | None = None,
    ahead: list[Verified | None] | None = None,
    signer: Signer | None = None,
    along: Callable[[Connection], None] | None = None,
) -> list[OutboxEntry]:
    """Decide a batch of (topic, payload) in one transaction; the outbox entries to publish.
    `outcomes`, when given, is filled with what the results count for in the metrics
    (`metrics.outcomes_of`, by the transaction that returns), for the caller to observe once
    it has committed. `ahead`: what was found of each message's signature before, if it was
    checked ahead (`gateway.orders.verifier`); `signer`: the child that signs the results
    meanwhile (`gateway.orders.signer`), else they are signed here; `along`: written in the
    same transaction (the worker marks the results the broker acknowledged).

    The batch's pays and holds are placed together at its end; should an account refuse the
    sum, the transaction is rolled back and the batch decided again placing them one by one.

    The worker's copies (`StateCache`) are checked against the cache counter in the round trip
    that locks the senders, not in one of its own first; should the counter have moved, the
    transaction is rolled back and the batch decided again with the counter read first."""
    grace = timedelta(seconds=ctx.settings.rotation_grace_s)
    messages = list(messages)
    retired: list[str] = []  # certificates a rotated-in one's first use superseded

    def work(conn: Connection, bulk: bool, synced: bool) -> list[OutboxEntry]:
        retired.clear()  # this attempt's, not a rolled-back one's
        if synced:  # first: drop the worker's copies if anything changed
            keyring.state.sync(conn)
        if along is not None:
            along(conn)
        checked = check_messages(conn, keyring, messages, now, grace, ahead)
        if not checked:
            return []
        bulk = bulk and placeable_together(checked)
        batch = load_batch(
            conn, checked, now, bulk, keyring.state, check_cache=not synced, clock=ctx.clock
        )
        for serial in sorted({c.first_use for c in checked if c.first_use}):
            device_store.mark_certificate_used(conn, serial, now)
            retired.extend(device_store.retire_older_certificates(conn, serial, now))
        for item in checked:
            decide_one(batch, item)
        entries = finish(ctx, batch, signer, commit=True)  # nothing is written after it
        if outcomes is not None:  # this attempt's, not a rolled-back one's
            outcomes.clear()
            outcomes.update(metrics.outcomes_of(payload for _, payload in batch.outgoing))
        return entries

    # each goes from False to True once at most; a worker's first batch reads the counter first
    bulk, synced = True, keyring.state.version is None
    while True:
        try:
            entries = ctx.db.run(partial(work, bulk=bulk, synced=synced), held=True)
            if retired:
                publish_superseded(ctx, retired)
            return entries
        except BulkRefused as refused:
            log.info("placing %s one by one: %s", refused, "an account refused their sum")
            bulk = False
        except CacheMoved as moved:
            log.info("deciding the batch again: %s", moved)
            synced = True


def publish_superseded(ctx: Context, serials: list[str]) -> None:
    """A new CRL with the certificates a rotation superseded (committed already); never
    raises: the decisions stand, and the next publication lists them anyway."""
    from gateway.service import publish_crl  # the service layer, above the order path

    try:
        publish_crl(ctx)
        log.info("certificates %s superseded: the CRL lists them", ", ".join(serials))
    except Exception:  # noqa: BLE001 - logged; the CRL is refreshed again later
        log.exception("could not publish the CRL after a certificate rotation")


def placeable_together(checked: list[Checked]) -> bool:
    """Whether the batch's pays and holds can be placed at its end as if one by one: only
    pays and holds, and no payer paid within the batch (so each payer's wallet sees nothing but
    its own debits, as when placed in order)."""
    orders = [c.order for c in checked if c.order is not None]
    if not all(isinstance(o, wire.PayOrder | wire.HoldOrder) for o in orders):
        return False
    return not {o.device_id for o in orders} & {getattr(o, "payee", None) for o in orders}


def load_batch(
    conn: Connection,
    checked: list[Checked],
    now: datetime,
    bulk: bool,
    cache: StateCache,
    *,
    check_cache: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> Batch:
    """Lock the senders and load their state, the payees and known orders in a few queries;
    `bulk`: place the pays and holds at `finish`, from the payers' wallets read here;
    `check_cache`: read the cache counter with them (`StateCache.check_later`); `clock`: the
    batch's time read again once the senders are locked (`batch.load_state`)."""
    orders = [c.order for c in checked if c.order is not None]
    senders = {o.device_id for o in orders}
    payees = {o.payee for o in orders if isinstance(o, wire.PayOrder | wire.HoldOrder)}
    mandates = cache.mandates(conn, senders)  # copies: read here only when not held yet
    scopes = senders | {m.id for found in mandates.values() for m in found}
    with pipelined(conn):  # one round trip on PostgreSQL, in this order: the lock first
        moved = cache.check_later(conn) if check_cache else None
        locked = lock_senders(conn, senders, payees, cache)
        # the senders are locked by then: their counters and wallets as they are committed
        counted = order_store.counters_later(conn, scopes)
        seen = early.seen_later(conn, [(o.device_id, o.order_id) for o in orders])
        wallets = wallet_store.get_wallets_later(conn, senders) if bulk else None
    if moved is not None:
        moved()  # raises CacheMoved if the copies used so far may be stale
    batch = load_state(conn, now, senders, payees, cache, locked, counted, clock)
    batch.known, batch.refused_early = seen()
    if wallets is not None:
        batch.placements = []
        found = wallets()
        batch.available = {p: found[p].available_minor if p in found else 0 for p in senders}
    return batch


def decide_one(batch: Batch, item: Checked) -> None:
    """Answer one checked message within the batch: a rejection, a replay, or a decision."""
    if item.reason is not None:
        reject(batch, item.device_id, item.order_id, item.reason)
        return
    assert item.order is not None and item.payload is not None
    order, digest = item.order, wire.payload_digest(item.payload)
    known = batch.known.get((item.device_id, order.order_id))
    if known is not None and known.payload_sha256 != digest:
        reject(batch, item.device_id, order.order_id, Reason.IDEMPOTENCY_CONFLICT, signed=True)
        return
    if known is not None:  # a replay: the latest answer again, nothing decided anew
        batch.answer(replace(known.result, duplicate=True, ts=batch.ts))
        return
    if stale(batch, order, digest):
        reject(batch, item.device_id, order.order_id, Reason.STALE_ORDER, signed=True)
        return
    if item.outside_validity:  # its bundle could never verify: as if no certificate signed it
        reject(batch, item.device_id, order.order_id, Reason.INVALID_SIGNATURE)
        return
    result = decide_order(batch, order)
    batch.new_orders.append(
        order_store.order_row(
            order.device_id, order.order_id, digest, order.type, result, batch.now, item.token
        )
    )
    batch.known[(order.device_id, order.order_id)] = order_store.KnownOrder(digest, result)
    batch.answer(result)
    batch.audit.append(
        (
            f"device:{order.device_id}",
            f"order.{result.status}",
            order.device_id,
            order_audit(order, result, digest),
        )
    )


def stale(batch: Batch, order: wire.Order, digest: str) -> bool:
    """Whether an order is refused as `stale_order`: dated more than FRESHNESS away from the
    batch's time, or these very bytes were refused before as dated ahead (`gateway.orders.early`:
    remembered for the batch to write, until the order is stale by age)."""
    window, refused = int(FRESHNESS.total_seconds()), (order.device_id, order.order_id, digest)
    if order.ts - batch.ts > window:  # kept as long as a 64-bit column counts (for ever)
        batch.refusing_early[refused] = min(order.ts + window, MAX_INT64)
        return True
    return batch.ts - order.ts > window or refused in batch.refused_early


def reject(
    batch: Batch, device_id: str, order_id: str | None, reason: Reason, *, signed: bool = False
) -> None:
    """A `rejected` result; recorded in the audit trail (not as an order: nothing was decided
    about money), so that every refusal can be explained later. `signed`: the device's own
    signature verified the message (a conflicting or stale order), so the entry is the device's
    and belongs to the evidence of the payment its order id names; else it is only the topic's
    (anyone may publish a forgery naming another device's order)."""
    batch.answer(batch.result(device_id, order_id, Status.REJECTED, reason=reason))
    actor = f"device:{device_id}" if signed else f"topic:{device_id}"
    data = {"order_id": order_id, "reason": reason.value}
    batch.audit.append((actor, "order.rejected", device_id if signed else None, data))


def decide_order(batch: Batch, order: wire.Order, *, owner_approved: bool = False) -> Result:
    """Steps 2 to 6 for one order; a refusal becomes a `declined` result and leaves nothing of
    the order behind. `owner_approved`: the owner approved this pay or hold just now.

    A pay or hold needs no savepoint: every refusal comes before its first write, except the
    wallet's own, which takes back what it wrote (`wallet.payments.place`). A savepoint costs
    two statements an order, a third of a batch's time on SQLite. Adjustments keep one."""
    try:
        match order:
            case wire.PayOrder() | wire.HoldOrder():
                return payments.decide_payment(batch, order, owner_approved=owner_approved)
            case wire.CaptureOrder() | wire.VoidOrder() | wire.RefundOrder():
                return adjust(batch, order)
            case _:
                assert_never(order)
    except ORDER_REFUSALS as refusal:
        return declined(batch, order, reason_of(refusal))


def adjust(batch: Batch, order: wire.CaptureOrder | wire.VoidOrder | wire.RefundOrder) -> Result:
    """A capture, void or refund inside a savepoint: a refusal rolls back what it wrote."""
    savepoint = batch.conn.begin_nested()
    try:
        match order:
            case wire.CaptureOrder():
                result = adjustments.capture(batch, order)
            case wire.VoidOrder():
                result = adjustments.void(batch, order)
            case wire.RefundOrder():
                result = adjustments.refund(batch, order)
            case _:
                assert_never(order)
    except ORDER_REFUSALS:
        savepoint.rollback()
        raise
    savepoint.commit()
    return result


def declined(batch: Batch, order: wire.Order, reason: Reason) -> Result:
    """A `declined` result naming the order's amount, currency and payment where it has them."""
    return batch.result(
        order.device_id,
        order.order_id,
        Status.DECLINED,
        reason=reason,
        amount=getattr(order, "amount", None),
        currency=getattr(order, "currency", None),
        payment_id=getattr(order, "payment_id", None),
    )
