"""What the session core keeps per client: a `Connection` (one TLS connection: identity,
transport, keepalive, will, and the packets to send, written once per turn of the event loop)
and a `Session` (one identity's subscriptions and QoS 1 messages, kept across connections)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.broker import codec
from gateway.broker.routing import Delivery

if TYPE_CHECKING:
    import asyncio

_QOS0_WRITE_BUFFER_LIMIT = 1 << 20  # a client this far behind loses QoS 0 messages


class Connection:
    """One TLS connection; `session` is set once its CONNECT is accepted.

    Packets sent during one turn of the event loop go out in one write (one TLS record and
    one system call rather than one per packet) when `schedule` is given, e.g. `call_soon`.
    """

    __slots__ = (
        "identity",
        "certificate",
        "transport",
        "session",
        "keepalive_s",
        "will",
        "opened_at",
        "last_seen",
        "ended",
        "_out",
        "_schedule",
    )

    def __init__(
        self,
        identity: str | None,
        transport: asyncio.WriteTransport,
        now: float,
        schedule: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.identity, self.transport = identity, transport
        self.certificate: tuple[bytes, int] | None = None  # issuer name (DER) and serial
        self.session: Session | None = None
        self.keepalive_s = 0
        self.will: codec.Will | None = None
        self.opened_at = self.last_seen = now
        self.ended = False  # detached from its session: nothing more is sent or published
        self._out: list[bytes] = []
        self._schedule = schedule

    def send(self, data: bytes) -> None:
        """Queue bytes for the client."""
        if self._schedule is None:
            self.transport.write(data)
            return
        if not self._out:
            self._schedule(self.flush)
        self._out.append(data)

    def flush(self) -> None:
        """Write what `send` queued."""
        out = self._out
        if out and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def has_room_for_qos0(self) -> bool:
        """False while the client is far behind: QoS 0 messages for it are then dropped."""
        return self.transport.get_write_buffer_size() < _QOS0_WRITE_BUFFER_LIMIT

    def is_open(self) -> bool:
        """True while the connection can still carry packets."""
        return not self.ended and not self.transport.is_closing()


class Session:
    """An identity's MQTT session: subscriptions, unacknowledged and queued QoS 1 messages."""

    __slots__ = (
        "identity",
        "clean",
        "subscriptions",
        "inflight",
        "queue",
        "connection",
        "_next_id",
        "dropped",
    )

    def __init__(self, identity: str, clean: bool, max_queued: int) -> None:
        self.identity, self.clean = identity, clean
        self.subscriptions: dict[str, int] = {}
        self.inflight: dict[int, Delivery] = {}
        self.queue: deque[Delivery] = deque(maxlen=max_queued)
        self.connection: Connection | None = None
        self._next_id = 0
        self.dropped = 0

    def online(self) -> Connection | None:
        """The live connection, if it can take packets now."""
        conn = self.connection
        return conn if conn is not None and conn.is_open() else None

    def next_packet_id(self) -> int:
        """A packet identifier not used by any unacknowledged message."""
        while True:
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self.inflight:
                return self._next_id
