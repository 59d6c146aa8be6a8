"""The paying devices of `kym bench`: one asyncio loop holding each device's own connection.

Each device keeps its own mutual-TLS MQTT session with its own key and certificate (so the
broker's ACL holds it to its own orders and results topics). Its orders are signed and
framed as QoS 1 PUBLISH packets before the clock starts; sending one is a socket write.
Every result is acknowledged (PUBACK), read and recorded in the `Tally`, and its JWS checked
against the gateway's signing certificate with the SDK's `ResultVerifier` (checked itself
against the CA bundle once, as the SDK does) once the clock has stopped: the orders are signed
before it starts, their results checked after it, so that the devices' cryptography does not
take the CPU the gateway is measured on (113 µs a result, a quarter of a core at 2,200/s).
No thread per device, no journal: what the bench measures is the gateway, and a device's own
disk and threads are not part of it.

Flat out, each device keeps at most `window` orders without their final result (a closed
loop per device, like the floor's `--window`), and sends the next one when a result frees a
slot: the broker holds a bounded queue instead of every order of the run. With a rate the
load is open loop: every order goes out at its slot, whatever is still unanswered.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices import wire
from devices.contract import orders_topic, results_topic
from devices.sdk.identity import Identity, load_certificates
from devices.sdk.messages import Result
from devices.sdk.trust import ResultVerifier, check_gateway_certificate
from simulators.bench import packets
from simulators.bench.tally import Tally
from simulators.fleet import Broker

log = logging.getLogger("kym.bench")
CONNECT_WITHIN_S = 30.0
PING_EVERY_S = 240.0


@dataclass
class PayingDevice:
    """One device's identity, its verifier and its orders, framed as PUBLISH packets."""

    identity: Identity
    verifier: ResultVerifier
    orders: list[tuple[str, bytes]] = field(default_factory=list)  # (order id, PUBLISH)

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @classmethod
    def load(cls, state_dir: Path) -> PayingDevice:
        """The device stored in `state_dir`, its gateway certificate checked as the SDK does."""
        identity = Identity.load(state_dir)
        paths = identity.paths
        signer = load_certificates(paths.gateway_certificate)[0]
        chain = load_certificates(paths.ca_chain) if paths.ca_chain.is_file() else []
        bundle = load_certificates(paths.ca_bundle)
        check_gateway_certificate(signer, bundle, chain, datetime.now(UTC))
        return cls(identity, ResultVerifier(signer, identity.device_id))

    def presign(self, fields: dict[str, Any], count: int) -> None:
        """Sign `count` orders made of `fields` and frame each as a PUBLISH packet."""
        topic, device_id = orders_topic(self.device_id), self.device_id
        for sequence in range(len(self.orders), len(self.orders) + count):
            payload = {
                "v": 1,
                "order_id": f"o-{sequence}-{secrets.token_hex(5)}",
                "device_id": device_id,
                "ts": int(time.time()),
                "nonce": secrets.token_hex(6),
                **fields,
            }
            wire.parse_order(payload, device_id)  # a bad order is a bug here, not a refusal
            jws = wire.sign(payload, self.identity.key).encode("ascii")
            packet_id = packets.packet_id_of(sequence)
            self.orders.append((payload["order_id"], packets.publish_packet(topic, packet_id, jws)))

    def tls_context(self) -> ssl.SSLContext:
        """Mutual TLS with this device's certificate; the broker checked against the bundle."""
        paths = self.identity.paths
        context = ssl.create_default_context(cafile=str(paths.ca_bundle))
        context.check_hostname = False  # as the idle devices: the broker names the gateway
        context.load_cert_chain(str(paths.certificate), str(paths.key))
        return context


class Connection(asyncio.Protocol):
    """One device's MQTT session: sends its orders, takes its results."""

    def __init__(self, device: PayingDevice, tally: Tally, window: int | None) -> None:
        self.device, self.tally, self.window = device, tally, window
        self.device_id = device.device_id
        self.next = 0  # index of the next order to send
        self.dropped = 0  # messages that were not a result or event for this device
        self.unchecked: list[bytes] = []  # messages whose signature `check_signatures` checks
        self.last_sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.closing = False  # set by PayingFleet.close
        self._reader = packets.PacketReader()
        self._out: list[bytes] = []
        loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[bytes] = loop.create_future()
        self._suback: asyncio.Future[bytes] = loop.create_future()

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(packets.connect_packet(self.device_id))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:  # its unanswered orders will count as lost: say why
            log.warning("%s: the broker closed the connection (%r)", self.device_id, exc)
        self.closed = True
        for waiter in (self._connack, self._suback):
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"{self.device_id}: closed ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        for first, body in self._reader.feed(data):
            kind = first & 0xF0
            if kind == packets.PUBLISH:
                self._publish(first, body)
            elif kind == packets.CONNACK and not self._connack.done():
                self._connack.set_result(body)
            elif kind == packets.SUBACK and not self._suback.done():
                self._suback.set_result(body)
            # PUBACK (the broker took an order) and PINGRESP need nothing
        self.flush()

    # --- the session -------------------------------------------------------------------------

    async def subscribed(self) -> None:
        """Wait for CONNACK, subscribe to the results topic, wait for SUBACK."""
        connack = await self._connack
        if len(connack) != 2 or connack[1] != 0:
            raise ConnectionError(f"{self.device_id}: CONNACK {connack.hex()}")
        assert self.transport is not None
        self.transport.write(packets.subscribe_packet(results_topic(self.device_id)))
        suback = await self._suback
        if len(suback) != 3 or suback[2] > 2:
            raise ConnectionError(f"{self.device_id}: SUBACK {suback.hex()}")

    def queue(self, due: float | None = None) -> None:
        """Queue the next order (sent at the next `flush`); it is due at `due` or now."""
        order_id, packet = self.device.orders[self.next]
        self.next += 1
        now = time.perf_counter()
        self.tally.sent(self.device_id, order_id, now if due is None else due)
        self.last_sent_at = now
        self._out.append(packet)

    def start_window(self) -> None:
        """Flat out: send the first `window` orders."""
        assert self.window is not None
        while self.next < min(self.window, len(self.device.orders)):
            self.queue()
        self.flush()

    def check_signatures(self) -> int:
        """Check the signature of every message taken so far; how many failed (logged)."""
        failed = 0
        for raw in self.unchecked:
            try:
                self.device.verifier.check_signature(raw)
            except (wire.InvalidMessage, wire.InvalidSignature) as exc:
                failed += 1
                log.warning("%s: a message's signature does not verify: %s", self.device_id, exc)
        self.unchecked.clear()
        return failed

    def flush(self) -> None:
        if self._out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def write(self, packet: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(packet)

    def _publish(self, first: int, body: bytes) -> None:
        _topic, packet_id, raw = packets.parse_publish(first, body)
        if packet_id is not None:
            self._out.append(packets.puback_packet(packet_id))
        try:
            payload = self.device.verifier.read(raw)  # its signature: `check_signatures`
        except (wire.InvalidMessage, UnicodeDecodeError) as exc:
            self.dropped += 1
            log.warning("%s dropped a message: %s", self.device_id, exc)
            return
        self.unchecked.append(raw)
        if "event" in payload:
            return
        first_final = self.tally.record(self.device_id, Result.from_payload(payload))
        if first_final and self.window is not None and self.next < len(self.device.orders):
            self.queue()  # a slot of the window is free


class PayingFleet:
    """Every paying device's connection, on the running asyncio loop."""

    def __init__(
        self, broker: Broker, devices: list[PayingDevice], tally: Tally, window: int | None
    ) -> None:
        self.broker, self.devices, self.tally, self.window = broker, devices, tally, window
        self.connections: list[Connection] = []
        self._pinger: asyncio.Task[None] | None = None

    async def connect_all(self, at_once: int = 64) -> None:
        """Connect and subscribe every device, `at_once` handshakes at a time."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(at_once)

        async def one(device: PayingDevice) -> Connection:
            async with gate:
                connection = Connection(device, self.tally, self.window)
                self.connections.append(connection)  # closed by `close`, even if this fails
                host, port = self.broker.host, self.broker.port
                opened = loop.create_connection(
                    lambda: connection, host, port, ssl=device.tls_context()
                )
                await asyncio.wait_for(opened, CONNECT_WITHIN_S)
                await asyncio.wait_for(connection.subscribed(), CONNECT_WITHIN_S)
                return connection

        opened = await asyncio.gather(*(one(device) for device in self.devices))
        self.connections = list(opened)  # in the devices' order
        self._pinger = loop.create_task(self._ping())

    def start_flat_out(self) -> None:
        """Each device sends its first `window` orders; each first final result, the next."""
        for connection in self.connections:
            connection.start_window()

    async def send_at(self, rate: float) -> None:
        """Open loop: order i (device i mod n, interleaved) goes out at its slot, started +
        i / rate, and is due then however late it went out; orders that fell behind go out
        together, one write per device."""
        interval_s, count = 1.0 / rate, len(self.connections)
        total = sum(len(device.orders) for device in self.devices)
        started, index = time.perf_counter(), 0
        while index < total:
            now = time.perf_counter()
            slot = started + index * interval_s
            if slot > now:
                await asyncio.sleep(slot - now)
                continue
            touched: dict[int, Connection] = {}
            while index < total and slot <= now:
                connection = self.connections[index % count]
                connection.queue(slot)
                touched[index % count] = connection
                index += 1
                slot = started + index * interval_s
            for connection in touched.values():
                connection.flush()

    @property
    def sent(self) -> int:
        return sum(connection.next for connection in self.connections)

    @property
    def last_sent_at(self) -> float:
        return max((connection.last_sent_at for connection in self.connections), default=0.0)

    @property
    def dropped(self) -> int:
        """Messages that were not a result or event for their device (their orders count as
        lost)."""
        return sum(connection.dropped for connection in self.connections)

    def check_signatures(self) -> int:
        """Check every message's signature (after the clock: a device's own CPU is not the
        gateway's, as its orders are signed before); how many failed."""
        return sum(connection.check_signatures() for connection in self.connections)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY_S)
            for connection in self.connections:
                connection.write(packets.PINGREQ)

    async def close(self, within_s: float = 5.0) -> None:
        """DISCONNECT and close every connection; abort those not closed `within_s`."""
        if self._pinger is not None:
            self._pinger.cancel()
        for connection in self.connections:
            connection.closing = True
            connection.write(packets.DISCONNECT)
            if connection.transport is not None:
                connection.transport.close()
        deadline = time.monotonic() + within_s
        while any(not c.closed for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in self.connections:
            if not connection.closed and connection.transport is not None:
                connection.transport.abort()
        await asyncio.sleep(0)  # let the aborted transports close
