"""A device on the broker: mutual TLS, its results topic, signed and journaled orders.

Threads: paho's network thread only copies each message into a queue (work there would stall
the connection, and an exception there kills it); one dispatcher thread verifies the gateway's
signature, records final results in the journal, wakes `wait_for_result`, runs the `on_result`
and `on_event` callbacks, and only then acknowledges the message (manual PUBACK). With the
persistent session, a message the device had not finished with when it died is delivered
again on the next connection. Callbacks may send orders, but must not wait for results: they
run on the dispatcher thread, which is the one that would deliver them.

Re-sending: every order without a final result (`pending_approval` and a `rate_limited`
refusal are not final) is sent again, byte for byte from the journal, when the device
reconnects and every `resend_after` seconds, by a resender thread. New orders and re-sends
share a budget of RESEND_PER_S a second (`budget.SendBudget`), new orders first, so that a
backlog beside new orders does not exceed the device's rate. The gateway answers a re-send of a
decided order with its stored result and moves no money. `resend_after=None` turns this off
(the application may still call `resend_unfinished`).
"""

from __future__ import annotations

import logging
import queue
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices import wire
from devices.contract import orders_topic, results_topic
from devices.sdk import messages
from devices.sdk.budget import SEND_PER_S, SendBudget
from devices.sdk.errors import ConnectFailed
from devices.sdk.identity import Identity, load_certificates
from devices.sdk.journal import Journal
from devices.sdk.messages import Event, Result
from devices.sdk.results import ResultBoard
from devices.sdk.tls import use_mutual_tls, why_unreachable
from devices.sdk.trust import ResultVerifier, check_gateway_certificate

log = logging.getLogger("kym.sdk")
_STOP = object()
RESEND_PER_S = SEND_PER_S  # new orders and re-sends together, below the gateway's 10/s
CONNECT_TIMEOUT_S = 10.0  # `connect`'s default: the first session, from nothing to subscribed
ATTEMPT_TIMEOUT_S = 5.0  # paho's own bound on one TCP connect, and on each TLS handshake read


@dataclass(frozen=True)
class PreparedOrder:
    """A signed order, not yet journaled or sent."""

    order_id: str
    payload: dict[str, Any]
    jws: str


class DeviceClient:
    """One device's connection to the gateway (see the package docstring for an example)."""

    def __init__(
        self,
        identity: Identity,
        broker_host: str,
        broker_port: int = 8883,
        *,
        persistent: bool = True,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        fsync: bool = True,
        keepalive_s: int = 30,
        on_result: Callable[[Result], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        resend_after: float | None = 10.0,
    ) -> None:
        self.identity, self.device_id = identity, identity.device_id
        self.broker_host, self.broker_port, self.keepalive_s = broker_host, broker_port, keepalive_s
        self.clock, self.rng = clock, rng
        self.on_result, self.on_event = on_result, on_event
        self.dropped: deque[tuple[str, bytes]] = deque(maxlen=100)  # (why, raw message)
        self._verifier = ResultVerifier(_checked_signer(identity), self.device_id)
        self._jose = wire.jose_key(identity.key)
        self.results = ResultBoard()
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._ready, self._refused = threading.Event(), threading.Event()
        self._refusal = ""
        self._unreachable = ""  # set by paho's on_connect_fail
        self._dispatcher = threading.Thread(
            target=self._dispatch, daemon=True, name=f"kym-sdk-{self.device_id}"
        )
        self._mqtt = self._new_mqtt_client(persistent)
        if resend_after is not None and not resend_after > 0:
            raise ValueError("resend_after must be a positive number of seconds, or None")
        self.resend_after = resend_after
        self._closing, self._reconnected = threading.Event(), threading.Event()
        self.budget = SendBudget(RESEND_PER_S)
        self._resender = threading.Thread(
            target=self._resend_loop, daemon=True, name=f"kym-sdk-resend-{self.device_id}"
        )
        self.journal = Journal(identity.paths.journal, fsync=fsync)  # last: nothing can fail after

    @classmethod
    def from_state_dir(
        cls, state_dir: Path, broker_host: str, broker_port: int = 8883, **options: Any
    ) -> DeviceClient:
        """A client for the identity that `provision` stored in `state_dir`."""
        return cls(Identity.load(Path(state_dir)), broker_host, broker_port, **options)

    # --- connection ------------------------------------------------------------------------

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect over mutual TLS and subscribe to the results topic within `timeout_s`, else
        raise ConnectFailed; once connected, it reconnects by itself."""
        if not timeout_s > 0:
            raise ValueError("timeout_s must be a positive number of seconds")
        if not self._dispatcher.is_alive():
            self._dispatcher.start()
        if self.resend_after is not None and not self._resender.is_alive():
            self._resender.start()
        # No attempt may outlast the whole: a peer that accepts and never answers holds paho's
        # thread in the TLS handshake, and `loop_stop` below waits for that thread. (Paho
        # allows no change once connected, so the reconnects keep this bound.)
        self._mqtt.connect_timeout = min(ATTEMPT_TIMEOUT_S, timeout_s)
        self._mqtt.connect_async(self.broker_host, self.broker_port, keepalive=self.keepalive_s)
        self._mqtt.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self._refused.is_set() or time.monotonic() > deadline:
                self._mqtt.loop_stop()
                raise ConnectFailed(
                    self._refusal
                    or self._unreachable
                    or f"no session within {timeout_s} s "
                    "(a refused client certificate looks like this with TLS 1.3)"
                )

    @property
    def is_connected(self) -> bool:
        """Connected and subscribed to the results topic."""
        return self._ready.is_set()

    def close(self) -> None:
        """Disconnect (the persistent session stays on the broker) and stop the threads."""
        self._closing.set()
        self._reconnected.set()
        if self._resender.is_alive():
            self._resender.join(5)
        self._mqtt.disconnect()
        self._mqtt.loop_stop()
        if self._dispatcher.is_alive():
            self._inbox.put(_STOP)
            self._dispatcher.join(5)
        self.journal.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- orders ----------------------------------------------------------------------------

    def pay(
        self, payee: str, amount_minor: int, currency: str = "EUR", description: str | None = None
    ) -> str:
        """Pay now; returns the order id."""
        return self.send(messages.pay_fields(payee, amount_minor, currency, description))

    def hold(
        self,
        payee: str,
        amount_minor: int,
        currency: str = "EUR",
        expires_in_s: int | None = None,
        description: str | None = None,
    ) -> str:
        """Reserve up to `amount_minor` for the payee; returns the order id."""
        fields = messages.hold_fields(payee, amount_minor, currency, expires_in_s, description)
        return self.send(fields)

    def capture(self, payment_id: str, amount_minor: int, currency: str | None = None) -> str:
        """As the payee: post up to the held amount and release the rest."""
        return self.send(messages.capture_fields(payment_id, amount_minor, currency))

    def void(self, payment_id: str) -> str:
        """As the payee: release a hold."""
        return self.send(messages.void_fields(payment_id))

    def refund(self, payment_id: str, amount_minor: int, currency: str | None = None) -> str:
        """As the payee: give back part or all of a payment or a captured hold."""
        return self.send(messages.refund_fields(payment_id, amount_minor, currency))

    def send(self, fields: dict[str, Any]) -> str:
        """Sign, journal and publish an order made of type-specific `fields`."""
        return self.submit(self.prepare(fields))

    def prepare(
        self, fields: dict[str, Any], order_id: str | None = None, ts: int | None = None
    ) -> PreparedOrder:
        """Add the envelope (`v`, ids, `ts`, `nonce`), check it against the schema and sign."""
        payload = {
            "v": 1,
            "order_id": order_id or self.new_order_id(),
            "device_id": self.device_id,
            "ts": int(self.clock()) if ts is None else ts,
            "nonce": self._token(12),
            **fields,
        }
        wire.parse_order(payload, self.device_id)  # a bad order is a bug here, not a refusal
        return PreparedOrder(payload["order_id"], payload, self.sign(payload))

    def submit(self, order: PreparedOrder) -> str:
        """Journal the order (fsynced), then publish it at once (QoS 1), spending the budget."""
        self.journal.record_order(order.order_id, order.jws)
        self.budget.spend()
        self.publish_raw(order.jws.encode("ascii"))
        self.journal.mark_sent([order.order_id], time.monotonic())
        return order.order_id

    def resend_unfinished(self) -> list[str]:
        """Re-send byte for byte the unfinished orders (oldest first) the budget allows; ids."""
        unfinished = self.journal.unfinished()
        return self._resend(unfinished[: self.budget.take(len(unfinished))])

    def _resend(self, orders: list[tuple[str, str]]) -> list[str]:
        for _order_id, jws in orders:
            self.publish_raw(jws.encode("ascii"))
        order_ids = [order_id for order_id, _ in orders]
        self.journal.mark_sent(order_ids, time.monotonic())
        return order_ids

    def _resend_loop(self) -> None:
        """Re-send due orders as the send budget allows (it refills with time, however often
        the loop looks: `resend_after` may be under a second); all of them are due after a
        reconnect."""
        assert self.resend_after is not None
        while not self._closing.is_set():
            if self._reconnected.wait(min(1.0, self.resend_after)):
                self._reconnected.clear()
            if not self._ready.is_set() or self._closing.is_set():
                continue  # paho would only queue them; the reconnect makes them all due
            allowed = self.budget.take(RESEND_PER_S)
            due = self.journal.due(time.monotonic(), self.resend_after, allowed)
            self.budget.give_back(allowed - len(due))
            if due:
                log.info("%s re-sends %d unfinished orders", self.device_id, len(due))
                self._resend(due)

    def sign(self, payload: dict[str, Any], key: wire.PrivateKey | None = None) -> str:
        """A JWS of any payload, unchecked: with another `key`, a forgery (for tests)."""
        if key is None:
            return wire.sign(payload, self.identity.key, self._jose)
        return wire.sign(payload, key)

    def publish_raw(self, data: bytes) -> mqtt.MQTTMessageInfo:
        """Publish bytes to the orders topic as they are, unjournaled (QoS 1)."""
        return self._mqtt.publish(orders_topic(self.device_id), data, qos=1)

    def new_order_id(self) -> str:
        """`o-<sequence>-<random>`: unique for this device, even across restarts."""
        while True:
            order_id = f"o-{self.journal.next_sequence()}-{self._token(10)}"
            if not self.journal.is_known(order_id):
                return order_id

    # --- results ---------------------------------------------------------------------------

    def wait_for_result(self, order_id: str, timeout_s: float = 10.0, final: bool = True) -> Result:
        """The order's result; with `final`, waits past `pending_approval` and `rate_limited`
        (re-sent by the client) for the last word.

        Raises ResultTimeout. A result that arrived before the call counts: nothing is missed.
        """
        self._refuse_waiting_in_callbacks()
        return self.results.wait_for(order_id, timeout_s, final)

    def wait_for_unmatched_rejection(self, timeout_s: float = 10.0) -> Result:
        """The next `rejected` result with no order id (for a message that did not decode)."""
        self._refuse_waiting_in_callbacks()
        return self.results.wait_for_unmatched(timeout_s)

    def result_of(self, order_id: str) -> Result | None:
        """The latest result received for the order, if any."""
        return self.results.latest(order_id)

    def forget(self, order_id: str) -> None:
        """Drop the order's result from memory (long-running devices with many orders)."""
        self.results.forget(order_id)

    def _refuse_waiting_in_callbacks(self) -> None:
        if threading.current_thread() is self._dispatcher:
            raise RuntimeError("waiting for a result inside a callback would wait forever")

    # --- internals -------------------------------------------------------------------------

    def _new_mqtt_client(self, persistent: bool) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            clean_session=not persistent,
            manual_ack=True,
        )
        paths = self.identity.paths
        use_mutual_tls(client, paths.ca_bundle, paths.certificate, paths.key)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(0)  # keep every order while the broker is away
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        return client

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        """No connection could be opened (paho does not say why): what `connect` says if no
        session comes."""
        probe_s = min(2.0, self._mqtt.connect_timeout)  # on paho's thread: `connect` waits
        self._unreachable = why_unreachable(self.broker_host, self.broker_port, probe_s)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self._refusal = f"the broker refused the connection: {rc}"
            self._refused.set()
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):  # paho leaves Nagle on: 44 ms round trips
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(results_topic(self.device_id), qos=1)

    def _on_subscribe(self, _c: Any, _u: Any, _m: Any, codes: list[ReasonCode], _p: Any) -> None:
        if any(code.is_failure for code in codes):
            self._refusal = f"the broker refused the results subscription: {codes}"
            self._refused.set()
        else:
            self.journal.mark_due_if_sent_before(time.monotonic())
            self._ready.set()
            self._reconnected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._ready.clear()
        if rc.is_failure:
            log.warning("%s lost the broker (%s); reconnecting", self.device_id, rc)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message.mid, message.qos, message.payload))

    def _dispatch(self) -> None:
        while (item := self._inbox.get()) is not _STOP:
            mid, qos, raw = item
            try:
                self._handle(raw)
            except Exception:  # noqa: BLE001 - a bad callback must not stop the device
                log.exception("%s: handling a message failed", self.device_id)
            self._mqtt.ack(mid, qos)

    def _handle(self, raw: bytes) -> None:
        try:
            payload = self._verifier.open(raw)
        except (wire.InvalidMessage, wire.InvalidSignature, UnicodeDecodeError) as exc:
            log.warning("%s dropped a message: %s", self.device_id, exc)
            self.dropped.append((str(exc), raw))
            return
        if "event" in payload:
            if self.on_event is not None:
                self.on_event(Event.from_payload(payload))
            return
        result = Result.from_payload(payload)
        if result.order_id is not None and result.is_final:
            self.journal.record_final(result.order_id, result.status)
        self.results.post(result)
        if self.on_result is not None:
            self.on_result(result)

    def _token(self, length: int) -> str:
        if self.rng is None:
            return secrets.token_hex(length // 2)
        return f"{self.rng.getrandbits(length * 4):0{length}x}"


def _checked_signer(identity: Identity) -> x509.Certificate:
    """The stored gateway certificate, checked against the stored bundle once at start."""
    paths = identity.paths
    signer = load_certificates(paths.gateway_certificate)[0]
    device_chain = load_certificates(paths.ca_chain) if paths.ca_chain.is_file() else []
    check_gateway_certificate(
        signer, load_certificates(paths.ca_bundle), device_chain, datetime.now(UTC)
    )
    return signer
