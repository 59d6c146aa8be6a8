"""The order pipeline's workers: take orders off the MQTT queue in batches, decide, publish.

Durability: an order is acknowledged to the broker (PUBACK) only after the transaction that
decides it has committed (`GatewayClient.ack`); until then the broker keeps it in the worker
identity's persistent session, and a crash at any moment leaves it there to be delivered again.
A redelivered order that was decided already is a replay: idempotency by (device id, order id)
answers it with the stored result, marked `"duplicate": true`, and moves nothing.

While the database is unreachable, or answers but refuses writes (read-only, its write lock
held elsewhere), a worker keeps its batch and tries again; a message that fails on its own while
the database takes writes gets a final `rejected` result after MAX_TRIES, so it cannot hold the
broker's in-flight window for ever.

Results are written to the outbox in the same transaction as the money and published after the
commit without waiting for the broker's PUBACK; the worker marks what the broker acknowledged
in a later batch's transaction (the housekeeper, while the worker is quiet), and the
housekeeper publishes again what a crash or a lost connection left unpublished.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import paho.mqtt.client as mqtt
from sqlalchemy import Connection

from gateway.context import Context
from gateway.db_faults import FAULT_LOG_EVERY_S, database_fault, one_line
from gateway.events import metrics
from gateway.mqtt.client import GatewayClient, Inbound
from gateway.mqtt.throttle import Throttle
from gateway.orders import store as order_store
from gateway.orders.decide import decide_messages
from gateway.orders.intake import KeyRing
from gateway.orders.signer import Signer
from gateway.orders.undecidable import reject_undecidable
from gateway.orders.verifier import Verifier

log = logging.getLogger("kym.pipeline")
MAX_BATCH = 100  # the broker's max_inflight_messages (200) lets the next batch arrive meanwhile
MAX_TRIES = 3
RETRY_PAUSE_S = 0.5
# While the database keeps the worker waiting, the pause between tries grows with the wait (a
# tenth of it, at most this long): a long outage is not tried every half second (on a full
# disk each try decides a whole batch again), and adds at most a tenth of itself to recovery.
MAX_WAITING_PAUSE_S = 4.0
# Another gateway process may still hold an entry unacknowledged: republishing sooner only
# duplicates results under load. A crash's unpublished results go out this much later.
REPUBLISH_AFTER = timedelta(seconds=10)
MARK_EVERY_S = 0.1
# The worker marks what the broker acknowledged in its batch's own transaction; the housekeeper
# marks only for a worker that has not taken a batch for this long. On SQLite a write by
# another connection makes the worker's connection drop its whole page cache: marking every
# 0.1 s on its own cost the worker about 7 page reads (pread64) a payment at 100 orders/s.
WORKER_MARKS_WITHIN_S = 1.0
# A young generation collected every 10,000 net allocations instead of 700: a batch's objects
# mostly die before it (see settle_heap).
GC_THRESHOLDS = (10_000, 10, 10)
Entries = list[tuple[int, str, str]]


def settle_heap() -> None:
    """Once a serving process has started: collect, then move every object alive into the
    collector's permanent generation (`gc.freeze`), and collect the young less often.

    Modules, SQLAlchemy's metadata and the app make about 170,000 objects that live as long
    as the process; every full collection walked all of them, 100-180 ms with the GIL held
    (three or four in 4,000 orders), and the orders queued meanwhile made the p99. Only for
    `kym serve`'s process, never inside a test run: frozen objects are never collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Publisher:
    """Publishes outbox entries with QoS 1 without waiting; `settled` tells which the broker
    has acknowledged since, for the worker (or, while it is idle, the housekeeper) to mark."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._pending: dict[int, mqtt.MQTTMessageInfo] = {}  # outbox id -> paho's handle
        self._unmarked: list[int] = []  # settled, taken, then given back: not marked after all
        self.taken_at = 0.0  # when the worker last took what was settled (monotonic)

    def __call__(self, entries: Entries) -> None:
        with self.client.publishing_many():
            for outbox_id, topic, token in entries:
                with self._lock:
                    if outbox_id in self._pending:  # paho still holds it and re-sends it itself
                        continue
                info = self.client.publish(topic, token.encode())
                with self._lock:
                    self._pending[outbox_id] = info

    def settled(self) -> list[int]:
        """Outbox ids the broker acknowledged since the last call (forgets paho's refusals,
        which the housekeeper then publishes again)."""
        with self._lock:
            done, self._unmarked = self._unmarked, []
            for outbox_id, info in list(self._pending.items()):
                acknowledged = broker_acknowledged(info)
                if acknowledged is not False:
                    del self._pending[outbox_id]
                    if acknowledged:
                        done.append(outbox_id)
        return done

    def take_settled(self) -> list[int]:
        """`settled`, for the worker to mark in its batch's transaction, at most once every
        MARK_EVERY_S (one statement more in that many batches)."""
        now = time.monotonic()
        if now - self.taken_at < MARK_EVERY_S:
            return []
        self.taken_at = now
        return self.settled()

    def give_back(self, ids: list[int]) -> None:
        """Settled ids whose marking was rolled back: the next `settled` returns them again."""
        with self._lock:
            self._unmarked.extend(ids)

    def worker_marks(self) -> bool:
        """Whether the worker took what was settled lately (it marks the rest with its next
        batch), so that the housekeeper need not write."""
        return time.monotonic() - self.taken_at < WORKER_MARKS_WITHIN_S

    def is_pending(self, outbox_id: int) -> bool:
        with self._lock:
            return outbox_id in self._pending

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)


def broker_acknowledged(info: mqtt.MQTTMessageInfo) -> bool | None:
    """True once the broker acknowledged a QoS 1 publish, False while paho still holds it,
    None if paho refused it (it will never be sent).

    A publish made while disconnected keeps rc NO_CONN even after paho sent it on the next
    connection and got its PUBACK, and `is_published()` raises for it; the flag is read
    directly.
    """
    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
        return None
    return bool(info._published)


class Worker(threading.Thread):
    """Takes up to MAX_BATCH orders at a time, decides them in one transaction, then
    acknowledges them to the broker."""

    def __init__(self, ctx: Context, client: GatewayClient, publisher: Publisher) -> None:
        super().__init__(name=f"kym-worker-{client.identity}", daemon=True)
        self.ctx, self.client, self.publisher = ctx, client, publisher
        self.inbox = client.inbox
        client.admit = Throttle(ctx, client).admit  # per-device rate limits, on receipt
        self.keyring = KeyRing()
        self.verifier: Verifier | None = None
        self.signer: Signer | None = None
        self.stopping = threading.Event()
        self._tries: dict[str, int] = {}
        self._outcomes: metrics.Outcomes = {}  # the last batch's results, for the metrics
        self._waiting = Waiting()  # says while the database keeps the worker waiting
        self.decided = 0  # messages committed and acknowledged so far
        self.holding = 0  # messages taken off the inbox and not decided yet

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
            self.holding = len(batch)
            self.process(batch)
            self.holding = 0

    def start_helpers(self) -> Callable[[], None]:
        """Child processes that check the orders' signatures as they arrive and sign the
        results while the worker writes; the returned function stops them."""
        self.verifier = Verifier(self.keyring)
        self.verifier.start()
        self.client.verifier = self.verifier
        self.signer = Signer(self.ctx.pki.signer.private_key)
        self.signer.start()
        verifier, signer = self.verifier, self.signer

        def stop() -> None:
            verifier.stop()
            signer.stop()

        return stop

    def process(self, messages: list[Inbound]) -> None:
        """Decide a batch and acknowledge it; while the database is away, keep it and try
        again; if the batch fails otherwise, decide each message alone."""
        while not self.stopping.is_set():
            try:
                self._commit(messages)
                self._waiting.over()
                return
            except Exception as exc:  # noqa: BLE001 - classified below; nothing is acknowledged
                if self.database_is_up(exc):
                    if len(messages) > 1:
                        log.warning("batch of %d failed", len(messages), exc_info=True)
                    break
                self.stopping.wait(self._waiting.still(exc))
        if self.stopping.is_set():
            return  # unacknowledged: the broker delivers them again
        for message in messages:
            self._process_alone(message)

    def _process_alone(self, message: Inbound) -> None:
        key = _message_key(message)
        while not self.stopping.is_set():
            try:
                self._commit([message])
                self._tries.pop(key, None)
                self._waiting.over()
                return
            except Exception as exc:  # noqa: BLE001 - counted; a final rejection after MAX_TRIES
                if not self.database_is_up(exc):
                    self.stopping.wait(self._waiting.still(exc))
                    continue
                tries = self._tries[key] = self._tries.get(key, 0) + 1
                log.exception("could not decide a message on %s (try %d)", message.topic, tries)
                if tries >= MAX_TRIES and self._give_up(message, key):
                    return
                self.stopping.wait(RETRY_PAUSE_S * min(tries, MAX_TRIES))

    def _commit(self, messages: list[Inbound]) -> None:
        """Decide and commit (what fails here committed nothing), then hand off."""
        self._outcomes = {}
        entries = self._decide(messages)
        self._committed(messages, entries)

    def _committed(self, messages: list[Inbound], entries: Entries) -> None:
        """Acknowledge, publish and count committed decisions; never raises. A failure here
        must not send the messages back to be decided (and acknowledged) again: their second
        PUBACK could name a message id the broker has given to a new order since. What was
        not published stays in the outbox, for the housekeeper to publish again."""
        try:
            self.client.ack(messages)  # committed: the broker may forget them now
            self.decided += len(messages)
            self.publisher(entries)
            metrics.observe_outcomes([m.arrived_s for m in messages], self._outcomes)
        except Exception:  # noqa: BLE001 - logged; the decisions stand
            log.exception("handing off %d committed decisions failed", len(messages))

    def _decide(self, messages: list[Inbound]) -> Entries:
        """Decide in one transaction; what the results count for in `self._outcomes`."""
        batch = [(m.topic, m.payload) for m in messages]
        ahead = self.verifier.found([m.ticket for m in messages]) if self.verifier else None
        now = self.ctx.clock()
        acked = self.publisher.take_settled()

        def mark(conn: Connection) -> None:
            order_store.mark_published(conn, acked)

        try:
            return decide_messages(
                self.ctx, self.keyring, batch, now, self._outcomes, ahead, self.signer, mark
            )
        except BaseException:
            self.publisher.give_back(acked)
            raise

    def _give_up(self, message: Inbound, key: str) -> bool:
        """A final `rejected` result (in the outbox, with an audit entry) and the PUBACK;
        False when that could not be written either (the message is then kept and tried
        again, never left unacknowledged and forgotten, holding the broker's in-flight window)."""
        try:
            entries = self.ctx.db.run(
                lambda conn: reject_undecidable(
                    self.ctx, conn, self.keyring, message.topic, message.payload, MAX_TRIES
                )
            )
        except Exception:  # noqa: BLE001 - kept; the caller tries again
            log.exception("could not reject the undecidable message on %s", message.topic)
            return False
        self._tries.pop(key, None)
        self._committed([message], entries)
        return True

    def database_is_up(self, failure: BaseException) -> bool:
        """Whether a failure may be the messages' own: not when it says the database ran out
        of room or I/O, or lost the session (`database_fault`: a full disk refuses a batch's
        pages while a write of none goes through; a PostgreSQL that PANICs for want of WAL
        room ends every session, and may take writes again by the time it is asked), nor
        while the database takes no writes at all (`Database.takes_writes`). The database's
        failures keep the batch, never blamed on its orders."""
        return not database_fault(failure) and self.ctx.db.takes_writes()

    def stop(self) -> None:
        self.stopping.set()


class Waiting:
    """The worker's wait while the database fails it: how long to pause before the next try
    (`pause`), and its log: a line when the wait begins and every FAULT_LOG_EVERY_S while it
    lasts (not one a retry, with a traceback), and one when it ends."""

    def __init__(self) -> None:
        self.since: float | None = None
        self._said = 0.0

    def still(self, failure: BaseException) -> float:
        """Note another failed try; the pause before the next one."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        elif now - self._said < FAULT_LOG_EVERY_S:
            return self.pause(now)
        self._said = now
        log.warning(
            "the database takes no writes (%s); orders wait unacknowledged, tried again within "
            "%.1f s",
            one_line(failure),
            self.pause(now),
        )
        return self.pause(now)

    def pause(self, now: float) -> float:
        """RETRY_PAUSE_S, growing to a tenth of the wait so far, at most MAX_WAITING_PAUSE_S."""
        waited = 0.0 if self.since is None else now - self.since
        return min(MAX_WAITING_PAUSE_S, max(RETRY_PAUSE_S, waited / 10))

    def over(self) -> None:
        if self.since is not None:
            waited, self.since = time.monotonic() - self.since, None
            log.warning("the database takes writes again after %.0f s", waited)


def _message_key(message: Inbound) -> str:
    return hashlib.sha256(message.topic.encode() + b"\0" + message.payload).hexdigest()
