"""The order pipeline's workers: take orders off the MQTT queue in batches, decide, publish.

Durability: paho acknowledges an order (PUBACK) when its callback returns, i.e. once it is
queued, not once it is decided. A gateway crash can therefore lose an order that was queued
but not committed; the device SDK re-sends any order without a result, and idempotency by
(device id, order id) turns that re-send into the first answer, never a second payment.
Results are written to the outbox in the same transaction as the money and published after
the commit; the housekeeper publishes whatever a crash left unpublished.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import timedelta

from gateway.mqtt.client import GatewayClient, Inbound
from gateway.orders import decide as payments
from gateway.orders import store as order_store
from gateway.service import Context

log = logging.getLogger("kym.pipeline")
MAX_BATCH = 100
PUBACK_WAIT_S = 5.0


class Publisher:
    """Publishes outbox entries with QoS 1 and marks those the broker acknowledged."""

    def __init__(self, ctx: Context, client: GatewayClient) -> None:
        self.ctx, self.client = ctx, client
        self._lock = threading.Lock()

    def __call__(self, entries: list[tuple[int, str, str]]) -> None:
        if not entries:
            return
        with self._lock:
            infos = [(i, self.client.publish(topic, token.encode())) for i, topic, token in entries]
        acked = []
        deadline = time.monotonic() + PUBACK_WAIT_S
        for outbox_id, info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                continue  # not connected: the housekeeper publishes it later
            if info.is_published():
                acked.append(outbox_id)
        if acked:
            now = self.ctx.clock()
            self.ctx.db.run(lambda conn: order_store.mark_published(conn, acked, now))


class Worker(threading.Thread):
    """Takes up to MAX_BATCH orders at a time and decides them in one transaction."""

    def __init__(self, ctx: Context, inbox: queue.Queue[Inbound], publisher: Publisher) -> None:
        super().__init__(name="kym-worker", daemon=True)
        self.ctx, self.inbox, self.publisher = ctx, inbox, publisher
        self.keyring = payments.KeyRing()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            self.process(batch)

    def process(self, messages: list[Inbound]) -> None:
        """Decide a batch; if it fails as a whole, decide each message alone so one bad
        message cannot hold up the rest."""
        try:
            self.publisher(self._decide(messages))
        except Exception:
            if len(messages) == 1:
                log.exception(
                    "could not decide an order on %s; the device may re-send it", messages[0].topic
                )
                return
            log.warning("a batch of %d failed; deciding one by one", len(messages), exc_info=True)
            for message in messages:
                self.process([message])

    def _decide(self, messages: list[Inbound]) -> list[tuple[int, str, str]]:
        now = self.ctx.clock()
        checked = payments.check_messages(
            self.ctx, self.keyring, [(m.topic, m.payload) for m in messages], now
        )
        return payments.decide_batch(self.ctx, checked, now) if checked else []

    def stop(self) -> None:
        self.stopping.set()


class Housekeeper(threading.Thread):
    """Expires approvals and holds on time and publishes what a crash left in the outbox."""

    def __init__(self, ctx: Context, publisher: Publisher, interval_s: float = 0.5) -> None:
        super().__init__(name="kym-housekeeper", daemon=True)
        self.ctx, self.publisher, self.interval_s = ctx, publisher, interval_s
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - logged; the next tick tries again
                log.exception("housekeeping failed")

    def tick(self) -> None:
        """One round: approvals, holds, then stale outbox entries."""
        payments.expire_approvals(self.ctx)
        payments.expire_holds(self.ctx)
        older_than = self.ctx.clock() - timedelta(seconds=2)
        with self.ctx.db.read() as conn:
            stale = order_store.unpublished(conn, older_than)
        if stale:
            log.info("publishing %d results left in the outbox", len(stale))
            self.publisher(stale)

    def stop(self) -> None:
        self.stopping.set()
