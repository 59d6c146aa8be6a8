"""A bare MQTT 3.1.1 client over TLS for the tests paho cannot write: it sends exactly the
bytes a test asks for (malformed ones included), never acknowledges on its own, and can drop
the connection without a DISCONNECT. Its encoders are written from the spec, independently of
`gateway.broker.codec`.
"""

from __future__ import annotations

import socket
import ssl
import struct


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    """A frame: first byte, remaining length, body."""
    return bytes((first_byte,)) + _length(len(body)) + body


def connect_packet(
    client_id: str = "raw",
    clean: bool = True,
    keepalive_s: int = 60,
    will: tuple[str, bytes, int] | None = None,
    level: int = 4,
    username: str | None = None,
    will_retain: bool = False,
) -> bytes:
    """A CONNECT; `will` is (topic, payload, qos)."""
    name = "MQTT" if level in (4, 5) else "MQIsdp"
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will_retain else 0)
        payload += _str(will[0]) + _str(will[1])
    if username is not None:
        payload += _str(username)
    props = b"\x00" if level == 5 else b""
    body = _str(name) + bytes((level, flags)) + struct.pack("!H", keepalive_s) + props + payload
    return packet(0x10, body)


def publish_packet(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    packet_id: int = 1,
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    """A PUBLISH."""
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(first, body)


def subscribe_packet(packet_id: int, *filters: str, qos: int = 1) -> bytes:
    """A SUBSCRIBE for every filter at `qos`."""
    body = struct.pack("!H", packet_id) + b"".join(_str(f) + bytes((qos,)) for f in filters)
    return packet(0x82, body)


def puback_packet(packet_id: int) -> bytes:
    """A PUBACK."""
    return packet(0x40, struct.pack("!H", packet_id))


class Received:
    """One packet from the broker, with a PUBLISH's fields picked out."""

    def __init__(self, first_byte: int, body: bytes) -> None:
        self.first_byte, self.body = first_byte, body
        self.kind = first_byte >> 4
        self.topic, self.payload, self.packet_id = "", b"", 0
        self.dup, self.qos, self.retain = bool(first_byte & 8), (first_byte >> 1) & 3, False
        if self.kind == 3:
            self._parse_publish()

    def _parse_publish(self) -> None:
        n = struct.unpack_from("!H", self.body)[0]
        self.topic = self.body[2 : 2 + n].decode()
        end = 2 + n
        if self.qos:
            self.packet_id = struct.unpack_from("!H", self.body, end)[0]
            end += 2
        self.payload, self.retain = self.body[end:], bool(self.first_byte & 1)


class RawClient:
    """A TLS socket speaking MQTT one packet at a time."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout_s: float = 5.0) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def receive(self) -> Received | None:
        """The next packet, or None when the broker closed the connection."""
        try:
            head = self._exactly(1)
            if head is None:
                return None
            length, multiplier = 0, 1
            while True:
                byte = self._exactly(1)
                if byte is None:
                    return None
                length += (byte[0] & 0x7F) * multiplier
                multiplier *= 128
                if not byte[0] & 0x80:
                    break
            body = self._exactly(length) if length else b""
        except (ConnectionError, ssl.SSLError):
            return None
        return None if body is None else Received(head[0], body)

    def connect(self, **kwargs: object) -> tuple[bool, int]:
        """Send CONNECT and return the CONNACK's (session_present, return code)."""
        self.send(connect_packet(**kwargs))  # type: ignore[arg-type]
        ack = self.receive()
        assert ack is not None and ack.kind == 2, "no CONNACK"
        return bool(ack.body[0] & 1), ack.body[1]

    def subscribe(self, packet_id: int, *filters: str, qos: int = 1) -> list[int]:
        """Subscribe and return the SUBACK return codes."""
        self.send(subscribe_packet(packet_id, *filters, qos=qos))
        ack = self.receive()
        assert ack is not None and ack.kind == 9, "no SUBACK"
        return list(ack.body[2:])

    def closed_by_broker(self) -> bool:
        """True if the broker closes the connection (within the socket timeout)."""
        while True:
            try:
                received = self.receive()
            except TimeoutError:
                return False
            if received is None:
                return True

    def close(self) -> None:
        """Drop the connection without DISCONNECT (an abnormal end, for the broker)."""
        self.sock.close()
