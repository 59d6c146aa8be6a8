"""The gateway's MQTT adapter: one paho client per worker, with its own certificate identity.

The paho callback only copies each message into a queue and returns (database work on paho's
network thread would stall every other message); a worker takes messages from the queue.

Durability: each worker identity (`kym-gateway-<n>`, stable per worker index) holds a persistent
session (clean_session=False), so the broker keeps the orders published while it is away, and
acknowledges manually: the PUBACK of an order goes out only after its decision is committed
(`ack`). An order whose worker dies before that stays with the broker and comes again, with the
DUP flag, when the same identity reconnects. Message ids restart with every connection, so an
acknowledgement is only sent for messages of the connection that is up (`Inbound.connection`).

Receiving (`gateway.mqtt.receive.ReceivingClient`): PUBLISH packets are split off the socket by
our own reader, not paho's, so that a flood from one device is refused (`admit`) and
acknowledged for about 6 µs a message instead of paho's 30 (issue 10).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from devices.contract import ORDERS_SHARED, results_topic
from devices.sdk.tls import use_mutual_tls
from gateway.mqtt.receive import ReceivingClient
from gateway.orders.verifier import Verifier

__all__ = ["ORDERS_SHARED", "GatewayClient", "Inbound", "results_topic"]

log = logging.getLogger("kym.mqtt")
CONNECT_FAIL_LOG_S = 30.0


@dataclass(frozen=True)
class Inbound:
    """An order as it arrived: the topic and the raw payload bytes."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    connection: int = 0  # which connection of its client delivered it (see GatewayClient.ack)
    arrived_s: float = field(default_factory=time.monotonic)  # for kym_decision_seconds
    ticket: int | None = None  # its signature's check ahead (`gateway.orders.verifier`)


class GatewayClient:
    """Subscribes to every device's orders (shared) and publishes results, over mutual TLS."""

    def __init__(
        self,
        host: str,
        port: int,
        identity: str,
        cert: Path,
        key: Path,
        ca_bundle: Path,
        *,
        join: bool = True,
    ) -> None:
        self.host, self.port, self.identity = host, port, identity
        # SimpleQueue: put and get in C, 0.06 µs a message against 1.2 µs with Queue (measured)
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.subscribed = threading.Event()
        # A filter run on the network thread before queueing (the per-device rate limit) with
        # a message's topic and payload, so that refusing a flood never waits for a busy worker;
        # what it refuses (False) is acknowledged at once and never queued.
        self.admit: Callable[[str, bytes], bool] | None = None
        # Then what it admits is handed on for its signature to be checked ahead, and the
        # handed-on orders are sent after each read (`gateway.orders.verifier.Verifier`).
        self.verifier: Verifier | None = None
        self.join, self.left = join, threading.Event()  # join=False: leave the share group
        self._connection = 0  # bumped on every connect and disconnect, under _ack_lock
        self._ack_lock = threading.Lock()
        self._client = ReceivingClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=identity,
            clean_session=False,
            manual_ack=True,
        )
        use_mutual_tls(self._client, ca_bundle, cert, key)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = lambda *_: self.left.set()
        self._client.on_connect_fail = self._on_connect_fail
        self._unreachable_said = 0.0  # when "cannot reach the broker" was last logged
        self._client.on_publish_packet = self._on_publish
        self._client.after_read = self._after_read
        # Back within a second of a broker restart: Mosquitto 2.0.11 does not restore shared
        # subscriptions from its persistence file, and drops orders until we subscribe again.
        self._client.reconnect_delay_set(0.2, 1)

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        """paho could not open a connection (nothing listening, TLS refused): said at once and
        then every CONNECT_FAIL_LOG_S while it lasts, since paho retries without a word."""
        now = time.monotonic()
        if now - self._unreachable_said >= CONNECT_FAIL_LOG_S:
            self._unreachable_said = now
            log.warning(
                "gateway %s cannot reach the broker at %s:%d; retrying (GET /healthz says "
                "broker_unavailable meanwhile)",
                self.identity,
                self.host,
                self.port,
            )

    def start(self) -> None:
        """Connect in the background; reconnects by itself."""
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish with QoS 1 (paho keeps it and sends it again after a reconnect)."""
        return self._client.publish(topic, payload, qos=1)

    def publishing_many(self) -> AbstractContextManager[None]:
        """Publish several without waking the network thread for each (once, at the end)."""
        return cast(AbstractContextManager[None], self._client.one_wakeup())

    def ack(self, messages: list[Inbound]) -> int:
        """PUBACK these messages (their decisions are committed); returns how many were sent.

        Only messages of the current connection: after a reconnect the broker delivers the
        others again, and their old message ids may now name different messages. The lock
        makes the check and the send one step against `_on_disconnect`, which paho calls
        before it drops the old connection's unsent packets and opens a new one.
        """
        with self._ack_lock:
            current = [m for m in messages if m.qos > 0 and m.connection == self._connection]
            self._client.ack_many([m.mid for m in current if m.qos == 1])  # in one write
            for message in current:
                if message.qos > 1:
                    self._client.ack(message.mid, message.qos)
        return len(current)

    @property
    def is_connected(self) -> bool:
        """Connected with the orders subscription granted."""
        return self.subscribed.is_set()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the gateway identity %s: %s", self.identity, rc)
            return
        with self._ack_lock:
            self._connection += 1
        sock = client.socket()
        if sock is not None:  # paho does not set TCP_NODELAY: 44 ms round trips without it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.join:
            client.subscribe(ORDERS_SHARED, qos=1)
        else:  # what is queued for this identity still arrives; nothing new is dealt to it
            client.unsubscribe(ORDERS_SHARED)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, codes: list[ReasonCode], _p: Any) -> None:
        if all(not code.is_failure for code in codes):
            self.subscribed.set()
        else:
            log.error("the broker refused the orders subscription: %s", codes)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.subscribed.clear()
        with self._ack_lock:
            self._connection += 1
        if rc.is_failure:
            log.warning(
                "gateway %s disconnected from the broker (%s); reconnecting", self.identity, rc
            )

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> bool:
        """On the network thread: queue an admitted message; False has it acknowledged now."""
        if self.admit is not None and not self.admit(topic, payload):
            return False
        ticket = self.verifier.submit(topic, payload) if self.verifier is not None else None
        self.inbox.put(Inbound(topic, payload, mid, qos, self._connection, ticket=ticket))
        return True

    def _after_read(self) -> None:
        if self.verifier is not None:
            self.verifier.flush()
